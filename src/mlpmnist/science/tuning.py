"""The learning rate tuned per batch size, until the grid reaches its optimum.

Each batch size starts from the same grid of learning rates sqrt(2) apart, trained with plain SGD
for a fixed budget of epochs on one seed set; the best lr is the one with the highest mean final
validation accuracy over the set's seeds (an lr where a seed diverged is ruled out; a collapsed
seed counts with its accuracy). While the best is the smallest or the largest lr tried, the grid
grows past it (two more steps of sqrt(2)), so every batch size's best has a tried neighbour on
both sides. Every choice depends on the set's own seeds only.

Learning rates are plain SGD step sizes; accuracies fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlpmnist.science.runs import Runner, final_rows

#: Learning rates the search never goes beyond: below 1e-4 nothing trains in a short budget and
#: above 10 plain SGD on this MLP diverges at every batch size.
LR_BOUNDS = (1e-4, 10.0)
SQRT2 = math.sqrt(2)
#: The most rounds of growth per search (each round one sweep).
MAX_ROUNDS = 8


def lr_summary(last: pd.DataFrame) -> pd.DataFrame:
    """Per batch size and lr of ``last`` (one final row per seed): val_acc_mean, val_acc_median,
    test_acc_mean (NaN where it diverged: not averaged in), n_seeds, n_diverged and n_collapsed.
    Sorted by batch size and lr."""
    last = last.assign(
        val=last["val_acc"].where(~last["diverged"]), test=last["test_acc"].where(~last["diverged"])
    )
    g = last.groupby(["batch_size", "lr"])
    return (
        g.agg(
            val_acc_mean=("val", "mean"),
            val_acc_median=("val", "median"),
            test_acc_mean=("test", "mean"),
            n_seeds=("seed", "nunique"),
            n_diverged=("diverged", "sum"),
            n_collapsed=("collapsed", "sum"),
        )
        .reset_index()
        .sort_values(["batch_size", "lr"], ignore_index=True)
    )


def _best(g: pd.DataFrame) -> int | None:
    """Row position of the best lr of one batch size's sorted summary: the highest mean
    validation accuracy among lrs where no seed diverged; the smaller lr on a tie; None if all did."""
    ok = (g["n_diverged"] == 0).to_numpy() & g["val_acc_mean"].notna().to_numpy()
    if not ok.any():
        return None
    return int(np.argmax(np.where(ok, g["val_acc_mean"].to_numpy(float), -np.inf)))


def _lr(v: float) -> float:
    return float(f"{v:.6g}")


def grow(summary: pd.DataFrame) -> dict[int, tuple[float, ...]]:
    """Per batch size, the learning rates still to train: two more sqrt(2) steps beyond the best
    when it is the smallest or largest lr tried (within ``LR_BOUNDS``), one below the smallest when
    every lr diverged; none once the best has a tried neighbour on both sides."""
    lo, hi = LR_BOUNDS
    out = {}
    for b, g in summary.groupby("batch_size"):
        g = g.reset_index(drop=True)
        lrs, i = g["lr"].to_numpy(float), _best(g)
        want: list[float] = []
        if i is None:
            want = [lrs[0] / 2]
        elif i == 0:
            want = [lrs[0] / SQRT2, lrs[0] / 2]
        elif i == len(lrs) - 1:
            want = [lrs[-1] * SQRT2, lrs[-1] * 2]
        out[int(b)] = tuple(_lr(v) for v in want if lo <= v <= hi and not np.isclose(lrs, v, rtol=1e-4).any())
    return out


def best_lrs(last: pd.DataFrame) -> pd.DataFrame:
    """Per batch size of ``last`` (one final row per seed and lr): the best lr (``lr``), its tried
    neighbours (``lr_low``, ``lr_high``: NaN where there is none), ``lr_interp`` (the vertex of a
    parabola through the best and its neighbours in log lr, clipped to them: a finer estimate for
    fits; the best itself at an edge or next to a diverged lr), ``inside`` (it has neighbours on
    both sides), and at the best: val_acc_mean, val_acc_median, test_acc_mean; at the reference
    lr 0.1, ``ref_test_acc_mean`` (NaN where it was not tried)."""
    rows = []
    for b, g in lr_summary(last).groupby("batch_size"):
        g = g.reset_index(drop=True)
        i = _best(g)
        if i is None:
            continue
        lrs, nan = g["lr"].to_numpy(float), math.nan
        ref = g.loc[np.isclose(lrs, 0.1), "test_acc_mean"]
        rows.append(
            {
                "batch_size": int(b),
                "lr": lrs[i],
                "lr_low": lrs[i - 1] if i > 0 else nan,
                "lr_high": lrs[i + 1] if i < len(lrs) - 1 else nan,
                "lr_interp": _vertex(g, i),
                "inside": 0 < i < len(lrs) - 1,
                "val_acc_mean": float(g.loc[i, "val_acc_mean"]),
                "val_acc_median": float(g.loc[i, "val_acc_median"]),
                "test_acc_mean": float(g.loc[i, "test_acc_mean"]),
                "ref_test_acc_mean": float(ref.iloc[0]) if len(ref) else nan,
            }
        )
    return pd.DataFrame(rows)


def _vertex(g: pd.DataFrame, i: int) -> float:
    """The vertex of the parabola through row ``i`` and its neighbours in log lr (see ``best_lrs``)."""
    if not (0 < i < len(g) - 1 and g.loc[[i - 1, i + 1], "n_diverged"].eq(0).all()):
        return float(g.loc[i, "lr"])
    xs = np.log(g.loc[[i - 1, i, i + 1], "lr"].to_numpy(float))
    a, b, _ = np.polyfit(xs, g.loc[[i - 1, i, i + 1], "val_acc_mean"].to_numpy(float), 2)
    return float(np.exp(np.clip(-b / (2 * a), xs[0], xs[2]))) if a < 0 else float(g.loc[i, "lr"])


def search(
    runner: Runner,
    batch_sizes: Sequence[int],
    start_lrs: Sequence[float],
    sets: Sequence[Sequence[int]],
    epochs: int,
    what: str,
    **fields: object,
) -> list[pd.DataFrame]:
    """The lr search of each seed set (see the module): rounds of sweeps, each training the lrs
    that ``grow`` asks for on each set's own results, until none. Both sets train in the same
    sweeps (a replica's numbers do not depend on the replicas beside it: bit for bit on a CPU,
    within rounding on a GPU), but each set's grid grows from its own seeds alone. ``fields``:
    further ``TrainConfig`` fields of every run (e.g. ``inputs``). Returns, per set, the final
    row of every replica tried (``final_rows``): batch_size, lr, seed, val_acc, test_acc, diverged,
    collapsed and the rest of the history's columns."""
    tried = [{int(b): tuple(start_lrs) for b in batch_sizes} for _ in sets]
    lasts = [pd.DataFrame() for _ in sets]
    for round_ in range(1, MAX_ROUNDS + 1):
        configs = {
            i: [
                runner.config(batch_size=b, lr=lr, seeds=tuple(seeds), epochs=epochs, **fields)
                for b, lrs in tried[i].items()
                for lr in lrs
            ]
            for i, seeds in enumerate(sets)
        }
        last = final_rows(runner.train([c for cs in configs.values() for c in cs], f"{what}, round {round_}"))
        grew = False
        for i in range(len(sets)):
            lasts[i] = last[last["key"].isin({c.key() for c in configs[i]})].reset_index(drop=True)
            more = grow(lr_summary(lasts[i]))
            grew |= any(more.values())
            tried[i] = {b: (*lrs, *more.get(b, ())) for b, lrs in tried[i].items()}
        if not grew:
            break
    return lasts
