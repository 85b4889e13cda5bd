"""Where a relative path points, whatever folder a kernel starts in.

JupyterLab starts a notebook's kernel in the notebook's folder (``notebooks/`` for the science
notebook), papermill in the folder it is given, Colab in ``/content``. So that
``results_dir="results"`` names one folder from all of them, the notebooks' path parameters and
``$MLPMNIST_DATA`` are read from the **repository root**: the nearest folder at or above the
working folder that holds mlpmnist's ``pyproject.toml`` and ``src/mlpmnist``. Outside a checkout
(Colab, an installed package) they are read from the working folder. Command-line flags keep
the shell's meaning: relative to the working folder.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def project_root(start: str | os.PathLike | None = None) -> Path | None:
    """The repository root at or above ``start`` (default: the working folder), absolute, or
    None outside a checkout."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "src" / "mlpmnist").is_dir():
            return folder
    return None


def base() -> Path:
    """The folder relative paths are read from: ``project_root()``, else the working folder; absolute."""
    return project_root() or Path.cwd().resolve()


def resolve(path: str | os.PathLike) -> Path:
    """``path`` as an absolute path: ``~`` expanded, a relative one read from ``base()``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base() / p


def describe_base() -> str:
    """'the repository root /x' or 'the working folder /y': where relative paths are read from."""
    root = project_root()
    return f"the repository root {root}" if root else f"the working folder {base()}"


def shown(path: str | os.PathLike) -> str:
    """``path`` for a message: relative to the repository root when it lies in it, else absolute."""
    p = Path(path).resolve()
    root = project_root()
    if root is not None and p.is_relative_to(root):
        return str(p.relative_to(root))
    return str(p)


def package_version() -> str:
    """mlpmnist's installed version (its ``pyproject.toml``), or '0+unknown' when it is not installed
    (run from a source folder on ``sys.path``)."""
    try:
        return version("mlpmnist")
    except PackageNotFoundError:
        return "0+unknown"
