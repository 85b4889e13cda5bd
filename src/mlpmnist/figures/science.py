"""Figures of the batch-size science (``mlpmnist.science``): frames in, a ``Figure`` out, drawn
in ``style``'s one style. Accuracies are drawn in percent, learning rates as plain SGD step
sizes on log axes.

- ``plot_lr_search``: validation accuracy vs lr; the tuned lr and the ceiling vs batch size.
- ``plot_sharpness``: lambda_max during training, and the control's ceiling.
- ``plot_steps_to_target``: steps to target vs batch size with intervals, the fit and anchors.
- ``plot_noise_scale``: B_simple during training, per seed.
- ``plot_tuned``: the tuned recipe against the reference recipe.
- ``plot_headlines``: every headline number's interval with the second run's value beside it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from mlpmnist.figures.style import ERROR_RED, REFERENCE_COLOR, batch_colors, figure

#: McCandlish et al. (2018): the gradient noise scale they report for MNIST, in examples.
PAPER_MNIST_NOISE_SCALE = 900


def _plain_log(ax: Axes, axis: str = "y") -> None:
    """Log-axis tick labels as plain numbers (0.1, 20) rather than powers of ten."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _batch_axis(ax: Axes, sizes: list[float]) -> None:
    """A log2 x axis with the batch sizes themselves as ticks."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{int(b)}" for b in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_lr_search(
    summary: pd.DataFrame,
    ceiling: pd.DataFrame,
    scaling: dict[str, float] | None = None,
    two_over_lambda_init: float | None = None,
) -> Figure:
    """Left: validation accuracy (mean over seeds) against every lr tried, per batch size
    (``lr_search_summary``; crosses where a seed diverged or collapsed). Right: per batch size
    the tuned lr with its tried neighbours as a bar (it lies within them), the band between the
    largest lr without a failure and the collapse lr (the ceiling), the fitted lr ~ B^slope, the
    linear and square-root rules through the smallest batch size, and 2 / lambda_max at
    initialisation (``ceiling_table``'s frame). Returns the figure."""
    with figure(15, 5.6) as fig:
        ax, ax_lr = fig.subplots(1, 2)
        sizes = sorted(int(b) for b in summary["batch_size"].unique())
        colors = batch_colors(sizes)
        for b in sizes:
            g = summary[summary["batch_size"] == b].sort_values("lr")
            ok = g[g["n_failed"] == 0] if "n_failed" in g else g[g["n_diverged"] == 0]
            ax.plot(ok["lr"], 100 * ok["val_acc_mean"], "o-", ms=3, color=colors[b], label=f"B={b}")
            bad = g.drop(ok.index)
            ax.plot(bad["lr"], 100 * bad["val_acc_mean"].fillna(10.0), "x", color=colors[b], ms=6)
        ax.set_xscale("log")
        _plain_log(ax, "x")
        ax.set_ylim(max(5.0, 100 * summary["val_acc_mean"].min() - 2), 100)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("validation accuracy (%), mean over seeds")
        ax.set_title("Every lr tried (x: a seed collapsed or diverged)")
        ax.legend(fontsize=8, ncols=2)

        t = ceiling.dropna(subset=["lr"]).sort_values("batch_size")
        b = t["batch_size"].to_numpy(float)
        lo = (t["lr"] - t["lr_low"]).fillna(0).clip(lower=0)
        hi = (t["lr_high"] - t["lr"]).fillna(0).clip(lower=0)
        ax_lr.errorbar(
            b, t["lr"], yerr=[lo, hi], fmt="o", capsize=3, label="tuned lr (bar: its tried neighbours)"
        )
        has = t.dropna(subset=["max_ok_lr"])
        ax_lr.fill_between(
            has["batch_size"],
            has["max_ok_lr"],
            has["collapse_lr"].fillna(has["max_ok_lr"]),
            color=ERROR_RED,
            alpha=0.15,
            label="ceiling: last lr with no failure .. collapse lr",
        )
        ax_lr.plot(has["batch_size"], has["collapse_lr"], "v", color=ERROR_RED, ms=5)
        lr0 = float(t["lr"].iloc[0]) if len(t) else 0.1
        ax_lr.plot(b, lr0 * b / b[0], "--", color="grey", label="linear rule lr ∝ B")
        ax_lr.plot(b, lr0 * np.sqrt(b / b[0]), ":", color="k", label="square-root rule lr ∝ √B")
        if scaling is not None:
            label = f"fit: slope {scaling['slope']:.2f}"
            ax_lr.plot(b, scaling["c"] * b ** scaling["slope"], "-", color="C3", label=label)
        if two_over_lambda_init is not None and math.isfinite(two_over_lambda_init):
            ax_lr.axhline(two_over_lambda_init, color="C4", ls="-.", label="2 / λ_max at initialisation")
        _batch_axis(ax_lr, list(b))
        ax_lr.set_yscale("log")
        ax_lr.set_ylim(max(1e-3, float(t["lr"].min()) / 4), 4.0)
        _plain_log(ax_lr)
        ax_lr.set_xlabel("batch size")
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_title("Tuned lr and the ceiling vs batch size")
        ax_lr.legend(fontsize=8)
    return fig


def plot_sharpness(sharpness: pd.DataFrame, control: pd.DataFrame | None = None) -> Figure:
    """Left: lambda_max (median over seeds, bars min-max) against the epoch per batch size, at
    the sharpness run's lr, with 2 / lr (where plain GD stops being stable). Right, given the
    control's ``control_table``: the largest lr without a failure with scaled and with the
    control's inputs, per batch size. Returns the figure."""
    with figure(14 if control is not None else 8, 5.2) as fig:
        axes = fig.subplots(1, 2 if control is not None else 1, squeeze=False)[0]
        ax = axes[0]
        sizes = sorted(int(b) for b in sharpness["batch_size"].unique())
        colors = batch_colors(sizes)
        for (b, lr), g in sharpness.groupby(["batch_size", "lr"]):
            g = g.sort_values("epoch")
            err = [g["lambda_max"] - g["lambda_min_seed"], g["lambda_max_seed"] - g["lambda_max"]]
            ax.errorbar(g["epoch"], g["lambda_max"], yerr=err, fmt="o-", capsize=3, color=colors[int(b)],
                        label=f"B={int(b)}, lr {lr:g}")  # fmt: skip
        for lr in sorted(sharpness["lr"].unique()):
            ax.axhline(2.0 / lr, color="grey", ls="--", label=f"2 / lr = {2.0 / lr:g} (lr {lr:g})")
        ax.set_yscale("log")
        ax.set_xlabel("epoch (0 = initialisation)")
        ax.set_ylabel("λ_max of the training loss")
        ax.set_title("Sharpness during training")
        ax.set_xticks(sorted(sharpness["epoch"].unique()))
        ax.legend(fontsize=8)
        _plain_log(ax)
        if control is not None:
            ax_c = axes[1]
            x = np.arange(len(control))
            for col, name, color, m in (
                ("scaled", "pixels in [-1, 1] (the reference)", "C0", "o"),
                ("control", "centred pixels (the control)", REFERENCE_COLOR, "s"),
            ):
                ax_c.plot(
                    x, control[f"max_ok_lr_{col}"], m, color=color, ms=8, label=f"{name}: no seed failed"
                )
                ax_c.plot(x, control[f"collapse_lr_{col}"], "v", color=color, ms=6, mfc="none",
                          label=f"{name}: a seed collapsed")  # fmt: skip
            ax_c.set_xticks(x, [f"B={int(b)}" for b in control["batch_size"]])
            ax_c.set_xlim(-0.6, len(control) - 0.4)
            ax_c.set_yscale("log")
            _plain_log(ax_c)
            ax_c.set_ylabel("learning rate")
            ax_c.set_title("The control: does centring the inputs move the ceiling?")
            ax_c.legend(fontsize=8)
    return fig


def plot_steps_to_target(
    table: pd.DataFrame,
    scaling: Any,
    target: float,
    second: pd.DataFrame | None = None,
) -> Figure:
    """Steps to ``target`` vs batch size (log-log): per batch size the median over the first
    seed set with its 95% interval over seeds (``table``: batch_size, steps, low, high), the
    second seed set's median (``second``: batch_size, steps) beside it, the perfect-scaling line
    through the smallest batch size and, given a fit, S(B) = s_min (1 + b_crit / B) with the ends
    of perfect scaling and of diminishing returns. Returns the figure."""
    with figure(8.5, 5.6) as fig:
        ax = fig.add_subplot()
        t = table.dropna(subset=["steps"]).sort_values("batch_size")
        b, s = t["batch_size"].to_numpy(float), t["steps"].to_numpy(float)
        err = [
            np.clip(s - t["low"].to_numpy(float), 0, None),
            np.clip(t["high"].to_numpy(float) - s, 0, None),
        ]
        ax.errorbar(b, s, yerr=err, fmt="o", capsize=3, label="median steps, 95% interval over seeds")
        if second is not None and len(second):
            u = second.dropna(subset=["steps"])
            ax.plot(u["batch_size"] * 1.06, u["steps"], "D", mfc="none", color="C1", label="second seed set")
        if len(b):
            ax.plot(b, s[0] * b[0] / b, "--", color="grey", label="perfect scaling (steps ∝ 1/B)")
        if scaling is not None and len(b):
            bb = np.geomspace(b.min(), b.max(), 200)
            label = f"fit S_min(1 + B_crit/B): B_crit ≈ {scaling.b_crit:.0f}"
            ax.plot(bb, scaling.s_min * (1 + scaling.b_crit / bb), "-", color="C3", label=label)
            ax.axhline(scaling.s_min, color="C3", lw=0.8, ls=":")
            for at, color, what in (
                (scaling.perfect_end, "C2", "perfect scaling ends"),
                (scaling.diminishing_end, "C1", "diminishing returns end"),
            ):
                ax.axvline(at, color=color, ls="-.", label=f"{what} ≈ {at:.0f}")
        if len(b):
            _batch_axis(ax, list(b))
        ax.set_yscale("log")
        _plain_log(ax)
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"SGD steps to {100 * target:g}% validation accuracy")
        ax.set_title("Steps to target at each batch size's fastest lr")
        ax.legend(fontsize=8)
    return fig


