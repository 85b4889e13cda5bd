"""An executed notebook made the committed copy: ``python -m mlpmnist.publish EXECUTED COMMITTED``.

``make study`` and ``make science`` run their notebooks with papermill and pass the committed
folders explicitly (``-p media_dir media``). Papermill records those values in a cell tagged
``injected-parameters``; left in the committed copy, it would make a reader's own Run All write
into the committed folders again. This removes that cell (the values stay on record in the
notebook's ``metadata.papermill.parameters``), so the committed notebook's parameters are its
defaults and the outputs show what ``make`` ran.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat

from mlpmnist.store import atomic_write_text

INJECTED = "injected-parameters"


def strip_injected(nb: nbformat.NotebookNode) -> int:
    """Remove the cells tagged ``injected-parameters`` from ``nb`` in place; returns how many."""
    keep = [c for c in nb.cells if INJECTED not in c.get("metadata", {}).get("tags", [])]
    removed = len(nb.cells) - len(keep)
    nb.cells = keep
    return removed


def publish(executed: str | os.PathLike, committed: str | os.PathLike) -> Path:
    """Write ``executed`` without its injected-parameters cell to ``committed`` (atomically);
    returns the path. ``ValueError`` when ``executed`` is not an executed notebook."""
    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{executed} is not a readable notebook ({e}); run make study or make science"
        ) from e
    if "papermill" not in nb.metadata:
        raise ValueError(f"{executed} was not executed by papermill; run make study or make science")
    strip_injected(nb)
    return atomic_write_text(committed, nbformat.writes(nb))


def main(argv: list[str] | None = None) -> int:
    """``EXECUTED COMMITTED``: exit status 0, or 2 with one line on stderr."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m mlpmnist.publish EXECUTED.ipynb COMMITTED.ipynb", file=sys.stderr)
        return 2
    try:
        print(f"wrote {publish(*args)}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
