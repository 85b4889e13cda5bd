"""The workbench: run.ipynb's study, the live sweep view, one-line errors in a kernel, the
committed copies of executed notebooks and the README's numbers."""