def plot_noise_scale(noise: pd.DataFrame, b_crit: float | None = None) -> Figure:
    """B_simple (left) and its parts tr(Sigma) and |G|^2 (right) against the epoch of training
    (``noise_scale_during_training``'s frame, one faint line per seed and the median over seeds),
    with the critical batch size from steps to target and McCandlish et al.'s MNIST value as
    horizontal lines. Returns the figure."""
    with figure(13, 5) as fig:
        ax, ax_parts = fig.subplots(1, 2)
        ok = noise[noise["grad_sq"] > 0]
        for _, g in ok.groupby("seed"):
            ax.plot(g["epoch"], g["b_simple"], "-", color="C0", alpha=0.25, lw=1)
        med = ok.groupby("epoch")["b_simple"].median()
        ax.plot(med.index, med, "o-", color="C0", label="B_simple = tr(Σ)/|G|², median over seeds")
        if b_crit is not None and math.isfinite(b_crit):
            ax.axhline(b_crit, color="C3", ls="--", label=f"B_crit from steps to target ≈ {b_crit:.0f}")
        label = f"McCandlish et al.: MNIST ≈ {PAPER_MNIST_NOISE_SCALE}"
        ax.axhline(PAPER_MNIST_NOISE_SCALE, color="grey", ls=":", label=label)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("examples")
        ax.set_title("Gradient noise scale during training")
        ax.legend(fontsize=8)
        for col, marker, name in (("trace", "o", "tr(Σ)"), ("grad_sq", "s", "|G|²")):
            m = noise[noise[col] > 0].groupby("epoch")[col].median()
            ax_parts.plot(m.index, m, f"{marker}-", label=f"{name}, median over seeds")
        ax_parts.set_yscale("log")
        ax_parts.set_xlabel("epoch")
        ax_parts.set_title("The two parts of the ratio")
        ax_parts.legend(fontsize=8)
    return fig


