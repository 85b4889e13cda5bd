"""The science notebook's sections, each one call: it trains what it needs through the store (a
rerun trains nothing), computes its numbers for both seed sets, and returns them as plain frames
and dicts (``Section``) with a text of the numbers behind every claim.

Each section's ``values`` are what the summary record and the README quote; ``tables`` are the
frames its figures draw; ``text`` is printed by the notebook.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from mlpmnist.analysis.compare import median_difference
from mlpmnist.data.loader import Data
from mlpmnist.science import ceiling, intervals, noise, recipe, steps, tail, tuning
from mlpmnist.science.presets import Preset
from mlpmnist.science.runs import Runner
from mlpmnist.science.scaling import lr_fits, sensitivity, steps_fit
from mlpmnist.science.tuning import SQRT2


@dataclass
class Section:
    """One section's results: ``values`` (JSON-ready numbers for the summary), ``tables`` (frames
    for figures and reading), ``text`` (the numbers behind the claims) and ``seconds``."""

    values: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    text: str = ""
    seconds: float = 0.0


def _timed(fn: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Section:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        out.seconds = time.perf_counter() - t0
        return out

    wrapped.__doc__ = fn.__doc__
    return wrapped


def _headlines(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.replace({np.nan: None}).to_dict("records")


@_timed
def tune(runner: Runner, p: Preset) -> Section:
    """1. The tuned lr per batch size, each seed set on its own; both fits of how it scales, with
    intervals over the first set's seeds and the second set's values beside them."""
    lasts = tuning.search(runner, p.batch_sizes, p.start_lrs, p.sets, p.tune_epochs, "lr search")
    bests = [tuning.best_lrs(last) for last in lasts]
    heads = intervals.two_sets(lasts[0], lasts[1], intervals.tuning_statistics, n_resamples=p.n_resamples)
    fits = [lr_fits(b) for b in bests]
    text = "\n".join(
        [
            "tuned lr per batch size, first set (lr_low/lr_high: its tried neighbours; accuracies %):",
            bests[0]
            .assign(**{c: 100 * bests[0][c] for c in bests[0] if "acc" in c})
            .round(4)
            .to_string(index=False),
            "second set's tuned lr: "
            + ", ".join(f"{b}: {lr:.4g}" for b, lr in zip(bests[1].batch_size, bests[1].lr, strict=True)),
            "",
            "first set's numbers with 95% intervals over its seeds, the second set's beside:",
            heads.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
        ]
    )
    return Section(
        {"best": [b.to_dict("records") for b in bests], "fits": fits, "headlines": _headlines(heads)},
        {
            "best1": bests[0],
            "best2": bests[1],
            "last1": lasts[0],
            "last2": lasts[1],
            "summary1": tuning.lr_summary(lasts[0]),
            "heads": heads,
        },
        text,
    )


@_timed
def steps_to_targets(runner: Runner, p: Preset, tuned: Section) -> Section:
    """2. Steps to each validation target per batch size at its fastest lr, each set from its own
    tuned lrs; the fit S(B) = S_min (1 + B_crit / B) per target with intervals, and B_crit without
    the smallest and without the largest batch size."""
    lrs = [
        {r["batch_size"]: r["lr"] for r in best if r["batch_size"] in p.steps_batch_sizes}
        for best in tuned.values["best"]
    ]
    firsts = steps.race(
        runner,
        lrs,
        p.sets,
        p.targets,
        max_epochs=p.max_epochs,
        eval_ratio=p.eval_ratio,
        eval_from=p.eval_from,
        what="steps to target",
    )
    values: dict[str, Any] = {"targets": list(p.targets), "per_target": {}}
    tables, lines = {"first1": firsts[0], "first2": firsts[1]}, []
    for t in p.targets:
        table = steps.fastest(firsts[0], t)
        heads = intervals.two_sets(
            firsts[0], firsts[1], partial(intervals.steps_statistics, target=t), n_resamples=p.n_resamples
        )
        b, s = table["batch_size"].to_numpy(float), table["steps"].to_numpy(float)
        try:
            fit = steps_fit(b, s).__dict__
        except ValueError:
            fit = None
        values["per_target"][f"{t:g}"] = {
            "table": table.to_dict("records"),
            "fit": fit,
            "sensitivity": sensitivity(b, s),
            "headlines": _headlines(heads),
        }
        tables[f"fastest@{t:g}"] = table
        tables[f"heads@{t:g}"] = heads
        lines += [
            f"steps to {t:.0%} validation accuracy, first set (fastest lr per batch size):",
            table.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
            f"fit: {fit}; B_crit without an end: {sensitivity(b, s)}",
            heads.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
            "",
        ]
    return Section(values, tables, "\n".join(lines))


@_timed
def ceilings(runner: Runner, p: Preset, data: Data, tuned: Section) -> Section:
    """3. The ceiling per seed at one batch size, with scaled and with centred inputs (the
    control): each seed's collapse lr beside its λ_max at initialisation, their correlation; and
    λ_max during the first epoch at a few multiples of the tuned lr."""
    c, seeds = p.ceiling, list(p.all_seeds)
    b = c["batch_size"]
    tried = pd.concat([tuned.tables["last1"], tuned.tables["last2"]])
    start = sorted(set(tried.loc[tried["batch_size"] == b, "lr"])) or list(p.start_lrs)
    values: dict[str, Any] = {"batch_size": b, "drop": c["drop"]}
    tables: dict[str, pd.DataFrame] = {}
    lines = []
    for name, fields in (("scaled", {}), ("control", {"inputs": c["inputs"]})):
        last, lr, threshold = ceiling.collapse_search(
            runner, b, p.sets, start, p.tune_epochs, c["drop"], f"ceiling per seed ({name})", **fields
        )
        if name == "scaled":  # the control's grid starts at the scaled tuned lr and goes up 8 times
            start = [float(f"{lr * SQRT2**k:.6g}") for k in range(7)]
        per = ceiling.per_seed(last, lr, threshold).merge(
            ceiling.init_lambda(runner, data, seeds, c["n_examples"], **fields), on="seed"
        )
        corr = ceiling.correlation(per, "lambda_max", "collapse_lr", p.n_resamples)
        values[name] = {
            "tuned_lr": lr,
            "threshold": threshold,
            "per_seed": per.to_dict("records"),
            "correlation": corr,
            "lambda_median": float(per["lambda_max"].median()),
            "lambda_range": [float(per["lambda_max"].min()), float(per["lambda_max"].max())],
            "collapse_median": float(per["collapse_lr"].median()),
        }
        tables[f"per_seed_{name}"] = per
        lines += [
            f"{name}: tuned lr {lr:.4g}, failure below {100 * threshold:.2f}% validation accuracy; per seed:",
            per.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
            f"Spearman's rho of lambda_max at init and collapse lr: {corr}",
            "",
        ]
    s = p.sharpness
    lr = values["scaled"]["tuned_lr"]
    sharp = ceiling.sharpness_runs(
        runner,
        data,
        b,
        [float(f"{f * lr:.6g}") for f in s["lrs"]],
        p.sets[0][: s["seeds"]],
        s["snapshots"],
        c["n_examples"],
    )
    regimes = ceiling.regimes(sharp)
    tables["sharpness"] = sharp
    values["sharpness"] = sharp.to_dict("records")
    values["regimes"] = regimes.to_dict("records")
    lines += [
        "lambda_max during the first epoch:",
        sharp.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
        "lr times lambda_max per lr (start, peak, median over the second half of the epoch):",
        regimes.to_string(index=False, float_format=lambda v: f"{v:.3g}"),
    ]
    return Section(values, tables, "\n".join(lines))


@_timed
def noise_scale(runner: Runner, p: Preset, data: Data, tuned: Section, b_crit: float | None) -> Section:
    """4. The gradient noise scale B_simple during training, every seed of both sets at the noise
    batch size and each set's tuned lr there, and B_simple at each seed's first snapshot at the
    highest target; ``b_crit`` (from steps to target, or None) is drawn beside it."""
    n = p.noise
    lrs = [next(r["lr"] for r in best if r["batch_size"] == n["batch_size"]) for best in tuned.values["best"]]
    frame = noise.noise_runs(
        runner,
        data,
        list(zip(p.sets, lrs, strict=True)),
        batch_size=n["batch_size"],
        epochs=n["epochs"],
        b_small=n["b_small"],
        b_big=n["b_big"],
        n_big=n["n_big"],
        what="noise scale",
    )
    frame = frame.assign(set=frame["run"] + 1)
    at = max(p.targets)
    per_seed = (
        frame.groupby(["set", "seed"])
        .apply(lambda g: noise.noise_at_target(g, at))
        .rename("b_simple_at_target")
    )
    med = frame.groupby(["set", "epoch"])["b_simple"].median().unstack(0)
    text = (
        f"B_simple (median over seeds) per epoch and set:\n{med}\n"
        f"at each seed's first snapshot at {at:.0%}:\n{per_seed}"
    )
    return Section(
        {
            "batch_size": n["batch_size"],
            "b_crit": b_crit,
            "per_epoch": med.reset_index().to_dict("records"),
            "at_target": per_seed.reset_index().to_dict("records"),
        },
        {"noise": frame, "at_target": per_seed.reset_index()},
        text,
    )


@_timed
def recipes(runner: Runner, p: Preset) -> Section:
    """5. The tuned recipe: each set chooses among the candidates on its own validation split;
    test accuracy of its choice, and of the reference recipe on the same split and seeds."""
    values: dict[str, Any] = {}
    lines = []
    per_set = recipe.run_recipes(runner, [*p.candidates, p.reference], p.sets, "recipes")
    for i, runs in enumerate(per_set, 1):
        chosen, ref = recipe.select_recipe(runs[:-1]), runs[-1]
        values[f"set{i}"] = {
            # The chosen recipe's test accuracy against the reference's, by a test of the difference.
            "difference": median_difference(ref.last["test_acc"], chosen.last["test_acc"]),
            "chosen": chosen.recipe.describe(),
            "test_acc": chosen.last["test_acc"].tolist(),
            "candidates": [
                {"recipe": r.recipe.describe(), "val_acc": r.last["val_acc"].tolist()} for r in runs[:-1]
            ],
            "reference_test_acc": ref.last["test_acc"].tolist(),
        }
        lines += [
            f"set {i} chose: {chosen.line()}",
            *(f"  candidate: {r.line()}" for r in runs[:-1]),
            f"  reference: {ref.line()}",
        ]
    return Section(values, {}, "\n".join(lines))


@_timed
def batch8_tail(runner: Runner, p: Preset, tuned: Section) -> Section:
    """6. The causal test of batch 8's tail: ReLU, leaky ReLU, and ReLU at the tuned lr."""
    b = p.tail["batch_size"]
    lr = next(
        r["lr"]
        for r in tuned.values["best"][0]
        if r["batch_size"] == min(p.batch_sizes, key=lambda x: abs(x - b))
    )
    last = tail.run(runner, p.tail, lr)
    table = tail.summarise(last, p.n_resamples)
    return Section(
        {"batch_size": b, "epochs": p.tail["epochs"], "arms": table.to_dict("records")},
        {"tail": table, "last": last},
        table.to_string(index=False),
    )


def headline_frames(tuned: Section, steps: Section) -> dict[str, pd.DataFrame]:
    """The headline numbers of both seed sets (``intervals.two_sets``' rows) by section, in words:
    what the headlines figure draws."""
    return {"tuned lr": tuned.tables["heads"]} | {
        f"steps to {t:.0%}": steps.tables[f"heads@{t:g}"] for t in steps.values["targets"]
    }


def b_crit(steps: Section) -> float | None:
    """B_crit (examples) of the fit at the highest target, or None where it is undefined."""
    fit = steps.values["per_target"][f"{max(steps.values['targets']):g}"]["fit"]
    return None if fit is None else float(fit["b_crit"])
