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

from mlpmnist.errors import printable
from mlpmnist.store import atomic_write_text, remove_stale_temporaries

INJECTED = "injected-parameters"


def strip_injected(nb: nbformat.NotebookNode) -> int:
    """Remove the cells tagged ``injected-parameters`` from ``nb`` in place; returns how many."""
    keep = [c for c in nb.cells if INJECTED not in c.get("metadata", {}).get("tags", [])]
    removed = len(nb.cells) - len(keep)
    nb.cells = keep
    return removed


def publish(executed: str | os.PathLike, committed: str | os.PathLike) -> Path:
    """Write ``executed`` without its injected-parameters cell to ``committed`` (atomically);
    returns the path. ``ValueError`` when ``executed`` is not a notebook that papermill ran to
    the end (``first_unfinished`` names the cell that stopped it)."""
    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{executed} is not a readable notebook ({e}); run make study or make science"
        ) from e
    if "papermill" not in nb.metadata:
        raise ValueError(f"{executed} was not executed by papermill; run make study or make science")
    if (cell := first_unfinished(nb)) is not None:
        raise ValueError(
            f"{executed} did not run to the end: {cell}; fix it and run make study or make science again"
        )
    strip_injected(nb)
    committed = Path(committed)
    remove_stale_temporaries(committed.parent, committed.name)  # a killed publish's (W7)
    return atomic_write_text(committed, nbformat.writes(nb))


def first_unfinished(nb: nbformat.NotebookNode) -> str | None:
    """The first code cell of a papermill-executed ``nb`` that did not complete, in words ('cell
    12 (``study = Study...``) failed'), or None when every one did. Papermill marks each cell's
    status (pending, running, completed, failed) and the notebook when a cell raised."""
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        status = cell.get("metadata", {}).get("papermill", {}).get("status")
        raised = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        if raised or status not in (None, "completed"):
            first = next((line for line in str(cell.get("source", "")).splitlines() if line.strip()), "")
            what = "raised an error" if raised else f"is {status}" if status != "failed" else "failed"
            return f"cell {i} ({printable(first.strip()[:60])!r}) {what}"
    if nb.metadata.get("papermill", {}).get("exception"):
        return "papermill marked it as failed"
    return None


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
