"""The one style of every figure (``with figure(8, 5) as fig: ...``) and the helpers the study's
figures share. Figures are made without pyplot: no backend is switched, nothing piles up in it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlpmnist.analysis.columns import config_label, varying_axes
from mlpmnist.config import choices, field_names

DPI = 150
# Sized so that at ~800 px display width tick labels stay around 11 px high.
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
ERROR_RED = "#c0392b"  # wrong predictions, failed seeds
REFERENCE_COLOR = "#e67e22"  # the reference study's values
TRAIN_COLOR = "#d35400"
TEST_COLOR = "#2c3e50"


@contextmanager
def figure(width: float, height: float, **kwargs) -> Iterator[Figure]:
    """A new ``Figure`` of ``width`` x ``height`` inches with constrained layout; artists created
    inside the ``with`` block take ``STYLE``, the caller's rcParams are left untouched."""
    with mpl.rc_context(cast(Any, STYLE)):
        yield Figure(figsize=(width, height), layout="constrained", **kwargs)


def batch_colors(batch_sizes: Iterable[int]) -> dict[int, tuple]:
    """Batch size -> RGBA colour on viridis by log2(batch size), without the pale yellow end."""
    sizes = sorted({int(b) for b in batch_sizes})
    logs = np.log2(sizes)
    span = (logs.max() - logs.min()) or 1.0
    cmap = mpl.colormaps["viridis"]
    return {b: cmap(0.9 * (lg - logs.min()) / span) for b, lg in zip(sizes, logs, strict=True)}


def facet_axes(df: pd.DataFrame) -> list[str]:
    """The varying config axes of ``df`` other than the batch size: a study figure's panels."""
    return [c for c in varying_axes(df) if c != "batch_size"]


def value_order(column: str, value: object) -> tuple:
    """A sort key of ``value`` of config column ``column``: numbers in numeric order, fixed choices
    in ``TrainConfig``'s order, other text with its digits read as numbers, missing values last."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return (3,)
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return (0, float(value))
    options = (choices(column) if column in field_names() else None) or ()
    if value in options:
        return (1, options.index(value))
    parts = re.split(r"(\d+)", str(value))
    return (2, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p))


def facets(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The panels of a study figure: (title, rows) per combination of the values of
    ``facet_axes(df)`` in ``value_order``; ('', df) when nothing else varies."""
    axes = facet_axes(df)
    if not axes:
        return [("", df)]
    groups = df.groupby(axes, dropna=False, sort=False)
    ordered = sorted(groups, key=lambda kg: [value_order(c, v) for c, v in zip(axes, kg[0], strict=True)])
    return [(config_label(dict(zip(axes, k, strict=True)), axes), g) for k, g in ordered]


def grid(n: int, ncols: int) -> tuple[int, int]:
    """(rows, columns) of ``n`` panels at most ``ncols`` wide, rows as evenly filled as possible
    (4 panels at most 3 wide: 2 x 2, not 3 + 1)."""
    rows = -(-n // max(1, min(ncols, n)))
    return rows, -(-n // rows)


def limits(values: Iterable[float], top: float = np.inf, pad: float = 0.08) -> tuple[float, float]:
    """Axis limits within [0, ``top``] that fit ``values`` (NaN ignored) with ``pad`` of their range."""
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return 0.0, top if np.isfinite(top) else 1.0
    lo, hi = float(v.min()), float(v.max())
    margin = pad * (hi - lo) or 0.5
    return max(lo - margin, 0.0), min(hi + margin, top)


def epoch_axis(ax, epochs: Iterable[float], nbins: int = 8) -> None:
    """Integer epoch ticks and limits that fit ``epochs``: every epoch up to ``nbins``, else about
    ``nbins``."""
    e = np.unique(np.asarray(list(epochs), dtype=float))
    e = e[np.isfinite(e)]
    if len(e) <= nbins:
        ax.xaxis.set_major_locator(mpl.ticker.FixedLocator(e))
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    else:
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True, nbins=nbins, min_n_ticks=1))
    ax.set_xlim(e.min() - 0.3, e.max() + 0.3)
