"""The learning-rate ceiling at the level of seeds, beside the curvature.

At one batch size, every seed of both sets trains on a sqrt(2) grid of learning rates for the
tuning budget. The tuned lr is the pooled seeds' best (``tuning``'s rule); a seed *fails* at an lr
when it diverges or its final validation accuracy is more than ``drop`` (stated in advance: 10
points) below the median at the tuned lr. The grid grows upward until every seed has failed, so
each seed's own collapse lr (the smallest lr above the tuned one where it fails) is known within
a factor sqrt(2). Each seed's λ_max at initialisation (the top Hessian eigenvalue of the training
loss, ``hessian``) is measured on the same images, and the two are set side by side; the control
repeats all of it with centred inputs. During the first epoch, λ_max is measured often at a few
lrs, to tell a catapult (λ_max falls below 2 / lr) from the edge of stability (it hovers at 2 / lr).

Learning rates are plain SGD step sizes; λ_max is in nats per squared parameter step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats as sps
import torch

from mlpmnist import store
from mlpmnist.data.loader import Data
from mlpmnist.model import MLP
from mlpmnist.science.hessian import lambda_max, network_inputs, sample_split
from mlpmnist.science.runs import Runner, final_rows
from mlpmnist.science.tuning import LR_BOUNDS, MAX_ROUNDS, SQRT2, best_lrs, grow, lr_summary
from mlpmnist.store.derived import cached
from mlpmnist.training.loop import init_models


def _lambda(model: MLP, x: torch.Tensor, y: torch.Tensor) -> float:
    """λ_max of ``model``'s mean training loss on (x, y), to a relative change of 1e-3."""
    return lambda_max(model, x, y, tol=1e-3).value


def _failed(last: pd.DataFrame, threshold: float) -> pd.Series:
    return last["diverged"] | ~(last["val_acc"] >= threshold)


def collapse_search(
    runner: Runner,
    batch_size: int,
    sets: Sequence[Sequence[int]],
    lrs: Sequence[float],
    epochs: int,
    drop: float,
    what: str,
    **fields: Any,
) -> tuple[pd.DataFrame, float, float]:
    """The ceiling study's runs at ``batch_size`` (see the module), each seed set an experiment of
    its own per lr (so runs the tuning already made are reused): from ``lrs``, rounds of sweeps
    until the pooled best lr has neighbours on both sides and every seed has failed above it.
    ``fields``: further ``TrainConfig`` fields (the control's ``inputs``). Returns (every
    replica's final row, the tuned lr, the failure threshold: a validation accuracy)."""
    tried = sorted(lrs)
    for round_ in range(1, MAX_ROUNDS + 1):
        configs = [
            runner.config(batch_size=batch_size, lr=lr, seeds=tuple(s), epochs=epochs, **fields)
            for lr in tried
            for s in sets
        ]
        last = final_rows(runner.train(configs, f"{what}, round {round_}"))
        summary = lr_summary(last)
        more = list(grow(summary).get(batch_size, ()))
        best = best_lrs(last).iloc[0]
        threshold = float(best["val_acc_median"]) - drop
        above = last[last["lr"] > best["lr"]]
        failed_seeds = set(above.loc[_failed(above, threshold), "seed"])
        if not more and failed_seeds < set(last["seed"]) and tried[-1] * SQRT2 <= LR_BOUNDS[1]:
            more = [v for v in (tried[-1] * SQRT2, tried[-1] * 2) if v <= LR_BOUNDS[1]]  # some seed holds
        if not more:
            return last, float(best["lr"]), threshold
        tried = sorted({*tried, *(float(f"{v:.6g}") for v in more)})
    return last, float(best["lr"]), threshold


def per_seed(last: pd.DataFrame, tuned: float, threshold: float) -> pd.DataFrame:
    """Per seed: ``collapse_lr``, the smallest lr above ``tuned`` where it failed (NaN: it never
    did, up to the largest tried), and ``ok_lr``, the largest lr tried below that."""
    rows = []
    for seed, g in last.groupby("seed"):
        g = g.sort_values("lr")
        bad = g[(g["lr"] > tuned) & _failed(g, threshold)]
        collapse = float(bad["lr"].iloc[0]) if len(bad) else math.nan
        below = g.loc[g["lr"] < collapse, "lr"] if len(bad) else g["lr"]
        rows.append({"seed": int(seed), "collapse_lr": collapse, "ok_lr": float(below.max())})
    return pd.DataFrame(rows)


