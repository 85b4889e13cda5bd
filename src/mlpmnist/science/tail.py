"""A causal test of batch 8's tail: at lr 0.1 a fifth of batch 8's seeds end far below the rest,
and the seeds with more dead second-layer units end lower. Is it the dead units, or the step?

Three arms, each the study's own setting (batch 8, 15 epochs, sixty seeds, no validation split,
the remainder kept as a last batch), so the first arm is the study's experiment itself:

- ``relu``: the study as it is, lr 0.1;
- ``leaky``: leaky ReLU (negative slope 0.01, ``model.LEAKY_SLOPE``): no unit can die, every one
  keeps a gradient;
- ``tuned``: ReLU at batch 8's tuned lr (the first seed set's), the step the batch size wants.

Per arm: the share of seeds below ``TAIL_BELOW`` with its Wilson interval, the median with its
bootstrap interval, the dead units at the end, and each intervention's difference from ``relu``
by its own test (``analysis.compare``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.stats as sps

from mlpmnist.analysis.compare import median_difference, proportion_difference
from mlpmnist.analysis.stats import TAIL_BELOW, bootstrap_ci
from mlpmnist.config import TrainConfig
from mlpmnist.science.runs import Runner, final_rows


def arms(runner: Runner, tail: dict[str, Any], tuned_lr: float) -> dict[str, list[TrainConfig]]:
    """The experiments of each arm (name -> configs, one per seed group of ``tail["seeds"]``):
    the study's setting with ``runner.common``'s data limit and threads, no validation split."""
    common = {k: v for k, v in runner.common.items() if k != "holdout"}
    base = {"batch_size": tail["batch_size"], "epochs": tail["epochs"], **common}

    def configs(**fields: Any) -> list[TrainConfig]:
        return [TrainConfig(**base, **fields, seeds=tuple(s)) for s in tail["seeds"]]

    return {
        "relu": configs(lr=tail["lr"]),
        "leaky": configs(lr=tail["lr"], activation="leaky_relu"),
        "tuned": configs(lr=tuned_lr),
    }


def run(runner: Runner, tail: dict[str, Any], tuned_lr: float) -> pd.DataFrame:
    """Train the three arms (one sweep) and return each seed's final row with an ``arm`` column."""
    by_arm = arms(runner, tail, tuned_lr)
    frame = runner.train(
        [c for cs in by_arm.values() for c in cs], f"batch {tail['batch_size']}'s tail, 3 arms"
    )
    last = final_rows(frame)
    arm_of = {c.key(): name for name, cs in by_arm.items() for c in cs}
    return last.assign(arm=last["key"].map(arm_of))


def summarise(last: pd.DataFrame, n_resamples: int) -> pd.DataFrame:
    """Per arm (relu, leaky, tuned): lr, n, n_tail (seeds below ``TAIL_BELOW``, a diverged one
    included) with its Wilson 95% interval tail_lo/tail_hi (fractions), the median final test
    accuracy with its bootstrap 95% interval, dead_1 and dead_2 (median final share of each hidden
    layer's units that are zero on every test image), rank_corr (Spearman's, across seeds, of
    dead_2 and accuracy), and against relu: the tail share's difference (Newcombe interval,
    Fisher's p) and the median's (bootstrap interval, Mann-Whitney p)."""
    base = last[last["arm"] == "relu"]
    rows = []
    for arm in ("relu", "leaky", "tuned"):
        g = last[last["arm"] == arm]
        acc = g["test_acc"].to_numpy(float)
        k, n = int((~(acc >= TAIL_BELOW)).sum()), len(acc)
        ci = sps.binomtest(k, n).proportion_ci(0.95, method="wilson")
        lo, hi = bootstrap_ci(acc)
        ok = g[np.isfinite(acc)]
        row = {
            "arm": arm,
            "lr": float(g["lr"].iloc[0]),
            "n": n,
            "n_tail": k,
            "tail_lo": float(ci.low),
            "tail_hi": float(ci.high),
            "median": float(np.nanmedian(acc)),
            "median_lo": lo,
            "median_hi": hi,
            "dead_1": float(ok["dead_1"].median()),
            "dead_2": float(ok["dead_2"].median()),
            "rank_corr": float(sps.spearmanr(ok["dead_2"], ok["test_acc"]).statistic)
            if ok["dead_2"].nunique() > 1
            else float("nan"),
        }
        if arm != "relu":
            kb = int((~(base["test_acc"].to_numpy(float) >= TAIL_BELOW)).sum())
            share = proportion_difference(kb, len(base), k, n)
            med = median_difference(base["test_acc"], acc, resamples=n_resamples)
            row |= {f"tail_diff_{f}": share[f] for f in ("difference", "low", "high", "p")}
            row |= {f"median_diff_{f}": med[f] for f in ("difference", "low", "high", "p")}
        rows.append(row)
    return pd.DataFrame(rows)
