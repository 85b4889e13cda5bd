"""The data stage: one ``DatasetSpec`` per dataset (``specs``); its four IDX files found and checked
(``idx``), downloaded (``download``) and held in memory as tensors (``loader``). Importing this
package loads nothing heavy; ``loader`` brings torch."""
