"""The study's figures, drawn from the frames of ``registry.StudyFrames``; nothing here computes
a statistic. Medians with quartile bands or 95% bootstrap CIs, failed seeds and outliers marked
apart; from one seed no band or box, and the title says '1 seed'. Each value of another varying
config axis gets its own panel (``style.facets``). Accuracies in %, losses in nats.
"""

from __future__ import annotations

import warnings
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from mlpmnist.analysis.columns import config_columns, dead_columns, replica_columns
from mlpmnist.analysis.stats import epoch_ends
from mlpmnist.figures import style

# Markers of failed seeds, outliers and the reference study's single seeds (gid: for tests).
FAILED_MARKER = dict(marker="X", s=70, color=style.ERROR_RED, edgecolor="white", linewidth=0.6, zorder=6)
OUTLIER_MARKER = dict(marker="o", s=44, facecolor="none", edgecolor=style.ERROR_RED, linewidth=1.4, zorder=6)
REFERENCE_MARKER = dict(
    marker="*", s=190, color=style.REFERENCE_COLOR, edgecolor="black", linewidth=0.6, zorder=7
)
QUARTILES = ("pi", 50)  # seaborn's percentile interval from the 25th to the 75th percentile
FAILED_LABEL = "failed seed (collapsed to chance)"
OUTLIER_LABEL = "outlier (finished far below its median)"
_MARKED = (("failed", FAILED_MARKER, FAILED_LABEL), ("outlier", OUTLIER_MARKER, OUTLIER_LABEL))
# In dead_units each failed seed and outlier is its own line (``ls``) ending in a red mark.
_APART: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("failed", "--", {"marker": "X", "mfc": style.ERROR_RED, "mec": style.ERROR_RED}, FAILED_LABEL),
    ("outlier", ":", {"marker": "o", "mfc": "none", "mec": style.ERROR_RED}, OUTLIER_LABEL),
)
SPLITS = {"train": style.TRAIN_COLOR, "test": style.TEST_COLOR}  # train_vs_test's colours


def _one_seed(summ: pd.DataFrame) -> bool:
    return bool(summ["n"].max() <= 1)


def _n_seeds(summ: pd.DataFrame) -> str:
    """Seeds per configuration: '10', or '5–10' when they differ."""
    lo, hi = int(summ["n"].min()), int(summ["n"].max())
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _over_seeds(summ: pd.DataFrame) -> str:
    """'median of 10 seeds (band: quartiles)', or '1 seed'."""
    return "1 seed" if _one_seed(summ) else f"median of {_n_seeds(summ)} seeds (band: quartiles)"


