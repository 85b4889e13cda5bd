"""Figures of the study, drawn from the tidy results frame (``results.load``).

Each function takes the frame and returns a ``Figure``. Spread over seeds is shown as the
statistics module summarises it: medians with quartile bands, medians with 95% bootstrap CIs,
every seed as a point, failed seeds (``stats.final``: diverged, collapsed, or far below their
configuration's median) marked apart. When the frame varies a config axis besides the batch
size (say two lrs), each figure draws one panel per value (``style.facets``). Accuracies are
drawn in percent, losses in nats, dead units in percent of the layer.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .. import stats
from .style import (
    ERROR_RED,
    REFERENCE_COLOR,
    TEST_COLOR,
    TRAIN_COLOR,
    batch_colors,
    epoch_axis,
    facets,
    figure,
    grid,
    limits,
)

# Markers of failed seeds and of the reference study's single seeds (gid: for tests to find them).
FAILED_MARKER = {
    "marker": "X",
    "s": 70,
    "color": ERROR_RED,
    "edgecolor": "white",
    "linewidth": 0.6,
    "zorder": 6,
    "gid": "failed",
}
REFERENCE_MARKER = {
    "marker": "*",
    "s": 190,
    "color": REFERENCE_COLOR,
    "edgecolor": "black",
    "linewidth": 0.6,
    "zorder": 7,
    "gid": "reference",
}
QUARTILES = ("pi", 50)  # seaborn's percentile interval from the 25th to the 75th percentile


def _median_lines(ax: Axes, data: pd.DataFrame, y: str, hue: str, palette: dict, **kw: Any) -> None:
    """Per ``hue`` value, the median over seeds of ``y`` against epoch, with its interquartile band."""
    sns.lineplot(
        data=data,
        x="epoch",
        y=y,
        hue=hue,
        palette=palette,
        estimator="median",
        errorbar=QUARTILES,
        ax=ax,
        **kw,
    )


def _marked(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the per-replica ``failed`` flag (``stats.mark_failed``) if it lacks one."""
    if df.empty:
        raise ValueError("the results frame is empty; run a sweep first")
    return df if "failed" in df.columns else stats.mark_failed(df)


def _curves(df: pd.DataFrame) -> pd.DataFrame:
    """Epoch-end rows of replicas that did not diverge (a diverged row's metrics are NaN)."""
    diverged = df["diverged"].astype(bool) if "diverged" in df.columns else False
    return stats.epoch_ends(df[~diverged])


def _seeds_text(df: pd.DataFrame) -> str:
    """'10' or '5–10': replicas per configuration."""
    n = stats.final(df).groupby(stats.config_columns(df), dropna=False).size()
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"


