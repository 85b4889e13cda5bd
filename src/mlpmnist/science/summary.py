"""The science run's summary record (``science_summary.json``: what the README's science section
is generated from) and where a run's outputs go."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlpmnist import paths
from mlpmnist.parameters import output_folder
from mlpmnist.science import intervals
from mlpmnist.science.presets import Preset
from mlpmnist.science.sections import Section
from mlpmnist.store import atomic_write_text, check_folder

SUMMARY = "science_summary.json"


@dataclass(frozen=True)
class Outputs:
    """Where a science run writes its summary and figures: the folder ``media``."""

    media: Path

    @classmethod
    def at(cls, media_dir: object, results_dir: Path) -> Outputs:
        """Outputs in ``media_dir`` (None: ``<results_dir>/science/media``; relative paths from the
        repository root, ``paths.resolve``), checked before any training as a folder this process
        can write; nothing is created until a file is written (``ValueError`` naming ``media_dir``)."""
        if media_dir is None:
            return cls(check_folder(Path(results_dir) / "science" / "media", "media_dir", (SUMMARY,)))
        return cls(output_folder("media_dir", media_dir, (SUMMARY,)))

    def describe(self) -> str:
        """Where the summary and the figures go, as a line."""
        return f"summary and figures -> {paths.shown(self.media)}/"

    def show(self, name: str, *inputs: Any) -> None:
        """Draw the science figure ``name`` of the figure registry from ``inputs``, display it (in a
        notebook), and save it as ``<media>/<name>.png`` the way every figure is saved. Returns
        nothing, so a notebook cell that ends with it shows the figure alone."""
        from IPython.display import display

        from mlpmnist.figures import registry
        from mlpmnist.figures.compose import save_figures

        fig = registry.entry(name, "science").draw(*inputs)
        display(fig)
        save_figures({name: fig}, self.media)


def clean(v: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, NaN/inf as None, containers recursively."""
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def record(p: Preset, sections: dict[str, Section]) -> dict[str, Any]:
    """The run's numbers as a JSON-ready dict: the preset, each section's ``values``, and the
    simulated rate at which a second set's value falls inside the first's 95% interval
    (``intervals.inside_rate``, for a median of the first set's seed count, from the pooled
    per-seed steps to the highest target at the batch size nearest 64)."""
    rate = math.nan
    steps = sections.get("steps")
    if steps is not None:
        first = steps.tables["first1"]
        top = max(p.targets)
        at = first[np.isclose(first["target"], top)]
        b = min(at["batch_size"].unique(), key=lambda x: abs(x - 64))
        fast = steps.values["per_target"][f"{top:g}"]["table"]
        lr = next((r["lr"] for r in fast if r["batch_size"] == b), math.nan)
        pooled = at[(at["batch_size"] == b) & np.isclose(at["lr"], lr)]["steps"]
        rate = intervals.inside_rate(pooled, len(p.sets[0]))
    return clean(
        {
            "quick": p.quick,
            "preset": p.describe(),
            "sets": [list(s) for s in p.sets],
            "tune_epochs": p.tune_epochs,
            **{name: s.values for name, s in sections.items()},
            "inside_rate": rate,  # no wall times: a rerun with the same numbers publishes the same bytes
        }
    )


def write(rec: dict[str, Any], out: Outputs) -> Path:
    """Write ``rec`` as ``<media>/science_summary.json`` beside the figures (indented, atomically:
    what ``make publish-science`` copies and writes the README's science section from); returns the
    path."""
    return atomic_write_text(out.media / SUMMARY, json.dumps(rec, indent=1, allow_nan=False) + "\n")
