"""Learning-rate tuning: a log grid of learning rates x seeds per batch size, plain SGD for a fixed
budget of epochs, the best lr chosen on validation, and how the tuned lr scales with B.

Accuracies are fractions in [0, 1]; learning rates are plain SGD step sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import data as mdata
from ..train import train
from .common import BATCH_SIZES, REFERENCE_LR, check_positive_ints, final_rows, grid_config


def lr_grid(
    center: float = REFERENCE_LR, factor: float = 3.0, below: int = 3, above: int = 3
) -> tuple[float, ...]:
    """Log-spaced learning rates ``center * factor**k`` for k in [-below, above].

    The default (0.0037 ... 2.7, 7 values a factor 3 apart) contains the reference's 0.1, so
    the reference's fixed-lr curve comes out of the same runs at the same epoch budget.
    """
    if not (math.isfinite(center) and center > 0 and math.isfinite(factor) and factor > 1):
        raise ValueError(f"center must be > 0 and factor > 1; got center={center!r}, factor={factor!r}")
    if below < 0 or above < 0:
        raise ValueError(f"below and above must be >= 0; got {below}, {above}")
    return tuple(float(f"{center * factor**k:.6g}") for k in range(-below, above + 1))


def tune_lr(
    batch_sizes: Sequence[int] = BATCH_SIZES,
    lrs: Sequence[float] = lr_grid(),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 3,
    data: mdata.MNIST | None = None,
    *,
    progress: bool = False,
    **fields: Any,
) -> pd.DataFrame:
    """Train every (batch size, lr, seed) for ``epochs`` epochs with plain SGD.

    One ``train`` call per batch size runs its lr x seed grid in lockstep; ``fields`` are further
    ``TrainConfig`` fields (holdout, train_limit, threads, device, engine, dtype, drop_last) over
    the science defaults (5,000 validation images, CPU, full batches only: at a large lr one
    small, noisy last step right before an evaluation can cost many points). Returns the
    concatenated histories: ``train``'s columns plus ``batch_size``, one row per replica and
    epoch; a replica that diverges stops there with ``diverged=True``.
    """
    batch_sizes = check_positive_ints("batch_sizes", batch_sizes)
    frames = []
    for b in batch_sizes:
        config = grid_config(b, lrs, seeds, epochs=epochs, **fields)
        result = train(config, data, progress=False, verbose=False)
        h = result.history
        h.insert(0, "batch_size", b)
        frames.append(h)
        if progress:
            print(f"tune_lr: batch {b:>4}: {len(config.seeds)} replicas, {result.seconds:.1f} s", flush=True)
    return pd.concat(frames, ignore_index=True)


def lr_summary(history: pd.DataFrame) -> pd.DataFrame:
    """Per batch size and lr: final val/test accuracy mean and std over seeds, n_seeds and
    n_diverged. A diverged replica's accuracies are NaN here (not averaged in); ``n_diverged``
    counts them so ``best_lr`` can rule such learning rates out."""
    last = final_rows(history).copy()
    for col in ("val_acc", "test_acc", "val_loss", "test_loss"):
        if col in last.columns:
            last.loc[last["diverged"], col] = np.nan
    agg = last.groupby(["batch_size", "lr"]).agg(
        val_acc_mean=("val_acc", "mean"),
        val_acc_std=("val_acc", "std"),
        test_acc_mean=("test_acc", "mean"),
        test_acc_std=("test_acc", "std"),
        n_seeds=("seed", "nunique"),
        n_diverged=("diverged", "sum"),
    )
    return agg.reset_index()


def _interpolated(g: pd.DataFrame, i: int) -> float:
    """The vertex of a parabola in log lr through grid point ``i`` and its neighbours, clipped to
    them; the grid lr itself at an edge, next to a diverged lr, or without a maximum."""
    if not (0 < i < len(g) - 1 and g.loc[[i - 1, i + 1], "n_diverged"].eq(0).all()):
        return float(g.loc[i, "lr"])
    xs = np.log(g.loc[[i - 1, i, i + 1], "lr"].to_numpy(float))
    ys = g.loc[[i - 1, i, i + 1], "val_acc_mean"].to_numpy(float)
    a, b, _ = np.polyfit(xs, ys, 2)
    if a >= 0:
        return float(g.loc[i, "lr"])
    return float(np.exp(np.clip(-b / (2 * a), xs[0], xs[2])))


def best_lr(history: pd.DataFrame, reference_lr: float = REFERENCE_LR) -> pd.DataFrame:
    """Per batch size, the grid lr with the highest mean validation accuracy over seeds.

    Learning rates where any seed diverged are ruled out. Columns: batch_size, lr (grid best),
    lr_interp (vertex of a parabola through the best and its two grid neighbours in log lr,
    clipped to them; a finer estimate for the scaling fit), val_acc_mean/std, test_acc_mean/std
    at the chosen lr, and ref_test_acc_mean/std at ``reference_lr`` (NaN if not in the grid).
    """
    out = []
    for b, g in lr_summary(history).groupby("batch_size"):
        g = g.sort_values("lr").reset_index(drop=True)
        ok = g[(g["n_diverged"] == 0) & g["val_acc_mean"].notna()]
        if ok.empty:
            continue
        i = int(ok["val_acc_mean"].idxmax())
        row, ref = g.loc[i], g[np.isclose(g["lr"], reference_lr)]
        nan = float("nan")
        out.append(
            {
                "batch_size": int(b),
                "lr": float(row["lr"]),
                "lr_interp": _interpolated(g, i),
                "val_acc_mean": float(row["val_acc_mean"]),
                "val_acc_std": float(row["val_acc_std"]),
                "test_acc_mean": float(row["test_acc_mean"]),
                "test_acc_std": float(row["test_acc_std"]),
                "ref_test_acc_mean": float(ref["test_acc_mean"].iloc[0]) if len(ref) else nan,
                "ref_test_acc_std": float(ref["test_acc_std"].iloc[0]) if len(ref) else nan,
            }
        )
    return pd.DataFrame(out)


def lr_scaling(best: pd.DataFrame, column: str = "lr_interp") -> dict[str, float]:
    """Least-squares fit log(lr) = log(c) + slope * log(B) over the tuned learning rates.

    Returns ``{"slope", "c", "r2"}``. The linear rule (Goyal et al. 2017) predicts slope 1,
    the square-root rule 0.5; a slope near 0 means one lr suits every batch size.
    """
    if len(best) < 2:
        raise ValueError(f"need tuned learning rates for at least 2 batch sizes; got {len(best)}")
    x = np.log(best["batch_size"].to_numpy(float))
    y = np.log(best[column].to_numpy(float))
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (icpt + slope * x)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss if ss > 0 else float("nan")
    return {"slope": float(slope), "c": float(np.exp(icpt)), "r2": r2}


def lr_report(summary: pd.DataFrame, best: pd.DataFrame, scaling: dict[str, float]) -> str:
    """The numbers behind the lr-tuning claims as text: validation accuracy (%) per lr and batch
    size, the best lr per batch size with its accuracies (%), the scaling fit, and the test
    points gained over the reference lr."""
    pct = best.assign(**{c: 100 * best[c] for c in best.columns if "acc" in c}).round(2)
    gain = 100 * (best["test_acc_mean"] - best["ref_test_acc_mean"])
    at = int(best.loc[gain.idxmax(), "batch_size"]) if gain.notna().any() else None
    return "\n".join(
        [
            "validation accuracy (%), mean over seeds, per lr (rows) and batch size (columns):",
            summary.pivot(index="lr", columns="batch_size", values="val_acc_mean")
            .mul(100)
            .round(2)
            .to_string(),
            "",
            "best lr per batch size (chosen on validation; accuracies in %):",
            pct.assign(lr_interp=best["lr_interp"].round(4)).to_string(index=False),
            "",
            f"fit of tuned lr ~ B^slope: slope {scaling['slope']:.2f} (linear rule 1, square-root rule 0.5), "
            f"R^2 {scaling['r2']:.2f}",
            f"tuned lr minus fixed lr {REFERENCE_LR:g}, test accuracy points: min {gain.min():+.2f}, "
            f"max {gain.max():+.2f} (largest at batch {at})",
        ]
    )
