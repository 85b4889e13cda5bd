"""Figures of the batch-size science (``mlpmnist.science``): each draws one of the science
notebook's sections from its ``tables`` (frames) and ``values`` (numbers), in ``style``'s one
style. Accuracies in percent, learning rates as plain SGD step sizes on log axes; the first seed
set is drawn filled, the second set (the rerun) open.
"""

from __future__ import annotations

import textwrap
from typing import Any, Protocol

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from mlpmnist.figures.style import ERROR_RED, REFERENCE_COLOR, TEST_COLOR, batch_colors, figure

SECOND: dict[str, Any] = {"mfc": "white", "mew": 1.4}  # the second seed set: open markers
ARMS = {"relu": ("ReLU, lr 0.1 (the study)", TEST_COLOR), "leaky": ("leaky ReLU, lr 0.1", REFERENCE_COLOR)}


class SectionLike(Protocol):
    """What a science figure draws from: a section's ``tables`` and ``values``."""

    tables: dict[str, pd.DataFrame]
    values: dict[str, Any]


def _plain_log(ax: Axes, axis: str = "y") -> None:
    """Log-axis tick labels as plain numbers (0.1, 20) rather than powers of ten; where few powers
    of ten show, minor ticks too: 2, 3 and 5 times a power of ten on an axis spanning less than
    30x, every one on an axis spanning less than 4x."""
    target = ax.yaxis if axis == "y" else ax.xaxis

    def minor(v: float, _: object) -> str:  # read when drawn: the final limits
        lo, hi = sorted(target.get_view_interval())
        mantissa = round(v / 10 ** np.floor(np.log10(v)), 6)
        shown = hi < 4 * lo or (hi < 30 * lo and mantissa in (2, 3, 5))
        return f"{v:g}" if shown else ""

    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(minor))