def _panel_axes(fig: Figure, n: int, ncols: int, **kw) -> list:
    nrows, ncols = grid(n, ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


# ------------------------------------------------------------------------ accuracy vs epoch


def accuracy_vs_epoch(df: pd.DataFrame, ncols: int = 3) -> Figure:
    """Test accuracy (%) against epoch: per batch size the median over seeds (line) and the
    interquartile range (band), colours ordered by batch size; one panel per value of any
    other varying config axis. The y range fits the medians; wide bands run off it."""
    curves = _curves(_marked(df)).assign(acc=lambda d: 100 * d["test_acc"])
    panels = facets(curves)
    colors = batch_colors(curves["batch_size"])
    medians = curves.groupby([*stats.config_columns(curves), "epoch"], dropna=False)["acc"].median()
    nrows, nc = grid(len(panels), ncols)
    with figure(1.6 + 5.0 * nc if nc > 1 else 9, 0.9 + (4.3 if nc > 1 else 5.0) * nrows) as fig:
        # Not sharex: a panel above an empty cell keeps its own epoch labels.
        axes = _panel_axes(fig, len(panels), ncols, sharey=True)
        for ax, (title, g) in zip(axes, panels, strict=True):
            _median_lines(
                ax, g, "acc", "batch_size", colors, marker="o", markersize=3, markeredgewidth=0, linewidth=1.8
            )
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy (%)")
            epoch_axis(ax, curves["epoch"])
        axes[0].set_ylim(*limits(medians, top=100))
        handles = _handles(axes)
        for ax in axes:
            ax.get_legend().remove()
        fig.legend(handles=handles, title="batch size", loc="outside right center")
        fig.suptitle(f"Test accuracy by epoch: median of {_seeds_text(df)} seeds (band: quartiles)")
    return fig


# ---------------------------------------------------------------- final accuracy vs batch


def _offsets(k: int, width: float = 0.07) -> np.ndarray:
    # Fixed (not random) sideways offsets, so the figure is the same every time it is drawn.
    return (np.arange(k) - (k - 1) / 2) * width


SIDE = 0.37  # the median's CI sits this far right of the box, the reference value as far left


def _failed_seeds(ax, failed: pd.DataFrame, pos: dict[int, int], ylim: tuple[float, float]) -> None:
    """Failed seeds as red crosses, one artist; those below the y range sit on its bottom
    edge with their values printed beside them."""
    xs, ys = [], []
    for b, g in failed.groupby("batch_size"):
        vals = np.sort(g["acc"].to_numpy())
        xs.append(pos[int(b)] + _offsets(len(vals)))
        ys.append(vals)
        low = vals[vals < ylim[0]]
        if len(low):
            ax.annotate(
                "below: " + ", ".join(f"{v:.1f}" for v in low),
                (pos[int(b)] + _offsets(len(vals))[-1], ylim[0]),
                xytext=(7, 3),
                textcoords="offset points",
                va="bottom",
                ha="left",
                fontsize=9,
                color=ERROR_RED,
            )
    x, y = np.concatenate(xs), np.concatenate(ys)
    label = "failed seed (below the axis: on its edge, value printed)"
    ax.scatter(x, np.maximum(y, ylim[0] + 0.012 * (ylim[1] - ylim[0])), **FAILED_MARKER, label=label)


def _boxes(done: pd.DataFrame, box_kw: dict, colors: dict) -> None:
    """Quartile boxes (no whiskers, no fliers: every seed is drawn as a dot)."""
    sns.boxplot(
        data=done,
        **box_kw,
        palette=colors,
        legend=False,
        width=0.5,
        whis=0,
        showcaps=False,
        showfliers=False,
        linewidth=0.8,
        boxprops={"alpha": 0.3},
        medianprops={"alpha": 0},  # the median is drawn with its CI beside the box
    )


def _final_panel(
    ax, fin: pd.DataFrame, sizes: list[int], colors: dict, ylim: tuple[float, float], by: list[str]
) -> None:
    pos = {b: i for i, b in enumerate(sizes)}
    done = fin[~fin["diverged"]].assign(acc=lambda d: 100 * d["test_acc"])
    ok, failed = done[~done["failed"]], done[done["failed"]]
    box_kw = dict(x="batch_size", y="acc", order=sizes, hue="batch_size", hue_order=sizes, ax=ax)
    with warnings.catch_warnings():
        # seaborn 0.13 passes matplotlib 3.11's deprecated ``vert``; nothing to change here.
        warnings.filterwarnings("ignore", "vert: bool", mpl.MatplotlibDeprecationWarning)
        _boxes(done, box_kw, colors)
    if len(ok):
        sns.swarmplot(
            data=ok, **box_kw, palette=colors, legend=False, size=4, linewidth=0.4, edgecolor="white"
        )

    summ = stats.summary(fin, by=by)
    centre = np.array([pos[int(b)] for b in summ["batch_size"]], dtype=float)
    med = 100 * summ["median"].to_numpy()
    lo = np.nan_to_num(med - 100 * summ["median_lo"].to_numpy())
    hi = np.nan_to_num(100 * summ["median_hi"].to_numpy() - med)
    ax.errorbar(
        centre + SIDE,
        med,
        yerr=[lo, hi],
        fmt="D",
        color="black",
        ms=5,
        capsize=3,
        lw=1.3,
        zorder=5,
        label="median, 95% bootstrap CI",
    )
    if len(failed):
        _failed_seeds(ax, failed, pos, ylim)

    ref = stats.reference_values(summ)
    has = ref.notna().to_numpy()
    if has.any():
        label = f"reference notebook, epoch {stats.REFERENCE_EPOCHS} (1 seed)"
        ax.scatter(centre[has] - SIDE, 100 * ref[has], **REFERENCE_MARKER, label=label)
    if has.any() or "lr" not in by:
        ax.axhline(
            100 * stats.REFERENCE_HEADLINE,
            color=REFERENCE_COLOR,
            ls="--",
            lw=1.2,
            zorder=1,
            label=f"reference README headline {100 * stats.REFERENCE_HEADLINE:.2f}%",
            gid="reference_headline",
        )

    n = fin.groupby("batch_size")["seed"].size()
    div = fin.groupby("batch_size")["diverged"].sum()
    ticks = [f"{b}\nn={n.get(b, 0)}" + (f"\n{div[b]} diverged" if div.get(b, 0) else "") for b in sizes]
    ax.set_xticks(range(len(sizes)), ticks)
    ax.set_xlim(-0.6, len(sizes) - 0.4)
    ax.set_ylim(*ylim)
    ax.set_xlabel("batch size (n: seeds)")


def _handles(axes) -> list:
    """The legend handles of all ``axes``, one per label (panels may each lack some)."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, h)
    return list(seen.values())


def final_accuracy_vs_batch(df: pd.DataFrame, ncols: int | None = None) -> Figure:
    """Final test accuracy (%) by batch size (evenly spaced categories): every seed as a dot,
    the quartiles as a box, the median with its 95% bootstrap CI (black diamond, right of the
    box), failed seeds as red crosses (below the y range: at its bottom edge, value printed),
    and the reference study's single-seed epoch-15 values as stars with its README headline
    (97.64%) as a dashed line. One panel per value of any other varying config axis; the
    reference values appear only in panels at its lr, 0.1. Panels sit side by side up to
    ``ncols`` (default: 2, or 1 with more than four batch sizes, so each stays readable)."""
    fin = stats.final(_marked(df))
    panels = facets(fin)
    sizes = sorted(int(b) for b in fin["batch_size"].unique())
    colors = batch_colors(sizes)
    by = stats.group_columns(fin)
    done = fin[~fin["diverged"]]
    ok = done[~done["failed"]]
    ref = 100 * stats.reference_values(fin).dropna()
    ylim = limits([*(100 * ok["test_acc"]), *ref, 100 * stats.REFERENCE_HEADLINE], top=100.0, pad=0.06)
    epochs = sorted(done["epoch"].unique())
    nrows, nc = grid(len(panels), ncols or (1 if len(sizes) > 4 else 2))
    width = max(7.5, 1.2 + 0.95 * len(sizes))
    with figure(width * nc, 1.5 + 4.2 * nrows) as fig:
        axes = _panel_axes(fig, len(panels), nc, sharey=True)
        for ax, (title, g) in zip(axes, panels, strict=True):
            _final_panel(ax, g, sizes, colors, ylim, by)
            ax.set_title(title)
        ep = f"epoch {int(epochs[0])}" if len(epochs) == 1 else "the last epoch"
        for ax in axes:
            ax.set_ylabel(f"test accuracy after {ep} (%)")
        seed = mpl.lines.Line2D([], [], ls="", marker="o", ms=5, color="0.45", mec="white", label="seed")
        fig.legend(handles=[seed, *_handles(axes)], loc="outside lower center", ncols=2)
        fig.suptitle("Final test accuracy by batch size: every seed (box: quartiles)")
    return fig


# --------------------------------------------------------------------------------- heatmap


def heatmap_batch_epoch(df: pd.DataFrame, vmin_quantile: float = 0.2, max_epochs: int = 16) -> Figure:
    """Median test accuracy (%) over seeds for each batch size (rows) and epoch (columns),
    annotated; one heatmap per value of any other varying config axis, on one colour scale.
    The scale starts at the ``vmin_quantile`` of the cells, so the small differences among
    the best cells get most of the colours; lower cells share the darkest colour but keep
    their number. With more than ``max_epochs`` epochs, evenly spaced epochs (always the
    first and last) are shown."""
    curves = _curves(_marked(df))
    tables = []
    for title, g in facets(curves):
        t = 100 * g.groupby(["batch_size", "epoch"])["test_acc"].median().unstack("epoch")
        t.columns = [int(c) for c in t.columns]
        tables.append((title, t))
    epochs = sorted({c for _, t in tables for c in t.columns})
    subset = len(epochs) > max_epochs
    if subset:
        keep = np.unique(np.linspace(0, len(epochs) - 1, max_epochs).round().astype(int))
        shown = [epochs[i] for i in keep]
        tables = [(title, t[[c for c in shown if c in t.columns]]) for title, t in tables]
    cells = np.concatenate([t.to_numpy().ravel() for _, t in tables])
    vmin, vmax = float(np.nanquantile(cells, vmin_quantile)), float(np.nanmax(cells))
    n_rows = max(len(t) for _, t in tables)
    n_cols = max(t.shape[1] for _, t in tables)
    panel_w = max(5.0, 1.3 + 0.55 * n_cols)
    with figure(panel_w * len(tables) + 1.2, max(3.2, 1.5 + 0.42 * n_rows)) as fig:
        axes = fig.subplots(1, len(tables), squeeze=False).ravel()
        for ax, (title, t) in zip(axes, tables, strict=True):
            sns.heatmap(
                t,
                ax=ax,
                annot=True,
                fmt=".1f",
                annot_kws={"fontsize": 9},
                cmap="mako",
                vmin=vmin,
                vmax=vmax,
                linewidths=0.5,
                linecolor="white",
                cbar=False,
            )
            ax.grid(False)
            ax.set_xlabel("epoch (evenly spaced subset)" if subset else "epoch")
            ax.set_ylabel("batch size")
            ax.tick_params(axis="y", rotation=0)
            ax.set_title(title)
        # The triangle at the bottom of the bar says: lower cells share the darkest colour.
        fig.colorbar(
            axes[0].collections[0],
            ax=list(axes),
            shrink=0.9,
            extend="min" if np.nanmin(cells) < vmin else "neither",
            label="median test accuracy (%)",
        )
        fig.suptitle(f"Median test accuracy (%) by batch size and epoch ({_seeds_text(df)} seeds)")
    return fig


# --------------------------------------------------------------------------- train vs test


def _split_lines(ax, g: pd.DataFrame, metric: str, scale: float) -> None:
    long = pd.concat(
        [
            pd.DataFrame({"epoch": g["epoch"], "split": split, "value": scale * g[f"{split}_{metric}"]})
            for split in ("train", "test")
        ],
        ignore_index=True,
    )
    palette = {"train": TRAIN_COLOR, "test": TEST_COLOR}
    _median_lines(
        ax, long, "value", "split", palette, hue_order=["train", "test"], linewidth=1.6, legend=False
    )


def train_vs_test(df: pd.DataFrame, ncols: int = 4) -> Figure:
    """Small multiples, one column per batch size (and value of any other varying config
    axis), wrapped after ``ncols``: accuracy (%) on top, loss (nats) below, train and test
    curves each the median over seeds with a quartile band. Train values are the mean over
    the steps since the previous evaluation, so they lag the end-of-epoch weights a little."""
    curves = _curves(_marked(df))
    panels = [
        (", ".join(p for p in (f"batch {int(b)}", title) if p), g)
        for title, fg in facets(curves)
        for b, g in fg.groupby("batch_size")
    ]
    n = len(panels)
    nblocks, ncols = grid(n, ncols)
    with figure(2.7 * ncols + 0.6, 4.4 * nblocks + 0.7) as fig:
        axes = fig.subplots(2 * nblocks, ncols, sharex=True, squeeze=False)
        for i in range(nblocks * ncols):
            ax_acc, ax_loss = axes[2 * (i // ncols), i % ncols], axes[2 * (i // ncols) + 1, i % ncols]
            if i >= n:
                ax_acc.set_visible(False)
                ax_loss.set_visible(False)
                continue
            title, g = panels[i]
            _split_lines(ax_acc, g, "acc", 100)
            _split_lines(ax_loss, g, "loss", 1)
            ax_acc.set_title(title)
            ax_acc.set_ylabel("accuracy (%)" if i % ncols == 0 else "")
            ax_loss.set_ylabel("loss (nats)" if i % ncols == 0 else "")
            ax_acc.set_xlabel("")
            ax_loss.set_xlabel("epoch" if i + ncols >= n else "")
            if i + ncols >= n:  # the lowest panel in its column shows its epochs
                ax_loss.tick_params(axis="x", labelbottom=True)
            # Shared ranges per metric, fitted to the medians, so panels compare at a glance.
            ax_acc.set_ylim(*limits(_medians(curves, ("train_acc", "test_acc"), 100), top=100))
            ax_loss.set_ylim(*limits(_medians(curves, ("train_loss", "test_loss"), 1)))
            epoch_axis(ax_loss, curves["epoch"])
            ax_loss.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True, nbins=4))
        handles = [
            mpl.lines.Line2D([], [], color=TRAIN_COLOR, lw=2, label="train (mean over the epoch's steps)"),
            mpl.lines.Line2D([], [], color=TEST_COLOR, lw=2, label="test (after the epoch)"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=2)
        fig.suptitle(f"Train vs test, accuracy and loss: median of {_seeds_text(df)} seeds (band: quartiles)")
    return fig


def _medians(curves: pd.DataFrame, columns: tuple[str, ...], scale: float) -> pd.Series:
    keys = [*stats.config_columns(curves), "epoch"]
    return pd.concat([scale * curves.groupby(keys, dropna=False)[c].median() for c in columns])


# ------------------------------------------------------------------------------ dead units


def dead_columns(df: pd.DataFrame) -> list[str]:
    """The dead-unit columns of ``df`` (``dead_1``, ``dead_2``, ...: fraction of a hidden
    layer's units that are zero on every test image), in layer order."""
    cols = [c for c in df.columns if re.fullmatch(r"dead_\d+", c)]
    return sorted(cols, key=lambda c: int(c.split("_")[1]))


def dead_units(df: pd.DataFrame) -> Figure:
    """Dead units (% of the layer's units that output zero on every test image) against
    epoch, one column per hidden layer and one row per value of any other varying config
    axis: per batch size the median over the seeds that did not fail, with a quartile band,
    and each failed seed as its own dashed line ending in a red cross.

    Raises ``ValueError`` when the frame has no ``dead_*`` columns (records made before the
    training loop stored them)."""
    layers = dead_columns(df)
    if not layers:
        raise ValueError(
            "the results frame has no dead-unit columns (dead_1, dead_2, ...); they are recorded "
            "by train() since dead units were added: rerun the sweep to draw this figure"
        )
    curves = _curves(_marked(df))
    panels = facets(curves)
    colors = batch_colors(curves["batch_size"])
    with figure(1.0 + 5.2 * len(layers), 1.3 + 3.9 * len(panels)) as fig:
        axes = fig.subplots(len(panels), len(layers), squeeze=False, sharex=True, sharey=True)
        for row, (title, g) in enumerate(panels):
            for col, layer in enumerate(layers):
                ax = axes[row, col]
                _dead_panel(ax, g, layer, colors)
                k = layer.split("_")[1]
                ax.set_title(", ".join(p for p in (f"hidden layer {k}", title) if p))
                ax.set_ylabel("dead units (% of the layer)" if col == 0 else "")
                ax.set_xlabel("epoch" if row == len(panels) - 1 else "")
                epoch_axis(ax, curves["epoch"])
        axes[0, 0].set_ylim(bottom=0)
        handles = [mpl.lines.Line2D([], [], color=colors[b], lw=2, label=str(b)) for b in sorted(colors)]
        if curves["failed"].any():
            handles.append(
                mpl.lines.Line2D(
                    [],
                    [],
                    color="0.3",
                    ls="--",
                    marker="X",
                    mfc=ERROR_RED,
                    mec=ERROR_RED,
                    label="failed seed (one line each)",
                )
            )
        fig.legend(handles=handles, title="batch size", loc="outside right center")
        fig.suptitle(
            f"Dead ReLU units by epoch: median of the seeds that did not fail (band: quartiles), "
            f"{_seeds_text(df)} seeds"
        )
    return fig


def _dead_panel(ax, g: pd.DataFrame, layer: str, colors: dict) -> None:
    g = g.assign(dead=100 * g[layer])
    ok = g[~g["failed"]]
    if len(ok):
        _median_lines(ax, ok, "dead", "batch_size", colors, linewidth=1.8, legend=False)
    for _, r in g[g["failed"]].groupby(stats.replica_columns(g), dropna=False):
        r = r.sort_values("epoch")
        b = int(r["batch_size"].iloc[0])
        ax.plot(r["epoch"], r["dead"], ls="--", lw=1.2, color=colors[b], gid="failed")
        ax.plot(r["epoch"].iloc[-1:], r["dead"].iloc[-1:], "X", ms=7, color=ERROR_RED, gid="failed")
