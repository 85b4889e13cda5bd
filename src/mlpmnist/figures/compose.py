"""Every registry figure of a source, drawn from what the caller loaded, as name -> figure in the
registry's order; and ``save_figures``."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from mlpmnist.data.loader import Data
from mlpmnist.figures import FORMATS, registry
from mlpmnist.figures.embed import Embeddings
from mlpmnist.figures.model import pick_model
from mlpmnist.figures.registry import StudyFrames
from mlpmnist.figures.style import DPI
from mlpmnist.store import atomic_write_bytes


def study_figures(df: pd.DataFrame) -> dict[str, Figure]:
    """The figures of the results frame ``df``, its statistics computed once."""
    return registry.draw("results", StudyFrames(df))


def final_accuracy_figure(df: pd.DataFrame) -> Figure:
    """``final_accuracy_vs_batch`` alone, as the sweep's live view redraws it."""
    return registry.entry("final_accuracy_vs_batch").draw(StudyFrames(df))


def data_figures(data: Data) -> dict[str, Figure]:
    """The figures of the data (its training split and spec)."""
    return registry.draw("data", data.train, data.spec)


def model_figures(models: Mapping[int, nn.Module], data: Data, label: str = "") -> dict[str, Figure]:
    """The figures of the median seed's model (``pick_model``) on ``data``'s test split; ``label``
    (e.g. 'batch 90') starts each title, then the seed."""
    seed, model = pick_model(models, data.test)
    who = ", ".join(p for p in (label, f"seed {seed}") if p)
    if len(models) > 1:
        who += f" (median of {len(models)} seeds)"
    return registry.draw("model", model, data.test, data.spec, who)


def tsne_figures(emb: Embeddings, label: str = "") -> dict[str, Figure]:
    """The figures of the embedding ``emb``; ``label`` names its configuration (default: batch size)."""
    return registry.draw("embedding", emb, label)


def save_figures(figs: Mapping[str, Figure], folder: str | os.PathLike, format: str = "png") -> list[Path]:
    """Write each figure atomically as ``<folder>/<name>.<format>`` (PNG at ``style.DPI``) and release its
    artists (display it first); returns the paths. ``ValueError`` for another format, before
    anything is written."""
    if format not in FORMATS:
        raise ValueError(f"figure format must be one of {', '.join(FORMATS)}; got {format!r}")
    paths = []
    for name, fig in figs.items():
        buf = io.BytesIO()
        fig.savefig(buf, format=format, dpi=DPI, facecolor="white")
        fig.clear()
        paths.append(atomic_write_bytes(Path(folder) / f"{name}.{format}", buf.getvalue()))
    return paths
