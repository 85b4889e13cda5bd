"""Publishing: an executed notebook made the committed copy, its figures and numbers copied into
the committed folder, and the README's generated blocks written from them (``make publish`` is
the one writer of the committed outputs)::

    python -m mlpmnist.workbench.publish EXECUTED COMMITTED [--media FROM TO] [--readme README]

The committed notebook is the executed one without what says when or how it ran, so publishing a
rerun that computes the same numbers changes no byte: papermill's ``injected-parameters`` cell
(its values stay in ``metadata.papermill.parameters``), papermill's and nbclient's timing
metadata, progress widgets and stderr streams (``workbench.live`` keeps the study's outcome in
its displays).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

from mlpmnist.errors import printable
from mlpmnist.store import atomic_write_bytes, atomic_write_text, remove_stale_temporaries

INJECTED = "injected-parameters"
#: papermill's notebook metadata that says when it ran (the rest, such as its parameters, stays).
RUN_METADATA = ("start_time", "end_time", "duration", "exception")
WIDGET = "application/vnd.jupyter.widget-view+json"
#: What ``--media`` copies: figures in any format and the study's numbers.
MEDIA = ("*.png", "*.pdf", "*.svg", "*.csv", "*.json")


def strip_run(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` in place without what says when and how it ran (see the module); returns it."""
    for key in RUN_METADATA:
        nb.metadata.get("papermill", {}).pop(key, None)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if cell.cell_type == "code":
            # Without stderr streams and progress widgets (only a stream has a name, only data a widget).
            cell.outputs = [
                o for o in cell.outputs if o.get("name") != "stderr" and WIDGET not in o.get("data", {})
            ]
    return nb


def committed(executed: str | os.PathLike) -> str:
    """The committed copy of the executed notebook ``executed``, as text (see the module).
    ``ValueError`` when it is not a notebook that papermill executed."""
    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{executed} is not a readable notebook ({e}); run make study or make science"
        ) from e
    if "papermill" not in nb.metadata:
        raise ValueError(f"{executed} was not executed by papermill; run make study or make science")
    if (cell := first_unfinished(nb)) is not None:  # read before the run's marks are stripped
        raise ValueError(
            f"{executed} did not run to the end: {cell}; fix it and run make study or make science again"
        )
    nb.cells = [c for c in nb.cells if INJECTED not in c.get("metadata", {}).get("tags", [])]
    return nbformat.writes(strip_run(nb))


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


def copy_media(source: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Copy the figures and CSVs (``MEDIA``) of the folder ``source`` into ``target``, each
    atomically; returns the paths written. ``ValueError`` when ``source`` holds none."""
    files = sorted({p for pattern in MEDIA for p in Path(source).glob(pattern) if p.is_file()})
    if not files:
        raise ValueError(
            f"{source} holds no figures or CSVs to publish; run make study or make science first"
        )
    return [atomic_write_bytes(Path(target) / p.name, p.read_bytes()) for p in files]


def main(argv: list[str] | None = None) -> int:
    """``EXECUTED COMMITTED [--media FROM TO] [--readme README]``: exit status 0, or 2 with one
    line on stderr."""
    from mlpmnist.workbench import report

    ap = argparse.ArgumentParser(
        prog="python -m mlpmnist.workbench.publish",
        description="an executed notebook's committed copy, its media, the README's generated blocks",
    )
    ap.add_argument("executed")
    ap.add_argument("committed")
    ap.add_argument("--media", nargs=2, metavar=("FROM", "TO"), help="copy FROM's figures and CSVs into TO")
    ap.add_argument("--readme", help="write this README's generated blocks from TO's CSVs (needs --media)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.readme and not args.media:
            raise ValueError("--readme needs --media FROM TO: the README is written from TO's CSVs")
        text = committed(args.executed)  # checked before anything is written
        written = copy_media(*args.media) if args.media else []
        target = Path(args.committed)
        remove_stale_temporaries(target.parent, target.name)  # a killed publish's
        written.append(atomic_write_text(target, text))
        if args.readme:
            written.append(report.update_readme(args.readme, report.readme_blocks(args.media[1])))
    except (ValueError, OSError) as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    for p in written:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