def _batch_axis(ax: Axes, sizes: list[float]) -> None:
    """A log2 x axis with the batch sizes themselves as ticks."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{int(b)}" for b in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())


def lr_tuning(s: SectionLike) -> Figure:
    """Left: the first set's mean final validation accuracy against every lr tried, per batch
    size (a diamond at each best). Right: the tuned lr per batch size, the first set's with its
    tried neighbours as a bar and the second set's open, and the power law and the saturating
    form fitted to the first set, with their rms residuals in log lr."""
    summary, best1, best2 = s.tables["summary1"], s.tables["best1"], s.tables["best2"]
    fits = s.values["fits"][0]
    with figure(15, 5.6) as fig:
        ax, ax_lr = fig.subplots(1, 2)
        sizes = sorted(int(b) for b in summary["batch_size"].unique())
        colors = batch_colors(sizes)
        for b in sizes:
            g = summary[(summary["batch_size"] == b) & (summary["n_diverged"] == 0)].sort_values("lr")
            ax.plot(g["lr"], 100 * g["val_acc_mean"], "o-", ms=3, color=colors[b], label=f"B={b}")
            best = best1[best1["batch_size"] == b]
            ax.plot(best["lr"], 100 * best["val_acc_mean"], "D", ms=7, color=colors[b], mec="black")
        ax.set_xscale("log")
        _plain_log(ax, "x")
        ax.set_ylim(max(5.0, 100 * float(summary["val_acc_mean"].quantile(0.15)) - 3), 100)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("validation accuracy (%), mean over the first set's seeds")
        ax.set_title("Every lr tried (diamond: the best)")
        ax.legend(fontsize=8, ncols=2)

        b = best1["batch_size"].to_numpy(float)
        lo = (best1["lr"] - best1["lr_low"]).fillna(0).clip(lower=0)
        hi = (best1["lr_high"] - best1["lr"]).fillna(0).clip(lower=0)
        ax_lr.errorbar(
            b,
            best1["lr"],
            yerr=[lo, hi],
            fmt="o",
            capsize=3,
            color=TEST_COLOR,
            label="tuned lr, first set (bar: its tried neighbours)",
        )
        ax_lr.plot(
            best2["batch_size"], best2["lr"], "o", color=TEST_COLOR, ls="", **SECOND, label="second set"
        )
        grid = np.geomspace(b.min(), b.max(), 100)
        power = f"power law, slope {fits['slope']:.2f} (rms {fits['rms_power']:.2f})"
        sat = f"lr_max / (1 + B_noise / B), B_noise {fits['b_noise']:.0f} (rms {fits['rms_saturating']:.2f})"
        ax_lr.plot(grid, fits["c"] * grid ** fits["slope"], "--", color="0.45", label=power)
        ax_lr.plot(grid, fits["lr_max"] / (1 + fits["b_noise"] / grid), "-", color=REFERENCE_COLOR, label=sat)
        _batch_axis(ax_lr, list(b))
        ax_lr.set_yscale("log")
        _plain_log(ax_lr)
        ax_lr.set_xlabel("batch size B")
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_title("The tuned lr per batch size, two fits (rms: of log lr)")
        ax_lr.legend(fontsize=8)
        fig.suptitle("Tuning the learning rate for each batch size (plain SGD, validation split)")
    return fig


def steps_to_target(s: SectionLike) -> Figure:
    """Steps to each validation target against the batch size (log-log): the first set's median
    at each batch size's fastest lr with its 95% interval over seeds, the second set's value open,
    and the fit S(B) = S_min (1 + B_crit / B) with B_crit marked; right, the same as examples."""
    targets = s.values["targets"]
    with figure(14, 5.4) as fig:
        ax, ax_e = fig.subplots(1, 2)
        colors = {t: c for t, c in zip(targets, (REFERENCE_COLOR, TEST_COLOR, ERROR_RED), strict=False)}
        for t in targets:
            per = s.values["per_target"][f"{t:g}"]
            heads = s.tables[f"heads@{t:g}"]
            rows = heads[heads["name"].str.startswith("steps@")]
            b = rows["name"].str.removeprefix("steps@").astype(float).to_numpy()
            est, lo, hi = (rows[c].to_numpy(float) for c in ("estimate", "low", "high"))
            err = [np.nan_to_num(est - lo), np.nan_to_num(hi - est)]
            ax.errorbar(
                b, est, yerr=err, fmt="o", capsize=3, color=colors[t], label=f"{t:.0%}: first set, 95% CI"
            )
            ax.plot(b, rows["second"], "o", ls="", color=colors[t], **SECOND, label=f"{t:.0%}: second set")
            ax_e.plot(b, est * b, "o", color=colors[t], label=f"{t:.0%}")
            fit = per["fit"]
            if fit:
                grid = np.geomspace(b.min(), b.max(), 100)
                curve = fit["s_min"] * (1 + fit["b_crit"] / grid)
                ax.plot(grid, curve, "-", lw=1, color=colors[t])
                ax_e.plot(grid, curve * grid, "-", lw=1, color=colors[t])
                ax.axvline(fit["b_crit"], ls=":", color=colors[t], lw=1)
                ax.annotate(
                    f"B_crit {fit['b_crit']:.0f}",
                    (fit["b_crit"], est.max()),
                    color=colors[t],
                    rotation=90,
                    va="top",
                    ha="right",
                    fontsize=9,
                )
        for a, what in ((ax, "SGD steps"), (ax_e, "training examples (steps x B)")):
            _batch_axis(a, sorted(set(b)))
            a.set_yscale("log")
            _plain_log(a)
            a.set_xlabel("batch size B")
            a.set_ylabel(f"{what} to the validation target")
        ax.set_title("Steps: halving with every doubling of B, until B_crit")
        ax_e.set_title("Examples: constant while scaling is perfect")
        ax.legend(fontsize=8)
        fig.suptitle("Steps to a validation target at each batch size's fastest lr (median over seeds)")
    return fig


def ceiling(s: SectionLike) -> Figure:
    """Per seed, its λ_max at initialisation against its own collapse lr (the smallest lr above
    the tuned one where it failed), with scaled inputs and with centred ones (the control), and
    the line lr = 2 / λ_max; each panel's title gives Spearman's rho with its interval."""
    with figure(13, 5.2) as fig:
        axes = fig.subplots(1, 2)
        for ax, name in zip(axes, ("scaled", "control"), strict=True):
            per = s.tables[f"per_seed_{name}"]
            v = s.values[name]
            ax.plot(per["lambda_max"], per["collapse_lr"], "o", color=TEST_COLOR, label="a seed")
            lam = np.geomspace(per["lambda_max"].min() * 0.9, per["lambda_max"].max() * 1.1, 50)
            ax.plot(lam, 2 / lam, "--", color="0.45", label="2 / λ_max (gradient descent's limit)")
            ax.axhline(v["tuned_lr"], color=REFERENCE_COLOR, lw=1, label=f"tuned lr {v['tuned_lr']:.3g}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_log(ax)
            _plain_log(ax, "x")
            c = v["correlation"]
            what = "scaled pixels" if name == "scaled" else "centred pixels (the control)"
            if np.isfinite(c["rho"]):
                said = f"Spearman rho {c['rho']:.2f} [{c['low']:.2f}, {c['high']:.2f}], {c['n']} seeds"
            else:  # report.ceiling_text words it the same way
                said = f"all {c['n']} seeds collapse at lr {per['collapse_lr'].median():.3g}"
            ax.set_title(f"{what}: {said}")
            ax.set_xlabel("λ_max at initialisation (nats per squared step)")
            ax.set_ylabel("the seed's collapse lr")
            ax.legend(fontsize=8)
        fig.suptitle(
            f"The ceiling per seed at batch {s.values['batch_size']}: does a sharper start collapse sooner?"
        )
    return fig


def sharpness(s: SectionLike) -> Figure:
    """λ_max during the first epoch at each lr (one line per seed) against the step, with each
    lr's 2 / lr: falling below it early is a catapult, hovering at it the edge of stability."""
    t = s.tables["sharpness"]
    with figure(9, 5.2) as fig:
        ax = fig.add_subplot()
        lrs = sorted(t["lr"].unique())
        colors = dict(zip(lrs, (TEST_COLOR, REFERENCE_COLOR, ERROR_RED, "0.4"), strict=False))
        for lr in lrs:
            for seed, g in t[t["lr"] == lr].groupby("seed"):
                ax.plot(
                    g["step"],
                    g["lambda_max"],
                    "o-",
                    ms=3,
                    color=colors[lr],
                    label=f"lr {lr:.3g}" if seed == t["seed"].min() else None,
                )
            ax.axhline(2 / lr, ls="--", color=colors[lr], lw=1)
        ax.set_yscale("log")
        _plain_log(ax)
        ax.set_xlabel("SGD step (first epoch)")
        ax.set_ylabel("λ_max of the training loss")
        ax.set_title(f"λ_max during the first epoch at batch {s.values['batch_size']} (dashed: 2 / lr)")
        ax.legend(fontsize=9)
    return fig


