"""Where the science notebook's outputs go, and how many runs it trains at once.

A run of the notebook writes under ``results/science/`` of the repository (its figures under
``media/`` there), whatever folder its kernel started in; ``make science`` passes the
repository's ``media/`` for the committed figures. Relative paths are read as ``paths.resolve``
reads them: from the repository root inside a checkout, else from the working folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from mlpmnist import paths
from mlpmnist.science.presets import Preset
from mlpmnist.science.summary import write_summary
from mlpmnist.training.many import GPU_CONCURRENCY

#: Runs trained at once on a CPU: one per core of a 2-core machine (threads of one process).
CPU_CONCURRENCY = 2


@dataclass(frozen=True)
class Outputs:
    """The science run's folder (``out_dir``: its summary) and its figures' folder (``media``)."""

    out_dir: Path
    media: Path

    @classmethod
    def at(
        cls, out_dir: str | os.PathLike | None = None, media_dir: str | os.PathLike | None = None
    ) -> Outputs:
        """Outputs under ``out_dir`` (None: the repository's ``results/science``), figures under
        ``media_dir`` (None: ``<out_dir>/media``); relative paths from the repository root."""
        out = paths.resolve(out_dir if out_dir is not None else "results/science")
        return cls(out, paths.resolve(media_dir) if media_dir is not None else out / "media")

    def describe(self) -> str:
        """Where the summary and the figures go, as a line."""
        summary = paths.shown(self.out_dir / "science_summary.json")
        return f"summary -> {summary}; figures -> {paths.shown(self.media)}/"

    def show(self, fig: Figure, name: str) -> Path:
        """Display ``fig`` (in a notebook), then write it as ``<media>/<name>.png`` the way every
        figure is saved (``compose.save_figures``); returns the path. ``name`` is a science
        figure's name in the figure registry (``ValueError`` otherwise, before anything shows)."""
        from IPython.display import display

        from mlpmnist.figures import registry
        from mlpmnist.figures.compose import save_figures

        registry.entry(name, "science")
        display(fig)
        (path,) = save_figures({name: fig}, self.media)
        print(f"saved {paths.shown(path)}")
        return path

    def save_summary(self, record: dict[str, Any]) -> Path:
        """Write ``record`` as ``<out_dir>/science_summary.json``; returns the path."""
        return write_summary(record, self.out_dir / "science_summary.json")


def concurrency(preset: Preset) -> int:
    """Runs trained at once: the preset's, else one per core on a CPU (up to ``CPU_CONCURRENCY``)
    and ``GPU_CONCURRENCY`` on a GPU."""
    if preset.concurrency:
        return preset.concurrency
    import torch

    if torch.cuda.is_available():
        return GPU_CONCURRENCY
    return max(1, min(CPU_CONCURRENCY, os.cpu_count() or 1))