def _median_lines(ax, data: pd.DataFrame, y: str, hue: str, palette: dict, one_seed: bool, **kw) -> None:
    """Per ``hue`` value the median over seeds of ``y`` by epoch with its quartile band."""
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
    nrows, ncols = style.grid(n, ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def _handles(axes) -> list:
    """The legend handles of all ``axes``, one per label, in the order the panels first show them."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, h)
    return list(seen.values())


def _same_epochs(panels: list[tuple[str, pd.DataFrame]]) -> bool:
    return len({tuple(np.unique(g["epoch"])) for _, g in panels}) <= 1


def _spread(curves: pd.DataFrame, columns: tuple[str, ...], scale: float) -> pd.Series:
    """Every value the median lines and quartile bands of ``columns`` (times ``scale``) reach."""
    keys = [*config_columns(curves), "epoch"]
    parts = []
    for c in columns:
        g = curves[keys].assign(value=scale * curves[c]).groupby(keys, dropna=False)["value"]
        parts += [g.median(), g.quantile(0.25), g.quantile(0.75)]
    return pd.concat(parts)


def accuracy_vs_epoch(curves: pd.DataFrame, summ: pd.DataFrame, ncols: int = 3) -> Figure:
    """Test accuracy (%) by epoch: per batch size the median over seeds and its quartile band."""
    curves = _curves(curves).assign(acc=lambda d: 100 * d["test_acc"])
    panels = style.facets(curves)
    colors = style.batch_colors(curves["batch_size"])
    nrows, nc = style.grid(len(panels), ncols)
    with style.figure(1.6 + 5.0 * nc if nc > 1 else 9, 0.9 + (4.3 if nc > 1 else 5.0) * nrows) as fig:
        # Not sharex: a panel above an empty cell keeps its own epoch labels.
        axes = _panel_axes(fig, len(panels), ncols, sharey=True)
        for ax, (title, g) in zip(axes, panels, strict=True):
            _median_lines(ax, g, "acc", "batch_size", colors, _one_seed(summ), linewidth=1.8)
            ax.set(title=title, xlabel="epoch", ylabel="test accuracy (%)")
            style.epoch_axis(ax, g["epoch"])
        axes[0].set_ylim(*style.limits(_spread(curves, ("acc",), 1), top=100))
        # In numeric order, not as the panels meet them (one may have 16, 48 and 128, the next 32).
        handles = sorted(_handles(axes), key=lambda h: int(h.get_label()))
        for ax in axes:
            ax.get_legend().remove()
        fig.legend(handles=handles, title="batch size", loc="outside right center")
        fig.suptitle(f"Test accuracy by epoch: {_over_seeds(summ)}")
    return fig


SIDE = 0.37  # the median's CI sits this far right of the box, the reference value as far left
# Quartile boxes alone: every seed is drawn as a dot.
BOX_STYLE = dict(width=0.5, whis=0, showcaps=False, showfliers=False, linewidth=0.8, boxprops={"alpha": 0.3})
CI_STYLE = dict(fmt="D", color="black", ms=5, capsize=3, lw=1.3, zorder=5, label="median, 95% bootstrap CI")


def _marked_seeds(ax, marked: pd.DataFrame, pos: dict[int, int], ylim: tuple[float, float]) -> None:
    """Failed seeds as red crosses and outliers as red rings; those below the y range sit on its
    bottom edge, their values printed beside them."""
    placed = []
    for b, g in marked.groupby("batch_size"):
        g = g.sort_values("acc")
        # Fixed (not random) sideways offsets, so the figure is the same every time it is drawn.
        placed.append(g.assign(x=pos[int(b)] + (np.arange(len(g)) - (len(g) - 1) / 2) * 0.07))
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
                color=style.ERROR_RED,
            )
    at = pd.concat(placed)
    at["y"] = np.maximum(at["acc"], ylim[0] + 0.012 * (ylim[1] - ylim[0]))
    for flag, marker, label in _MARKED:
        if at[flag].any():
            ax.scatter(at.loc[at[flag], "x"], at.loc[at[flag], "y"], **marker, gid=flag, label=label)


def _references(ax, summ: pd.DataFrame, pos: dict[int, int]) -> None:
    """The reference study's single seeds (stars, left of the box) and headline (dashed line)."""
    ref = summ[summ["reference"].notna()]
    if len(ref):
        x = np.array([pos[int(b)] for b in ref["batch_size"]], dtype=float) - SIDE
        label = f"reference study, epoch {int(ref['final_epoch'].iloc[0])} (1 seed)"
        ax.scatter(x, 100 * ref["reference"], **REFERENCE_MARKER, gid="reference", label=label)
    headline = summ["reference_headline"].dropna()
    if len(headline):
        h = 100 * float(headline.iloc[0])
        label = f"reference study's headline {h:.2f}%"
        ax.axhline(
            h, color=style.REFERENCE_COLOR, ls="--", lw=1.2, zorder=1, label=label, gid="reference_headline"
        )


def _final_panel(ax, fin: pd.DataFrame, summ: pd.DataFrame, sizes: list[int], colors: dict, ylim) -> None:
    pos = {b: i for i, b in enumerate(sizes)}
    done = fin[~fin["diverged"]].assign(acc=lambda d: 100 * d["test_acc"])
    plain = done[~done["failed"] & ~done["outlier"]]
    box_kw = dict(x="batch_size", y="acc", order=sizes, hue="batch_size", hue_order=sizes, ax=ax)
    several = done.groupby("batch_size")["acc"].transform("size") > 1  # one value: no box
    if several.any():
        with warnings.catch_warnings():
            # seaborn 0.13 passes matplotlib 3.11's deprecated ``vert``; nothing to change here.
            warnings.filterwarnings("ignore", "vert: bool", mpl.MatplotlibDeprecationWarning)
            # The median is drawn with its CI beside the box.
            sns.boxplot(
                done[several], **box_kw, palette=colors, legend=False, medianprops={"alpha": 0}, **BOX_STYLE
            )
    if len(plain):
        sns.swarmplot(
            data=plain, **box_kw, palette=colors, legend=False, size=4, linewidth=0.4, edgecolor="white"
        )
    ci = summ[np.isfinite(summ["median_lo"])]
    if len(ci):
        med, lo, hi = (100 * ci[c].to_numpy() for c in ("median", "median_lo", "median_hi"))
        x = np.array([pos[int(b)] for b in ci["batch_size"]], dtype=float) + SIDE
        ax.errorbar(x, med, yerr=[med - lo, hi - med], **CI_STYLE)
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
    ax.set(xlim=(-0.6, len(sizes) - 0.4), ylim=ylim, xlabel="batch size (n: seeds)")


def final_accuracy_vs_batch(fin: pd.DataFrame, summ: pd.DataFrame) -> Figure:
    """Final test accuracy (%) by batch size: every seed a dot, quartile boxes, the median with its
    95% bootstrap CI (right of the box), failed seeds and outliers in red (below the y range: on
    its edge, value printed), the reference study's seeds as stars and its headline dashed. Panels
    two a row, one when a panel has more than four batch sizes."""
    if fin.empty:
        raise ValueError("the results frame is empty; run a sweep first")
    panels = style.facets(fin)
    sizes_of = [sorted(int(b) for b in g["batch_size"].unique()) for _, g in panels]
    most = max(len(sizes) for sizes in sizes_of)
    colors = style.batch_colors(fin["batch_size"])
    done = fin[~fin["diverged"]]
    plain = done[~done["failed"] & ~done["outlier"]]
    fit = 100 * (plain if len(plain) else done)["test_acc"]
    refs = 100 * pd.concat([summ["reference"], summ["reference_headline"]]).dropna()
    ylim = style.limits([*fit, *refs], top=100.0, pad=0.06)
    epochs = sorted(done["epoch"].unique())
    ep = f"epoch {int(epochs[0])}" if len(epochs) == 1 else "the last epoch"
    nrows, nc = style.grid(len(panels), 1 if most > 4 else 2)
    width = max(7.5, 1.2 + 0.95 * most)
    with style.figure(width * nc, 1.5 + 4.2 * nrows) as fig:
        axes = _panel_axes(fig, len(panels), nc, sharey=True)
        # The summary faceted alike: the same configurations, panel by panel.
        for ax, (title, g), (_, s), sizes in zip(axes, panels, style.facets(summ), sizes_of, strict=True):
            _final_panel(ax, g, s, sizes, colors, ylim)
            ax.set(title=title, ylabel=f"test accuracy after {ep} (%)")
        seed = mpl.lines.Line2D([], [], ls="", marker="o", ms=5, color="0.45", mec="white", label="seed")
        fig.legend(handles=[seed, *_handles(axes)], loc="outside lower center", ncols=2)
        what = "1 seed each" if _one_seed(summ) else "every seed (box: quartiles)"
        fig.suptitle(f"Final test accuracy by batch size: {what}")
    return fig


HEATMAP_STYLE = dict(annot=True, fmt=".1f", cmap="mako", linewidths=0.5, linecolor="white", cbar=False)


def heatmap_batch_epoch(per: pd.DataFrame, summ: pd.DataFrame, max_epochs: int = 16) -> Figure:
    """Median test accuracy (%) per batch size (rows) and epoch (columns), annotated, on one colour
    scale from the cells' 20th percentile (the best cells' small differences get most colours;
    lower ones share the darkest). Over ``max_epochs`` epochs, evenly spaced ones are shown."""
    tables = [
        (title, 100 * g.pivot(index="batch_size", columns="epoch", values="test_acc_median"))
        for title, g in style.facets(per.reset_index())
    ]
    epochs = sorted({c for _, t in tables for c in t.columns})
    subset = len(epochs) > max_epochs
    if subset:
        keep = np.unique(np.linspace(0, len(epochs) - 1, max_epochs).round().astype(int))
        shown = [epochs[i] for i in keep]
        tables = [(title, t[[c for c in shown if c in t.columns]]) for title, t in tables]
    cells = np.concatenate([t.to_numpy().ravel() for _, t in tables])
    vmin, vmax = float(np.nanquantile(cells, 0.2)), float(np.nanmax(cells))
    vmin = min(vmin, vmax - 0.5)  # one cell, or all equal: still a colour scale
    n_rows = max(len(t) for _, t in tables)
    n_cols = max(t.shape[1] for _, t in tables)
    # Each panel as wide as its epochs need: one of 1 epoch beside one of 15 is not stretched.
    widths = [max(2.5, 5.0 * t.shape[1] / n_cols, 1.3 + 0.55 * t.shape[1]) for _, t in tables]
    xlabel = "epoch (evenly spaced subset)" if subset else "epoch"
    with style.figure(sum(widths) + 1.2, max(3.2, 1.5 + 0.42 * n_rows)) as fig:
        axes = fig.subplots(1, len(tables), squeeze=False, width_ratios=widths).ravel()
        for ax, (title, t) in zip(axes, tables, strict=True):
            sns.heatmap(t, ax=ax, vmin=vmin, vmax=vmax, annot_kws={"fontsize": 9}, **HEATMAP_STYLE)
            ax.grid(False)
            ax.set(xlabel=xlabel, ylabel="batch size", title=title)
            ax.tick_params(axis="y", rotation=0)
        one = _one_seed(summ)
        what = "test accuracy (%)" if one else "median test accuracy (%)"
        # The triangle at the bottom of the bar says: lower cells share the darkest colour.
        extend = "min" if np.nanmin(cells) < vmin else "neither"
        fig.colorbar(axes[0].collections[0], ax=list(axes), shrink=0.9, extend=extend, label=what)
        seeds = f"{_n_seeds(summ)} seed{'' if one else 's'}"
        fig.suptitle(f"{what.capitalize()} by batch size and epoch ({seeds})")
    return fig


def _split_lines(ax, g: pd.DataFrame, metric: str, scale: float, one_seed: bool) -> None:
    long = g[["epoch"]].assign(train=scale * g[f"train_{metric}"], test=scale * g[f"test_{metric}"])
    long = long.melt("epoch", var_name="split")
    _median_lines(
        ax, long, "value", "split", SPLITS, one_seed, hue_order=list(SPLITS), linewidth=1.6, legend=False
    )


def train_vs_test(curves: pd.DataFrame, summ: pd.DataFrame, ncols: int = 4) -> Figure:
    """Accuracy over loss by epoch, train (mean over the epoch's steps) and test, each the median
    with its quartile band: one column per batch size (and value of other axes), ``ncols`` a row."""
    curves = _curves(curves)
    one_seed = _one_seed(summ)
    panels = [
        (", ".join(p for p in (f"batch {int(b)}", title) if p), g)
        for title, fg in style.facets(curves)
        for b, g in fg.groupby("batch_size")
    ]
    n = len(panels)
    nblocks, ncols = style.grid(n, ncols)
    same = _same_epochs(panels)
    acc_lim = style.limits(_spread(curves, ("train_acc", "test_acc"), 100), top=100)
    loss_lim = style.limits(_spread(curves, ("train_loss", "test_loss"), 1))
    # At least as wide as the title and the legend below, however few panels.
    with style.figure(max(2.7 * ncols + 0.6, 7.0), 4.4 * nblocks + 0.7) as fig:
        axes = fig.subplots(2 * nblocks, ncols, sharex=same, squeeze=False)
        pairs = axes.reshape(nblocks, 2, ncols).transpose(0, 2, 1).reshape(-1, 2)  # (accuracy, loss) axes
        for ax in pairs[n:].ravel():
            ax.set_visible(False)
        for i, ((title, g), (ax_acc, ax_loss)) in enumerate(zip(panels, pairs[:n], strict=True)):
            if not same:  # its own epochs: the pair shares them, and the loss panel shows them
                ax_loss.sharex(ax_acc)
                ax_acc.tick_params(axis="x", labelbottom=False)
            _split_lines(ax_acc, g, "acc", 100, one_seed)
            _split_lines(ax_loss, g, "loss", 1, one_seed)
            # Shared ranges per metric, fitted to the medians and bands, so panels compare at a glance.
            ax_acc.set(title=title, xlabel="", ylabel="accuracy (%)" if i % ncols == 0 else "", ylim=acc_lim)
            lowest = i + ncols >= n
            ax_loss.set(
                xlabel="epoch" if lowest or not same else "",
                ylabel="loss (nats)" if i % ncols == 0 else "",
                ylim=loss_lim,
            )
            if lowest:  # the lowest panel in its column shows its epochs
                ax_loss.tick_params(axis="x", labelbottom=True)
            style.epoch_axis(ax_loss, g["epoch"], nbins=4)
        what = {"train": "train (mean over the epoch's steps)", "test": "test (after the epoch)"}
        handles = [mpl.lines.Line2D([], [], color=c, lw=2, label=what[s]) for s, c in SPLITS.items()]
        fig.legend(handles=handles, loc="outside lower center", ncols=2)
        fig.suptitle(f"Train vs test: {_over_seeds(summ)}")
    return fig


def dead_units(curves: pd.DataFrame, summ: pd.DataFrame) -> Figure:
    """Dead units (% of the layer's units that output zero on every test image) by epoch, one column
    per hidden layer: per batch size the median of the plain seeds with its quartile band, each
    failed seed and outlier its own line. ``ValueError`` when the frame has no ``dead_*`` columns."""
    layers = dead_columns(curves)
    if not layers:
        raise ValueError(
            "the results frame has no dead-unit columns (dead_1, dead_2, ...); they are recorded "
            "by train() since dead units were added: rerun the sweep to draw this figure"
        )
    curves = _curves(curves)
    panels = style.facets(curves)
    colors = style.batch_colors(curves["batch_size"])
    same = _same_epochs(panels)  # else each row (one value of the other axes) has its own epochs
    with style.figure(1.0 + 5.2 * len(layers), 1.3 + 3.9 * len(panels)) as fig:
        axes = fig.subplots(len(panels), len(layers), squeeze=False, sharex=same or "row", sharey=True)
        for row, (title, g) in enumerate(panels):
            for col, layer in enumerate(layers):
                ax = axes[row, col]
                _dead_panel(ax, g, layer, colors, _one_seed(summ))
                ax.set_title(", ".join(p for p in (f"hidden layer {layer[5:]}", title) if p))
                ax.set_ylabel("dead units (% of the layer)" if col == 0 else "")
                ax.set_xlabel("epoch" if row == len(panels) - 1 or not same else "")
                style.epoch_axis(ax, g["epoch"])
        axes[0, 0].set_ylim(bottom=0)
        handles = [mpl.lines.Line2D([], [], color=colors[b], lw=2, label=str(b)) for b in sorted(colors)]
        for flag, ls, end, label in _APART:
            if curves[flag].any():
                handles.append(
                    mpl.lines.Line2D([], [], color="0.3", ls=ls, label=f"{label}, one line each", **end)
                )
        fig.legend(handles=handles, title="batch size", loc="outside right center")
        apart = "failed ones and outliers drawn apart (band: quartiles)"
        what = " (1 seed)" if _one_seed(summ) else f": median of {_n_seeds(summ)} seeds, {apart}"
        fig.suptitle(f"Dead ReLU units by epoch{what}")
    return fig


def _dead_panel(ax, g: pd.DataFrame, layer: str, colors: dict, one_seed: bool) -> None:
    g = g.assign(dead=100 * g[layer])
    plain = g[~g["failed"] & ~g["outlier"]]
    if len(plain):
        _median_lines(ax, plain, "dead", "batch_size", colors, one_seed, linewidth=1.8, legend=False)
    for flag, ls, end, _ in _APART:
        for _, r in g[g[flag]].groupby(replica_columns(g), dropna=False):
            r = r.sort_values("epoch")
            ax.plot(
                r["epoch"], r["dead"], ls=ls, lw=1.2, color=colors[int(r["batch_size"].iloc[0])], gid=flag
            )
            last = r.iloc[-1:]
            ax.plot(last["epoch"], last["dead"], ls="", ms=7, color=style.ERROR_RED, gid=flag, **end)
