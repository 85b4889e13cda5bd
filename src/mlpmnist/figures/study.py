"""Figures of the study, drawn from frames the statistics already made; nothing here computes
a statistic (``mlpmnist.figures`` calls ``stats`` once and hands the frames over):

- ``curves``: the results frame with each replica's ``failed`` and ``outlier`` flags on every
  row (``stats.mark_failed``);
- ``fin``: one row per replica (``stats.final``);
- ``summ``: one row per configuration (``stats.summary``): seeds, medians with their CIs, the
  reference study's values where they apply;
- ``per``: per configuration and epoch (``stats.per_epoch``).

Spread over seeds is shown as the statistics summarise it: medians with quartile bands,
medians with 95% bootstrap CIs, every seed as a point. Failed seeds (diverged or collapsed) and
outliers (finished far below their configuration's median) are marked apart, each with its own
legend entry. With one seed per configuration no band or box is drawn and the title says
'1 seed'; with one epoch curves are points and the epoch axis has the one tick. When the frame
varies a config axis besides the batch size (say two lrs, or two studies' epochs), each figure
draws one panel per value in the grid's order (``style.facets``), each panel with the batch sizes
and the epochs it has. Value ranges include the quartile bands, so no band is cut off unsaid.
Accuracies in percent, losses in nats, dead units in percent of the layer.
"""

from __future__ import annotations

import warnings
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mlpmnist.analysis.columns import config_columns, dead_columns, replica_columns
from mlpmnist.analysis.stats import epoch_ends
from mlpmnist.figures.style import (
    ERROR_RED,
    REFERENCE_COLOR,
    TEST_COLOR,
    TRAIN_COLOR,
    batch_colors,
    epoch_axis,
    facet_axes,
    facets,
    figure,
    grid,
    limits,
    panel_rows,
)

