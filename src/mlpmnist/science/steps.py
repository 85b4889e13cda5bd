"""Steps to a validation target against the batch size (Shallue et al. 2018), each batch size at
its fastest learning rate.

Per batch size, plain SGD at constant lr trains each seed until its validation accuracy reaches
the highest target (``TrainConfig.target``), validated after geometrically spaced steps
(``eval_ratio``), so every batch size gets the same relative resolution; the first step at each
lower target comes from the same runs. The candidate lrs start at the set's tuned lr and the
next one up (sqrt(2)); while the fastest (fewest median steps, every seed there) is the smallest or
the largest tried, the grid grows past it, so each batch size's fastest lr has a tried neighbour
on both sides (or one that never got there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mlpmnist.science.runs import Runner
from mlpmnist.science.tuning import LR_BOUNDS, MAX_ROUNDS, SQRT2

#: One row per (batch size, seed, lr) and target: the first step at or above it.
FIRST_COLUMNS = ("batch_size", "seed", "lr", "target", "steps", "examples", "max_step")


def first_reaching(curve: pd.DataFrame, targets: Sequence[float], metric: str = "val_acc") -> pd.DataFrame:
    """The first evaluated step where ``metric`` >= each of ``targets``, per batch size, seed and
    lr of ``curve`` (a history with batch_size, seed, lr, step and ``metric``). Columns
    ``FIRST_COLUMNS``: steps is NaN where the target was never reached; examples = steps x B;
    max_step the last step evaluated."""
    rows = []
    ok = curve.dropna(subset=[metric])
    for (b, s, lr), g in ok.groupby(["batch_size", "seed", "lr"]):
        g = g.sort_values("step")
        for t in targets:
            hit = g.loc[g[metric] >= t, "step"]
            steps = float(hit.iloc[0]) if len(hit) else math.nan
            rows.append((int(b), int(s), float(lr), float(t), steps, steps * b, int(g["step"].max())))
    return pd.DataFrame(rows, columns=list(FIRST_COLUMNS))


def fastest(first: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per batch size: the lr with the fewest median steps to ``target`` over seeds among those
    where every seed reached it (the smaller lr on a tie), its median ``steps`` and ``examples``,
    ``steps_min``/``steps_max`` over seeds, ``n_seeds``, and ``inside`` (the lrs tried next to it
    on both sides exist: slower, or short of the target). NaN steps where no lr got every seed there."""
    rows = []
    for b, g in first[np.isclose(first["target"], target)].groupby("batch_size"):
        per_lr = g.groupby("lr")["steps"]
        done = per_lr.apply(lambda s: s.notna().all())
        med = per_lr.median().where(done)
        lrs = sorted(med.index)
        if med.notna().any():
            lr = float(med.idxmin())
            h, i = g[g["lr"] == lr]["steps"], lrs.index(lr)
            row = {
                "lr": lr,
                "steps": float(h.median()),
                "steps_min": float(h.min()),
                "steps_max": float(h.max()),
            }
            row["inside"] = 0 < i < len(lrs) - 1
        else:
            row = {
                "lr": math.nan,
                "steps": math.nan,
                "steps_min": math.nan,
                "steps_max": math.nan,
                "inside": False,
            }
        rows.append(
            {"batch_size": int(b), **row, "examples": row["steps"] * b, "n_seeds": g["seed"].nunique()}
        )
    return pd.DataFrame(rows)


def _grow(first: pd.DataFrame, target: float) -> dict[int, tuple[float, ...]]:
    """Per batch size, the lrs still to race: one sqrt(2) step past the fastest while it is the
    smallest or largest lr tried (within ``tuning.LR_BOUNDS``)."""
    out = {}
    first = first[np.isclose(first["target"], target)]
    table = fastest(first, target).set_index("batch_size")
    for b, g in first.groupby("batch_size"):
        lrs = sorted(g["lr"].unique())
        lr = table.loc[b, "lr"]
        want = []
        if not math.isfinite(lr):
            want = [lrs[0] / SQRT2]  # nobody got there: smaller steps may
        elif lr == lrs[0]:
            want = [lr / SQRT2]
        elif lr == lrs[-1]:
            want = [lr * SQRT2]
        out[int(b)] = tuple(float(f"{v:.6g}") for v in want if LR_BOUNDS[0] <= v <= LR_BOUNDS[1])
    return out


def _first(curve: pd.DataFrame, targets: Sequence[float]) -> pd.DataFrame:
    """``first_reaching`` for each target from the runs that went on at least until it (a run
    stopped at a lower target says nothing about a higher one); ``curve`` holds the config's
    ``target`` column."""
    frames = [first_reaching(curve[curve["target"] >= t - 1e-12], [t]) for t in targets]
    return pd.concat(frames, ignore_index=True)


def race(
    runner: Runner,
    tuned: Sequence[Mapping[int, float]],
    sets: Sequence[Sequence[int]],
    targets: Sequence[float],
    *,
    max_epochs: int,
    eval_ratio: float,
    eval_from: int,
    what: str,
) -> list[pd.DataFrame]:
    """Steps to ``targets`` for each seed set: per batch size of the set's ``tuned`` (batch size ->
    its tuned lr), rounds of sweeps from (tuned lr, sqrt(2) x it), each run stopping at the highest
    target, until for every target the fastest lr has a tried neighbour on both sides (an lr added
    for a lower target stops there); each set's lrs grow from its own results (both sets in the
    same sweeps, as ``tuning.search``). Returns, per set, ``first_reaching``'s rows of every lr
    tried, for every target."""
    top = max(targets)
    # Per set: (batch size, lr) -> the target its run stops at.
    tried: list[dict[tuple[int, float], float]] = [
        {(int(b), v): top for b, lr in t.items() for v in (lr, float(f"{lr * SQRT2:.6g}"))} for t in tuned
    ]
    firsts = [pd.DataFrame(columns=list(FIRST_COLUMNS)) for _ in sets]
    for round_ in range(1, MAX_ROUNDS + 1):
        configs = {
            i: [
                runner.config(
                    batch_size=b,
                    lr=lr,
                    seeds=tuple(seeds),
                    epochs=max_epochs,
                    target=t,
                    eval_ratio=eval_ratio,
                    eval_from=eval_from,
                )
                for (b, lr), t in tried[i].items()
            ]
            for i, seeds in enumerate(sets)
        }
        curve = runner.train([c for cs in configs.values() for c in cs], f"{what}, round {round_}")
        grew = False
        for i in range(len(sets)):
            firsts[i] = _first(curve[curve["key"].isin({c.key() for c in configs[i]})], targets)
            for t in sorted(targets, reverse=True):
                for b, lrs in _grow(firsts[i], t).items():
                    for lr in lrs:
                        if tried[i].get((b, lr), 0.0) < t:
                            tried[i][(b, lr)] = t
                            grew = True
        if not grew:
            break
    return firsts