def noise_scale(s: SectionLike) -> Figure:
    """B_simple against the epoch, one line per seed (the first set filled, the second open), the
    median of each set, and B_crit from steps to the highest target where known."""
    t = s.tables["noise"]
    with figure(9, 5.2) as fig:
        ax = fig.add_subplot()
        for (run, _seed), g in t.groupby(["run", "seed"]):
            ax.plot(g["epoch"], g["b_simple"], "-", lw=0.8, color="0.7" if run else "0.45")
        for run, g in t.groupby("run"):
            med = g.groupby("epoch")["b_simple"].median()
            style = SECOND if run else {}
            ax.plot(med.index, med, "o-", color=TEST_COLOR, **style, label=f"median, set {run + 1}")
        if s.values.get("b_crit"):
            ax.axhline(
                s.values["b_crit"], ls="--", color=REFERENCE_COLOR, label=f"B_crit {s.values['b_crit']:.0f}"
            )
        ax.set_yscale("log")
        _plain_log(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel("B_simple = tr(Σ) / |G|² (examples)")
        ax.set_title(f"The gradient noise scale during training at batch {s.values['batch_size']}")
        ax.legend(fontsize=9)
    return fig


def tail(s: SectionLike) -> Figure:
    """Batch 8's tail under each intervention: every seed's final test accuracy per arm (the tail
    below 85% marked), and the share in the tail with its Wilson interval."""
    last, summary = s.tables["last"], s.tables["tail"]
    arms = list(summary["arm"])
    labels = {**{k: v[0] for k, v in ARMS.items()}, "tuned": "ReLU, tuned lr"}
    with figure(13, 5.2) as fig:
        ax, ax_t = fig.subplots(1, 2, width_ratios=[2, 1])
        rng = np.random.default_rng(0)  # fixed jitter: the figure is the same every time
        for i, arm in enumerate(arms):
            acc = 100 * last.loc[last["arm"] == arm, "test_acc"].to_numpy(float)
            x = i + rng.uniform(-0.18, 0.18, len(acc))
            ax.scatter(x, acc, s=14, c=np.where(acc < 85, ERROR_RED, TEST_COLOR))
            med = summary.loc[summary["arm"] == arm].iloc[0]
            err = [[100 * (med["median"] - med["median_lo"])], [100 * (med["median_hi"] - med["median"])]]
            ax.errorbar(i + 0.32, 100 * med["median"], yerr=err, fmt="D", color="black", capsize=3)
        ax.axhline(85, ls="--", color=ERROR_RED, lw=1, label="85%: the tail")
        ax.set_xticks(
            range(len(arms)), [f"{labels[a]}\nlr {summary.loc[i, 'lr']:.3g}" for i, a in enumerate(arms)]
        )
        ax.set_ylabel("final test accuracy (%)")
        ax.set_title("Every seed (diamond: median, 95% CI)")
        ax.legend(fontsize=9)
        share = 100 * summary["n_tail"] / summary["n"]
        err = [share - 100 * summary["tail_lo"], 100 * summary["tail_hi"] - share]
        ax_t.errorbar(range(len(arms)), share, yerr=err, fmt="o", capsize=4, color=ERROR_RED)
        ax_t.set_xticks(
            range(len(arms)),
            [labels[a].split(",")[0] + ("\n(tuned lr)" if a == "tuned" else "") for a in arms],
        )
        ax_t.set_ylim(bottom=0)
        ax_t.set_ylabel("seeds below 85% (%, Wilson 95% CI)")
        ax_t.set_title("The tail's share")
        b = int(last["batch_size"].iloc[0])
        fig.suptitle(f"Batch {b}'s tail: units that cannot die, and the step the batch wants")
    return fig


def recipes(s: SectionLike) -> Figure:
    """The tuned recipe each seed set chose against the reference recipe: every seed's final test
    accuracy (the first set filled, the second open), with each set's choice named."""
    with figure(10, 4.8) as fig:
        ax = fig.add_subplot()
        for i, key in enumerate(("set1", "set2")):
            v, style = s.values[key], ({} if i == 0 else SECOND)
            for x, accs, color in ((0, v["test_acc"], TEST_COLOR), (1, v["reference_test_acc"], "0.45")):
                jitter = (np.arange(len(accs)) - (len(accs) - 1) / 2) * 0.025 + (0.12 if i else -0.12)
                ax.plot(
                    x + jitter,
                    100 * np.asarray(accs),
                    "o",
                    ls="",
                    color=color,
                    **style,
                    label=f"set {i + 1}" if x == 0 else None,
                )
        ax.set_xticks([0, 1], ["tuned recipe (each set's choice)", "reference recipe (lr 0.1, batch 90)"])
        ax.set_ylabel("final test accuracy (%)")
        one, two = (s.values[f"set{i}"]["chosen"] for i in (1, 2))
        lines = (
            [f"both seed sets chose: {one}"] if one == two else [f"set 1 chose: {one}", f"set 2 chose: {two}"]
        )
        wrapped = "\n".join(textwrap.fill(line, 100) for line in lines)
        ax.set_title(f"The same MLP, tuned\n{wrapped}", fontsize=9)
        ax.legend(fontsize=9)
    return fig


#: The headline numbers' names (``intervals.two_sets``) in words; ``lr@B`` and ``steps@B`` by pattern.
HEADLINE_WORDS = {
    "slope": "power law's slope",
    "rms_power": "power law's rms residual",
    "lr_max": "saturating form's lr_max",
    "b_noise": "saturating form's B_noise",
    "rms_saturating": "saturating form's rms residual",
    "rms_ratio": "rms ratio, power law / saturating",
    "b_crit": "B_crit",
    "s_min": "S_min",
}


def _headline_label(group: str, name: str) -> str:
    """'tuned lr at B = 8', 'steps to 97%: B_crit' for ``group`` and the number's ``name``."""
    what, _, batch = name.partition("@")
    if batch:
        return f"{group} at B = {batch}"
    return f"{group}: {HEADLINE_WORDS.get(what, what)}"


def headlines(frames: dict[str, pd.DataFrame]) -> Figure:
    """Every headline number of the first seed set with its 95% interval, as a ratio to its own
    estimate on one log axis (so widths compare across numbers), and the second set's value as a
    ratio to the same estimate; ``frames``: name in words -> ``intervals.two_sets``' rows."""
    rows = []
    for group, f in frames.items():
        for r in f.to_dict("records"):
            if r["estimate"] and np.isfinite(r["estimate"]) and r["estimate"] > 0:
                rows.append(
                    (
                        _headline_label(group, r["name"]),
                        r["low"] / r["estimate"],
                        r["high"] / r["estimate"],
                        (r["second"] or np.nan) / r["estimate"],
                        r["inside"],
                    )
                )
    with figure(10.5, 0.8 + 0.32 * len(rows)) as fig:
        ax = fig.add_subplot()
        for i, (_, lo, hi, second, inside) in enumerate(rows):
            ax.plot([lo, hi], [i, i], "-", color=TEST_COLOR, lw=3, solid_capstyle="butt")
            ax.plot(1, i, "|", color=TEST_COLOR, ms=10)
            ax.plot(second, i, "o", color=TEST_COLOR if inside else ERROR_RED, **SECOND)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
        ax.set_xticks([t for t in (0.25, 0.5, 0.7, 1, 1.4, 2, 4) if lo <= t <= hi])
        _plain_log(ax, "x")
        ax.set_xlabel(
            "ratio to the first set's estimate (bar: 95% interval; circle: the second set, red if outside)"
        )
        ax.set_title("Every headline number: the first set's interval, the second set's value")
    return fig
