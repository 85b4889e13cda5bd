"""Figures of the batch-size science (``mlpmnist.science``): frames or dataclasses in, a
``Figure`` out, drawn in ``style``'s one style. Accuracies are drawn in percent.

- ``plot_lr_tuning``: validation accuracy vs lr, tuned lr vs batch size, tuned vs fixed lr.
- ``plot_steps_to_target``: steps to target vs batch size with the S(B) fit.
- ``plot_noise_scale``: B_simple during training.
- ``plot_tuned``: the tuned recipe against the reference recipe.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..science.common import REFERENCE_LR, final_rows
from ..science.steps import Scaling
from .style import batch_colors, figure

#: McCandlish et al. (2018): the gradient noise scale they report for MNIST, in examples.
PAPER_MNIST_NOISE_SCALE = 900


def plot_lr_tuning(
    summary: pd.DataFrame,
    best: pd.DataFrame,
    scaling: dict[str, float] | None = None,
    reference_lr: float = REFERENCE_LR,
) -> Figure:
    """Three panels: validation accuracy vs lr per batch size (``lr_summary``'s frame); tuned lr
    vs batch size on log-log axes (``best_lr``'s) with the linear and square-root rules
    (anchored at the smallest batch size) and the ``lr_scaling`` fit; test accuracy at the
    tuned lr vs at ``reference_lr``. Returns the figure."""
    with figure(17, 5.2) as fig:
        ax, ax_lr, ax_acc = fig.subplots(1, 3)
        sizes = sorted(int(b) for b in summary["batch_size"].unique())
        colors = batch_colors(sizes)
        for b in sizes:
            g = summary[(summary["batch_size"] == b) & (summary["n_diverged"] == 0)].sort_values("lr")
            ax.plot(g["lr"], 100 * g["val_acc_mean"], "o-", ms=3, color=colors[b], label=f"B={b}")
        ax.set_xscale("log")
        ax.set_ylim(max(10.0, 100 * summary["val_acc_mean"].min() - 1), 100)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("validation accuracy (%), mean over seeds")
        ax.set_title("Validation accuracy vs lr (diverged lrs left out)")
        ax.legend(fontsize=7, ncols=2)

        b = best["batch_size"].to_numpy(float)
        ax_lr.plot(b, best["lr"], "o", label="best grid lr")
        ax_lr.plot(b, best["lr_interp"], "x", label="interpolated best lr")
        b0, lr0 = b[0], float(best["lr_interp"].iloc[0])
        ax_lr.plot(b, lr0 * b / b0, "--", color="grey", label="linear rule lr ∝ B")
        ax_lr.plot(b, lr0 * np.sqrt(b / b0), ":", color="k", label="square-root rule lr ∝ √B")
        if scaling is not None:
            fit = scaling["c"] * b ** scaling["slope"]
            ax_lr.plot(b, fit, "-", color="C3", label=f"fit: slope {scaling['slope']:.2f}")
        ax_lr.set_xscale("log", base=2)
        ax_lr.set_yscale("log")
        ax_lr.set_ylim(min(best["lr"].min(), lr0) / 3, max(best["lr"].max() * 3, 1.0))
        ax_lr.set_xlabel("batch size")
        ax_lr.set_ylabel("tuned learning rate")
        ax_lr.set_title("Tuned lr vs batch size")
        ax_lr.legend(fontsize=8)

        tuned = (best["test_acc_mean"], best["test_acc_std"], "o-", "tuned lr (chosen on validation)")
        ref = (
            best["ref_test_acc_mean"],
            best["ref_test_acc_std"],
            "s--",
            f"fixed lr = {reference_lr:g} (reference)",
        )
        for mean, std, fmt, label in (tuned, ref):
            if mean.notna().any():
                ax_acc.errorbar(b, 100 * mean, yerr=100 * std, fmt=fmt, capsize=3, label=label)
        ax_acc.set_xscale("log", base=2)
        ax_acc.set_xlabel("batch size")
        ax_acc.set_ylabel("test accuracy (%), mean ± std over seeds")
        ax_acc.set_title("Same epoch budget: tuned vs fixed lr")
        ax_acc.legend(fontsize=8)
    return fig


def plot_steps_to_target(table: pd.DataFrame, scaling: Scaling | None, target: float) -> Figure:
    """Steps to ``target`` vs batch size (log-log, median and min-max over seeds; ``steps_table``'s
    frame) with the perfect-scaling line through the smallest batch size and, given a fit, the
    fitted S(B) = s_min (1 + b_crit / B) and the ends of perfect scaling and of diminishing
    returns. Returns the figure."""
    with figure(8, 5.5) as fig:
        ax = fig.add_subplot()
        t = table.dropna(subset=["steps"]).sort_values("batch_size")
        b, s = t["batch_size"].to_numpy(float), t["steps"].to_numpy(float)
        spread = [s - t["steps_min"], t["steps_max"] - s]
        ax.errorbar(b, s, yerr=spread, fmt="o", capsize=3, label="measured (median, min-max over seeds)")
        ax.plot(b, s[0] * b[0] / b, "--", color="grey", label="perfect scaling (steps ∝ 1/B)")
        if scaling is not None:
            bb = np.geomspace(b.min(), b.max(), 200)
            label = f"fit S_min(1 + B_crit/B): B_crit ≈ {scaling.b_crit:.0f}"
            ax.plot(bb, scaling.s_min * (1 + scaling.b_crit / bb), "-", color="C3", label=label)
            ax.axhline(scaling.s_min, color="C3", lw=0.8, ls=":")
            for at, color, what in (
                (scaling.perfect_end, "C2", "perfect scaling ends"),
                (scaling.diminishing_end, "C1", "diminishing returns end"),
            ):
                ax.axvline(at, color=color, ls="-.", label=f"{what} ≈ {at:.0f}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"SGD steps to {100 * target:g}% validation accuracy")
        ax.set_title("Steps to target at each batch size's best lr")
        ax.legend(fontsize=8)
    return fig


def plot_noise_scale(noise: pd.DataFrame, b_crit: float | None = None) -> Figure:
    """B_simple (left; labels: validation accuracy) and its parts tr(Sigma) and |G|^2 (right)
    against the epoch of training (``noise_scale_during_training``'s frame), with the critical
    batch size from steps to target as a horizontal line. Returns the figure."""
    with figure(13, 5) as fig:
        ax, ax_parts = fig.subplots(1, 2)
        ok = noise[noise["grad_sq"] > 0]
        ax.plot(ok["epoch"], ok["b_simple"], "o-", label="B_simple = tr(Σ)/|G|²")
        if b_crit is not None and math.isfinite(b_crit):
            label = f"critical batch from steps to target ≈ {b_crit:.0f}"
            ax.axhline(b_crit, color="C3", ls="--", label=label)
        label = f"McCandlish et al.: MNIST ≈ {PAPER_MNIST_NOISE_SCALE}"
        ax.axhline(PAPER_MNIST_NOISE_SCALE, color="grey", ls=":", label=label)
        for e, bs, acc in zip(ok["epoch"], ok["b_simple"], ok["val_acc"], strict=True):
            if math.isfinite(acc):
                ax.annotate(
                    f"{100 * acc:.1f}%", (e, bs), fontsize=8, textcoords="offset points", xytext=(3, 5)
                )
        ax.set_yscale("log")
        ax.set_xlabel("epoch (labels: validation accuracy)")
        ax.set_ylabel("examples")
        ax.set_title("Gradient noise scale during training")
        ax.legend(fontsize=8)
        ax_parts.plot(noise["epoch"], noise["trace"], "o-", label="tr(Σ)")
        ax_parts.plot(ok["epoch"], ok["grad_sq"], "s-", label="|G|²")
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
            f = 100 * final_rows(ok)["test_acc"]
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
