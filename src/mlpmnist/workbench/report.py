"""Numbers that cannot go stale: the study's numbers as committed CSVs (``write_study``), and the
README's generated blocks written from them (``readme_blocks``), each between two marker
comments (``<!-- results-table:start -->`` ... ``<!-- results-table:end -->``). Same CSVs, same
text (tests/unit/test_report.py checks that the committed README agrees with the committed CSVs).
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from mlpmnist.analysis import findings, tables
from mlpmnist.science import report as science_report
from mlpmnist.store import atomic_write_text, remove_stale_temporaries

#: The CSVs the study writes (``write_study``), by their role, and the science's summary.
FILES = {
    "summary": "study_summary.csv",
    "pairs": "study_pairs.csv",
    "dead": "study_dead_units.csv",
    "science": "science_summary.json",
}
#: The README's generated blocks, in order.
BLOCKS = ("results-table", "results-findings", "dead-units", "science")
WIDTH = 100  # the README's prose is wrapped at this width


def markers(name: str) -> tuple[str, str]:
    """The start and end comments of the README block ``name``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` as CSV at ``path`` atomically, numbers in full (shortest round-trip repr),
    so text made from the CSV is the text made from the frame. Returns the path."""
    remove_stale_temporaries(Path(path).parent, Path(path).name)  # a killed write's (W7)
    return atomic_write_text(path, tables.export(frame, "csv"))


def write_study(
    folder: str | os.PathLike, summ: pd.DataFrame, pairs: pd.DataFrame, dead: pd.DataFrame | None
) -> list[Path]:
    """The study's numbers as the CSVs of ``FILES`` in ``folder`` (the dead units where the records
    have them). Returns the paths."""
    frames = {"summary": summ, "pairs": pairs, "dead": dead}
    return [write_csv(f, Path(folder) / FILES[role]) for role, f in frames.items() if f is not None]


def read_summary(path: str | os.PathLike) -> pd.DataFrame:
    """The frame ``write_csv`` wrote, ``n_failed`` recomputed as ``n_collapsed`` + ``n_diverged``
    (a CSV written before outliers were counted apart counted them in it)."""
    s = pd.read_csv(path)
    if {"n_collapsed", "n_diverged"} <= set(s.columns):
        s["n_failed"] = s["n_collapsed"] + s["n_diverged"]
    return s


def bullets(lines: list[str]) -> str:
    """``lines`` as a markdown list, each wrapped at ``WIDTH``; newline-ended."""
    return "".join(textwrap.fill(x, WIDTH, initial_indent="- ", subsequent_indent="  ") + "\n" for x in lines)


def readme_blocks(media: str | os.PathLike) -> dict[str, str]:
    """Each README block (``BLOCKS``) that the files in ``media`` give: the table, the findings and
    the dead-unit findings from the study's CSVs, the science section from its summary."""
    media = Path(media)
    out = {}
    science = media / FILES["science"]
    if science.is_file():
        out["science"] = science_report.section(json.loads(science.read_text(encoding="utf-8")))
    if not (media / FILES["summary"]).is_file():
        return out  # the science published alone
    summ = read_summary(media / FILES["summary"])
    out["results-table"] = tables.markdown_table(summ)
    if (media / FILES["pairs"]).is_file():
        out["results-findings"] = bullets(findings.conclusions(summ, pd.read_csv(media / FILES["pairs"])))
    if (media / FILES["dead"]).is_file():
        out["dead-units"] = bullets(findings.dead_units_findings(pd.read_csv(media / FILES["dead"])))
    return out


def _block(text: str, name: str) -> tuple[int, int]:
    """Start and end offsets of the text between block ``name``'s markers; ValueError if they
    are not there once each, in order."""
    start, end = markers(name)
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"the README must hold {start} and then {end}, once each")
    return text.index(start) + len(start), text.index(end)


def update_readme(readme_path: str | os.PathLike, blocks: Mapping[str, str]) -> Path:
    """Replace the text between each block's markers (``BLOCKS`` name -> text) atomically, the
    rest kept byte for byte. ``ValueError`` when a block's markers are not there once each."""
    text = Path(readme_path).read_text(encoding="utf-8")
    for name, content in blocks.items():
        start, end = _block(text, name)
        text = text[:start] + "\n" + content.strip("\n") + "\n" + text[end:]
    remove_stale_temporaries(Path(readme_path).parent, Path(readme_path).name)  # a killed update's (W7)
    return atomic_write_text(readme_path, text)