def init_lambda(
    runner: Runner, data: Data, seeds: Sequence[int], n_examples: int, **fields: Any
) -> pd.DataFrame:
    """Per seed: λ_max of the training loss at its initialisation (``lambda_max`` of the weights
    its seed draws, on ``n_examples`` training images as the network sees them: ``fields`` may set
    ``inputs``), cached in the store. Columns seed, lambda_max, two_over_lambda (an lr)."""
    config = runner.config(seeds=tuple(seeds), **fields)
    x, y = sample_split(network_inputs(config, data), n_examples)
    models, _ = init_models(config)
    rows = []
    for seed, model in zip(config.seeds, models, strict=True):
        inputs = {"seed": seed, "n_examples": n_examples, "init": config.identity() | {"seeds": None}}
        value = cached(runner.results_dir, "lambda-init", inputs, partial(_lambda, model, x, y))
        rows.append({"seed": seed, "lambda_max": value, "two_over_lambda": 2.0 / value})
    return pd.DataFrame(rows)


def correlation(table: pd.DataFrame, x: str, y: str, n_resamples: int, rng: int = 0) -> dict[str, float]:
    """Spearman's rank correlation of columns ``x`` and ``y`` over the rows (seeds) with a finite
    value of both, and its 95% percentile bootstrap interval over seeds: rho, low, high, n."""
    t = table[[x, y]].dropna()
    # Undefined (nan, no interval) when a column is constant: every seed collapses at one lr, say.
    varies = len(t) >= 3 and t[x].nunique() > 1 and t[y].nunique() > 1
    rho = float(sps.spearmanr(t[x], t[y]).statistic) if varies else math.nan
    gen = np.random.default_rng(rng)
    draws = []
    for _ in range(n_resamples if varies else 0):
        s = t.iloc[gen.integers(len(t), size=len(t))]
        if s[x].nunique() > 1 and s[y].nunique() > 1:
            draws.append(sps.spearmanr(s[x], s[y]).statistic)
    low, high = np.percentile(draws, [2.5, 97.5]) if len(draws) >= 2 else (math.nan, math.nan)
    return {"rho": rho, "low": float(low), "high": float(high), "n": len(t)}


def sharpness_runs(
    runner: Runner,
    data: Data,
    batch_size: int,
    lrs: Sequence[float],
    seeds: Sequence[int],
    snapshots: Sequence[float],
    n_examples: int,
) -> pd.DataFrame:
    """λ_max during the first epoch: one run per lr (every seed a replica) keeping ``snapshots``
    (epochs), each snapshot's λ_max on ``n_examples`` training images (cached in the store). One
    row per lr, seed and snapshot: lr, seed, epoch, step, lambda_max, two_over_lr (2 / lr) and
    lr_times_lambda (above 2: full-batch gradient descent at this lr would be unstable there)."""
    configs = [
        runner.config(batch_size=batch_size, lr=lr, seeds=tuple(seeds), epochs=1, snapshots=tuple(snapshots))
        for lr in lrs
    ]
    runner.train(configs, f"lambda_max during the first epoch at batch {batch_size}")
    x, y = sample_split(network_inputs(configs[0], data), n_examples)
    rows = []
    for config in configs:
        found = store.trusted(runner.results_dir, config)
        for epoch in snapshots:
            for seed, model in found.models(epoch).items():
                inputs = {
                    "key": config.key(),
                    "sha": found.record.get("weights_sha256"),
                    "epoch": epoch,
                    "seed": seed,
                    "n_examples": n_examples,
                }
                value = cached(runner.results_dir, "lambda", inputs, partial(_lambda, model, x, y))
                lr = config.lrs[0]
                rows.append(
                    {
                        "lr": lr,
                        "seed": seed,
                        "epoch": float(epoch),
                        "step": round(epoch * config.steps_per_epoch),
                        "lambda_max": value,
                        "two_over_lr": 2.0 / lr,
                        "lr_times_lambda": lr * value,
                    }
                )
    return pd.DataFrame(rows)


#: lr·λ_max below this late in the first epoch: the sharpness fell well below 2 / lr (a catapult's
#: end state); at or above it, it hovers near 2 / lr (minibatch SGD lets it sit somewhat above).
CATAPULT_BELOW = 1.5


def regimes(sharp: pd.DataFrame) -> pd.DataFrame:
    """Per lr of ``sharpness_runs``' rows: lr·λ_max at initialisation (``start``), its highest
    (``peak``) and over the second half of the first epoch (``late``, each a median over seeds and
    snapshots), and ``regime``: "catapult" when ``late`` is below ``CATAPULT_BELOW``, else "edge of
    stability" (it hovers at 2 / lr). Dimensionless (lr times nats per squared step)."""
    rows = []
    for lr, g in sharp.groupby("lr"):
        late = float(g.loc[g["epoch"] >= 0.5, "lr_times_lambda"].median())
        rows.append(
            {
                "lr": float(lr),
                "start": float(g.loc[g["epoch"] == 0, "lr_times_lambda"].median()),
                "peak": float(g["lr_times_lambda"].max()),
                "late": late,
                "regime": "catapult" if late < CATAPULT_BELOW else "edge of stability",
            }
        )
    return pd.DataFrame(rows)