# Markers of failed seeds, outliers and the reference study's single seeds (gid: for tests).
FAILED_MARKER = {
    "marker": "X",
    "s": 70,
    "color": ERROR_RED,
    "edgecolor": "white",
    "linewidth": 0.6,
    "zorder": 6,
    "gid": "failed",
}
OUTLIER_MARKER = {
    "marker": "o",
    "s": 44,
    "facecolor": "none",
    "edgecolor": ERROR_RED,
    "linewidth": 1.4,
    "zorder": 6,
    "gid": "outlier",
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
FAILED_LABEL = "failed seed (collapsed to chance)"
OUTLIER_LABEL = "outlier (finished far below its median)"


def _one_seed(summ: pd.DataFrame) -> bool:
    return bool(summ["n"].max() <= 1)


def _n_seeds(summ: pd.DataFrame) -> str:
    """Seeds per configuration: '10', or '5–10' when they differ."""
    lo, hi = int(summ["n"].min()), int(summ["n"].max())
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _over_seeds(summ: pd.DataFrame) -> str:
    """'median of 10 seeds (band: quartiles)', 'median of 5–10 seeds (...)', or '1 seed'."""
    return "1 seed" if _one_seed(summ) else f"median of {_n_seeds(summ)} seeds (band: quartiles)"


def _median_lines(
    ax: Axes, data: pd.DataFrame, y: str, hue: str, palette: dict, one_seed: bool, **kw: Any
) -> None:
    """Per ``hue`` value, the median over seeds of ``y`` against epoch, with its interquartile
    band (a bar where there is one epoch; none from one seed), each epoch a point."""
    sns.lineplot(
        data=data,
        x="epoch",
        y=y,
        hue=hue,
        palette=palette,
        estimator="median",
        errorbar=None if one_seed else QUARTILES,
        err_style="band" if data["epoch"].nunique() > 1 else "bars",  # a band at one epoch has no width
        marker="o",
        markersize=3.5 if data["epoch"].nunique() > 2 else 6,  # a lone point must be seen
        markeredgewidth=0,
        ax=ax,
        **kw,
    )


def _curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Epoch-end rows of replicas that did not diverge (a diverged row's metrics are NaN)."""
    if curves.empty:
        raise ValueError("the results frame is empty; run a sweep first")
    if missing := {"failed", "outlier"} - set(curves.columns):
        raise ValueError(f"the frame lacks {sorted(missing)}: pass stats.mark_failed(df)")
    diverged = curves["diverged"].astype(bool) if "diverged" in curves.columns else False
    return epoch_ends(curves[~diverged])


def _panel_axes(fig: Figure, n: int, ncols: int, **kw) -> list:
    nrows, ncols = grid(n, ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def _handles(axes) -> list:
    """The legend handles of all ``axes``, one per label (panels may each lack some), in the
    order the panels first show them."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, h)
    return list(seen.values())


def _batch_handles(axes) -> list:
    """``_handles`` of panels whose labels are batch sizes, in numeric order (not the order
    the panels meet them: one panel may have 16, 48 and 128, the next 32)."""
    return sorted(_handles(axes), key=lambda h: int(h.get_label()))


def _same_epochs(panels: list[tuple[str, pd.DataFrame]]) -> bool:
    """Whether every panel has the same epochs (then they share one epoch axis)."""
    return len({tuple(np.unique(g["epoch"])) for _, g in panels}) <= 1


def _spread(curves: pd.DataFrame, columns: tuple[str, ...], scale: float) -> pd.Series:
    """Every value the median lines and quartile bands of ``columns`` (times ``scale``) reach:
    per configuration and epoch the median, the 25th and the 75th percentile over seeds (the
    band seaborn draws), so the axis limits can hold them all."""
    keys = [*config_columns(curves), "epoch"]
    parts = []
    for c in columns:
        g = curves[keys].assign(value=scale * curves[c]).groupby(keys, dropna=False)["value"]
        parts += [g.median(), g.quantile(0.25), g.quantile(0.75)]
    return pd.concat(parts)


# ------------------------------------------------------------------------ accuracy vs epoch


def accuracy_vs_epoch(curves: pd.DataFrame, summ: pd.DataFrame, ncols: int = 3) -> Figure:
    """Test accuracy (%) against epoch: per batch size the median over seeds (line, a point
    per epoch) and the interquartile range (band), colours and legend ordered by batch size;
    one panel per value of any other varying config axis, each with its own epochs. The y
    range fits the medians and their bands."""
    curves = _curves(curves).assign(acc=lambda d: 100 * d["test_acc"])
    panels = facets(curves)
    colors = batch_colors(curves["batch_size"])
    nrows, nc = grid(len(panels), ncols)
    with figure(1.6 + 5.0 * nc if nc > 1 else 9, 0.9 + (4.3 if nc > 1 else 5.0) * nrows) as fig:
        # Not sharex: a panel above an empty cell keeps its own epoch labels.
        axes = _panel_axes(fig, len(panels), ncols, sharey=True)
        for ax, (title, g) in zip(axes, panels, strict=True):
            _median_lines(ax, g, "acc", "batch_size", colors, _one_seed(summ), linewidth=1.8)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy (%)")
            epoch_axis(ax, g["epoch"])
        axes[0].set_ylim(*limits(_spread(curves, ("acc",), 1), top=100))
        handles = _batch_handles(axes)
        for ax in axes:
            ax.get_legend().remove()
        fig.legend(handles=handles, title="batch size", loc="outside right center")
        fig.suptitle(f"Test accuracy by epoch: {_over_seeds(summ)}")
    return fig


# ---------------------------------------------------------------- final accuracy vs batch


def _offsets(k: int, width: float = 0.07) -> np.ndarray:
    # Fixed (not random) sideways offsets, so the figure is the same every time it is drawn.
    return (np.arange(k) - (k - 1) / 2) * width


SIDE = 0.37  # the median's CI sits this far right of the box, the reference value as far left


def _marked_seeds(ax, marked: pd.DataFrame, pos: dict[int, int], ylim: tuple[float, float]) -> None:
    """Failed seeds as red crosses and outliers as red rings, one artist each; those below the
    y range sit on its bottom edge, their values printed beside them."""
    placed = []
    for b, g in marked.groupby("batch_size"):
        g = g.sort_values("acc")
        placed.append(g.assign(x=pos[int(b)] + _offsets(len(g))))
        low = g.loc[g["acc"] < ylim[0], "acc"]
        if len(low):
            ax.annotate(
                "below: " + ", ".join(f"{v:.1f}" for v in low),
                (placed[-1]["x"].max(), ylim[0]),
                xytext=(7, 3),
                textcoords="offset points",
                va="bottom",
                ha="left",
                fontsize=9,
                color=ERROR_RED,
            )
    at = pd.concat(placed)
    at["y"] = np.maximum(at["acc"], ylim[0] + 0.012 * (ylim[1] - ylim[0]))
    for flag, style, label in (
        ("failed", FAILED_MARKER, FAILED_LABEL),
        ("outlier", OUTLIER_MARKER, OUTLIER_LABEL),
    ):
        if at[flag].any():
            ax.scatter(at.loc[at[flag], "x"], at.loc[at[flag], "y"], **style, label=label)


def _boxes(done: pd.DataFrame, box_kw: dict, colors: dict) -> None:
    """Quartile boxes (no whiskers, no fliers: every seed is drawn as a dot)."""
    with warnings.catch_warnings():
        # seaborn 0.13 passes matplotlib 3.11's deprecated ``vert``; nothing to change here.
        warnings.filterwarnings("ignore", "vert: bool", mpl.MatplotlibDeprecationWarning)
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


def _references(ax, summ: pd.DataFrame, pos: dict[int, int]) -> None:
    """The reference study's single seeds (stars, left of the box) and headline (dashed line),
    where ``summ`` gives them."""
    ref = summ[summ["reference"].notna()]
    if len(ref):
        x = np.array([pos[int(b)] for b in ref["batch_size"]], dtype=float) - SIDE
        label = f"reference study, epoch {int(ref['final_epoch'].iloc[0])} (1 seed)"
        ax.scatter(x, 100 * ref["reference"], **REFERENCE_MARKER, label=label)
    headline = summ["reference_headline"].dropna()
    if len(headline):
        h = 100 * float(headline.iloc[0])
        label = f"reference study's headline {h:.2f}%"
        ax.axhline(h, color=REFERENCE_COLOR, ls="--", lw=1.2, zorder=1, label=label, gid="reference_headline")


def _final_panel(ax, fin: pd.DataFrame, summ: pd.DataFrame, sizes: list[int], colors: dict, ylim) -> None:
    pos = {b: i for i, b in enumerate(sizes)}
    done = fin[~fin["diverged"]].assign(acc=lambda d: 100 * d["test_acc"])
    plain = done[~done["failed"] & ~done["outlier"]]
    box_kw = dict(x="batch_size", y="acc", order=sizes, hue="batch_size", hue_order=sizes, ax=ax)
    several = done.groupby("batch_size")["acc"].transform("size") > 1  # one value: no box
    if several.any():
        _boxes(done[several], box_kw, colors)
    if len(plain):
        sns.swarmplot(
            data=plain, **box_kw, palette=colors, legend=False, size=4, linewidth=0.4, edgecolor="white"
        )
    ci = summ[np.isfinite(summ["median_lo"])]
    if len(ci):
        med = 100 * ci["median"].to_numpy()
        ax.errorbar(
            np.array([pos[int(b)] for b in ci["batch_size"]], dtype=float) + SIDE,
            med,
            yerr=[med - 100 * ci["median_lo"].to_numpy(), 100 * ci["median_hi"].to_numpy() - med],
            fmt="D",
            color="black",
            ms=5,
            capsize=3,
            lw=1.3,
            zorder=5,
            label="median, 95% bootstrap CI",
        )
    marked = done[done["failed"] | done["outlier"]]
    if len(marked):
        _marked_seeds(ax, marked, pos, ylim)
    _references(ax, summ, pos)

    counts = summ.set_index("batch_size")
    ticks = []
    for b in sizes:
        n, div = (int(counts.at[b, "n"]), int(counts.at[b, "n_diverged"])) if b in counts.index else (0, 0)
        ticks.append(f"{b}\nn={n}" + (f"\n{div} diverged" if div else ""))
    ax.set_xticks(range(len(sizes)), ticks)
    ax.set_xlim(-0.6, len(sizes) - 0.4)
    ax.set_ylim(*ylim)
    ax.set_xlabel("batch size (n: seeds)")


def final_accuracy_vs_batch(fin: pd.DataFrame, summ: pd.DataFrame, ncols: int | None = None) -> Figure:
    """Final test accuracy (%) by batch size (evenly spaced categories), from ``fin`` (one row
    per replica) and ``summ``: every seed as a dot, the quartiles as a box (where there are
    several seeds), the median with its 95% bootstrap CI (black diamond, right of the box;
    none from one seed), failed seeds as red crosses and outliers as red rings (below the y
    range: at its bottom edge, value printed), and, where ``summ`` has them, the reference
    study's single seeds as stars and its headline as a dashed line. One panel per value of any
    other varying config axis, each with the batch sizes it has. Panels sit side by side up to
    ``ncols`` (default: 2, or 1 when a panel has more than four batch sizes, so each stays
    readable)."""
    if fin.empty:
        raise ValueError("the results frame is empty; run a sweep first")
    panels, axes_cols = facets(fin), facet_axes(fin)
    sizes_of = [sorted(int(b) for b in g["batch_size"].unique()) for _, g in panels]
    most = max(len(sizes) for sizes in sizes_of)
    colors = batch_colors(fin["batch_size"])
    done = fin[~fin["diverged"]]
    plain = done[~done["failed"] & ~done["outlier"]]
    fit = 100 * (plain if len(plain) else done)["test_acc"]
    refs = 100 * pd.concat([summ["reference"], summ["reference_headline"]]).dropna()
    ylim = limits([*fit, *refs], top=100.0, pad=0.06)
    epochs = sorted(done["epoch"].unique())
    nrows, nc = grid(len(panels), ncols or (1 if most > 4 else 2))
    width = max(7.5, 1.2 + 0.95 * most)
    with figure(width * nc, 1.5 + 4.2 * nrows) as fig:
        axes = _panel_axes(fig, len(panels), nc, sharey=True)
        for ax, (title, g), sizes in zip(axes, panels, sizes_of, strict=True):
            _final_panel(ax, g, panel_rows(summ, g, axes_cols), sizes, colors, ylim)
            ax.set_title(title)
        ep = f"epoch {int(epochs[0])}" if len(epochs) == 1 else "the last epoch"
        for ax in axes:
            ax.set_ylabel(f"test accuracy after {ep} (%)")
        seed = mpl.lines.Line2D([], [], ls="", marker="o", ms=5, color="0.45", mec="white", label="seed")
        fig.legend(handles=[seed, *_handles(axes)], loc="outside lower center", ncols=2)
        what = "1 seed each" if _one_seed(summ) else "every seed (box: quartiles)"
        fig.suptitle(f"Final test accuracy by batch size: {what}")
    return fig


# --------------------------------------------------------------------------------- heatmap


def heatmap_batch_epoch(
    per: pd.DataFrame, summ: pd.DataFrame, vmin_quantile: float = 0.2, max_epochs: int = 16
) -> Figure:
    """Median test accuracy (%) over seeds (``per``'s ``test_acc_median``) for each batch size
    (rows) and epoch (columns), annotated; one heatmap per value of any other varying config
    axis, on one colour scale. The scale starts at the ``vmin_quantile`` of the cells, so the
    small differences among the best cells get most of the colours; lower cells share the
    darkest colour but keep their number. With more than ``max_epochs`` epochs, evenly spaced
    epochs (always the first and last) are shown."""
    per = per.reset_index()
    tables = []
    for title, g in facets(per):
        t = 100 * g.pivot_table(
            index="batch_size", columns="epoch", values="test_acc_median", aggfunc="first"
        )
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
    vmin = min(vmin, vmax - 0.5)  # one cell, or all equal: still a colour scale
    n_rows = max(len(t) for _, t in tables)
    n_cols = max(t.shape[1] for _, t in tables)
    # Each panel as wide as its epochs need: one of 1 epoch beside one of 15 is not stretched.
    widths = [max(2.5, 5.0 * t.shape[1] / n_cols, 1.3 + 0.55 * t.shape[1]) for _, t in tables]
    with figure(sum(widths) + 1.2, max(3.2, 1.5 + 0.42 * n_rows)) as fig:
        axes = fig.subplots(1, len(tables), squeeze=False, width_ratios=widths).ravel()
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
            label="test accuracy (%)" if _one_seed(summ) else "median test accuracy (%)",
        )
        what = "Test accuracy (%)" if _one_seed(summ) else "Median test accuracy (%)"
        fig.suptitle(
            f"{what} by batch size and epoch ({_n_seeds(summ)} seed{'' if _one_seed(summ) else 's'})"
        )
    return fig


# --------------------------------------------------------------------------- train vs test


def _split_lines(ax, g: pd.DataFrame, metric: str, scale: float, one_seed: bool) -> None:
    long = pd.concat(
        [
            pd.DataFrame({"epoch": g["epoch"], "split": split, "value": scale * g[f"{split}_{metric}"]})
            for split in ("train", "test")
        ],
        ignore_index=True,
    )
    palette = {"train": TRAIN_COLOR, "test": TEST_COLOR}
    _median_lines(
        ax,
        long,
        "value",
        "split",
        palette,
        one_seed,
        hue_order=["train", "test"],
        linewidth=1.6,
        legend=False,
    )


def train_vs_test(curves: pd.DataFrame, summ: pd.DataFrame, ncols: int = 4) -> Figure:
    """Small multiples, one column per batch size (and value of any other varying config
    axis), wrapped after ``ncols``: accuracy (%) on top, loss (nats) below, train and test
    curves each the median over seeds (a point per epoch) with a quartile band. Panels share
    one epoch axis when they have the same epochs, else each pair has its own. Train values
    are the mean over the steps since the previous evaluation, so they lag the end-of-epoch
    weights a little."""
    curves = _curves(curves)
    one_seed = _one_seed(summ)
    panels = [
        (", ".join(p for p in (f"batch {int(b)}", title) if p), g)
        for title, fg in facets(curves)
        for b, g in fg.groupby("batch_size")
    ]
    n = len(panels)
    nblocks, ncols = grid(n, ncols)
    same = _same_epochs(panels)
    acc_lim = limits(_spread(curves, ("train_acc", "test_acc"), 100), top=100)
    loss_lim = limits(_spread(curves, ("train_loss", "test_loss"), 1))
    # At least as wide as the title and the legend below, however few panels.
    with figure(max(2.7 * ncols + 0.6, 7.0), 4.4 * nblocks + 0.7) as fig:
        axes = fig.subplots(2 * nblocks, ncols, sharex=same, squeeze=False)
        for i in range(nblocks * ncols):
            ax_acc, ax_loss = axes[2 * (i // ncols), i % ncols], axes[2 * (i // ncols) + 1, i % ncols]
            if i >= n:
                ax_acc.set_visible(False)
                ax_loss.set_visible(False)
                continue
            title, g = panels[i]
            if not same:  # its own epochs: the pair shares them, and the loss panel shows them
                ax_loss.sharex(ax_acc)
                ax_acc.tick_params(axis="x", labelbottom=False)
            _split_lines(ax_acc, g, "acc", 100, one_seed)
            _split_lines(ax_loss, g, "loss", 1, one_seed)
            ax_acc.set_title(title)
            ax_acc.set_ylabel("accuracy (%)" if i % ncols == 0 else "")
            ax_loss.set_ylabel("loss (nats)" if i % ncols == 0 else "")
            ax_acc.set_xlabel("")
            lowest = i + ncols >= n
            ax_loss.set_xlabel("epoch" if lowest or not same else "")
            if lowest:  # the lowest panel in its column shows its epochs
                ax_loss.tick_params(axis="x", labelbottom=True)
            # Shared ranges per metric, fitted to the medians and bands, so panels compare at a glance.
            ax_acc.set_ylim(*acc_lim)
            ax_loss.set_ylim(*loss_lim)
            epoch_axis(ax_loss, g["epoch"], nbins=4)
        handles = [
            mpl.lines.Line2D([], [], color=TRAIN_COLOR, lw=2, label="train (mean over the epoch's steps)"),
            mpl.lines.Line2D([], [], color=TEST_COLOR, lw=2, label="test (after the epoch)"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=2)
        fig.suptitle(f"Train vs test: {_over_seeds(summ)}")
    return fig


# ------------------------------------------------------------------------------ dead units


def dead_units(curves: pd.DataFrame, summ: pd.DataFrame) -> Figure:
    """Dead units (% of the layer's units that output zero on every test image) against
    epoch, one column per hidden layer and one row per value of any other varying config
    axis: per batch size the median over the seeds that neither failed nor are outliers (a
    point per epoch), with a quartile band; each failed seed as its own dashed line ending in a
    red cross, each outlier as a dotted line ending in a red ring.

    Raises ``ValueError`` when the frame has no ``dead_*`` columns (records made before the
    training loop stored them)."""
    layers = dead_columns(curves)
    if not layers:
        raise ValueError(
            "the results frame has no dead-unit columns (dead_1, dead_2, ...); they are recorded "
            "by train() since dead units were added: rerun the sweep to draw this figure"
        )
    curves = _curves(curves)
    panels = facets(curves)
    colors = batch_colors(curves["batch_size"])
    same = _same_epochs(panels)  # else each row (one value of the other axes) has its own epochs
    with figure(1.0 + 5.2 * len(layers), 1.3 + 3.9 * len(panels)) as fig:
        axes = fig.subplots(
            len(panels), len(layers), squeeze=False, sharex=True if same else "row", sharey=True
        )
        for row, (title, g) in enumerate(panels):
            for col, layer in enumerate(layers):
                ax = axes[row, col]
                _dead_panel(ax, g, layer, colors, _one_seed(summ))
                ax.set_title(", ".join(p for p in (f"hidden layer {layer[5:]}", title) if p))
                ax.set_ylabel("dead units (% of the layer)" if col == 0 else "")
                ax.set_xlabel("epoch" if row == len(panels) - 1 or not same else "")
                epoch_axis(ax, g["epoch"])
        axes[0, 0].set_ylim(bottom=0)
        handles = [mpl.lines.Line2D([], [], color=colors[b], lw=2, label=str(b)) for b in sorted(colors)]
        for flag, ls, marker, label in (
            ("failed", "--", "X", FAILED_LABEL),
            ("outlier", ":", "o", OUTLIER_LABEL),
        ):
            if curves[flag].any():
                mfc = ERROR_RED if flag == "failed" else "none"
                handles.append(
                    mpl.lines.Line2D(
                        [],
                        [],
                        color="0.3",
                        ls=ls,
                        marker=marker,
                        mfc=mfc,
                        mec=ERROR_RED,
                        label=f"{label}, one line each",
                    )
                )
        fig.legend(handles=handles, title="batch size", loc="outside right center")
        if _one_seed(summ):
            fig.suptitle("Dead ReLU units by epoch (1 seed)")
        else:
            fig.suptitle(
                f"Dead ReLU units by epoch: median of {_n_seeds(summ)} seeds, failed ones and outliers "
                "drawn apart (band: quartiles)"
            )
    return fig


def _dead_panel(ax, g: pd.DataFrame, layer: str, colors: dict, one_seed: bool) -> None:
    g = g.assign(dead=100 * g[layer])
    plain = g[~g["failed"] & ~g["outlier"]]
    if len(plain):
        _median_lines(ax, plain, "dead", "batch_size", colors, one_seed, linewidth=1.8, legend=False)
    for flag, ls, end in (
        ("failed", "--", {"marker": "X"}),
        ("outlier", ":", {"marker": "o", "mfc": "none"}),
    ):
        for _, r in g[g[flag]].groupby(replica_columns(g), dropna=False):
            r = r.sort_values("epoch")
            ax.plot(
                r["epoch"], r["dead"], ls=ls, lw=1.2, color=colors[int(r["batch_size"].iloc[0])], gid=flag
            )
            last = r.iloc[-1:]
            ax.plot(last["epoch"], last["dead"], ls="", ms=7, color=ERROR_RED, mec=ERROR_RED, gid=flag, **end)