def plot_tuned(
    tuned: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    label: str = "tuned recipe",
    reference_label: str = "reference: plain SGD, lr 0.1, batch 90",
) -> Figure:
    """Test (dotted: validation) accuracy per epoch, mean ± std over seeds, of the tuned recipe's
    history and of a reference history when given; final test accuracy per seed on the right.
    Returns the figure."""
    runs = [(h, name) for h, name in ((tuned, label), (reference, reference_label)) if h is not None]
    with figure(13, 5) as fig:
        ax, ax_final = fig.subplots(1, 2, width_ratios=[3, 1])
        finals = []
        for k, (h, name) in enumerate(runs):
            ok, c = h[~h["diverged"].astype(bool)], f"C{k}"
            g = ok.groupby("epoch")["test_acc"]
            m, sd = 100 * g.mean(), 100 * g.std().fillna(0)
            ax.plot(m.index, m, "-", color=c, label=f"{name}: test")
            ax.fill_between(m.index, m - sd, m + sd, color=c, alpha=0.2)
            if "val_acc" in ok.columns:
                val = 100 * ok.groupby("epoch")["val_acc"].mean()
                ax.plot(m.index, val, ":", color=c, label=f"{name}: validation")
            f = 100 * ok.sort_values("step").groupby(["seed", "lr"]).tail(1)["test_acc"]
            finals.append(f)
            ax_final.plot(np.full(len(f), k), f, "o", color=c, alpha=0.6)
            sd_f = f.std() if len(f) > 1 else 0.0
            ax_final.errorbar([k + 0.25], [f.mean()], yerr=[sd_f], fmt="s", color=c, capsize=4)
        ax.axhline(98.0, color="grey", ls="--", lw=0.8, label="98%")
        ax.set_ylim(min(95.0, min(float(f.mean()) for f in finals) - 1.0), 99.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%), mean ± std over seeds")
        ax.legend(fontsize=8, loc="lower right")
        ax_final.axhline(98.0, color="grey", ls="--", lw=0.8)
        ax_final.set_xlim(-0.5, len(runs) - 0.2)
        ax_final.set_xticks(range(len(runs)), ["tuned", "reference"][: len(runs)])
        ax_final.set_ylabel("final test accuracy (%): seeds, mean ± std")
    return fig


def plot_headlines(table: pd.DataFrame) -> Figure:
    """One small panel per headline number (``intervals.two_runs``'s rows): the first seed
    set's estimate with its 95% interval, and the second seed set's value (a diamond, filled
    when inside the interval). Returns the figure."""
    rows = table.dropna(subset=["estimate"]).reset_index(drop=True)
    n = max(1, len(rows))
    with figure(9, 0.55 * n + 1.2) as fig:
        axes = fig.subplots(n, 1, squeeze=False)[:, 0]
        for ax, r in zip(axes, rows.to_dict("records"), strict=False):
            lo, hi = r["low"], r["high"]
            if math.isfinite(lo) and math.isfinite(hi):
                ax.plot([lo, hi], [0, 0], "-", color="C0", lw=3, solid_capstyle="butt")
            ax.plot([r["estimate"]], [0], "o", color="C0")
            if math.isfinite(r.get("second", math.nan)):
                ax.plot(
                    [r["second"]], [0], "D", color="C1", mfc="C1" if r["inside"] is True else "none", ms=7
                )
            ax.set_yticks([0], [f"{r['quantity']} ({r['unit']})"])
            ax.set_ylim(-1, 1)
            ax.grid(axis="y", visible=False)
            ax.tick_params(axis="x", labelsize=8)
        axes[0].set_title("First seed set: estimate and 95% interval (o); second seed set (◆, filled inside)")
    return fig
