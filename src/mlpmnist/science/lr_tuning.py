"""Learning-rate tuning: a log grid of learning rates x seeds per batch size, plain SGD for a fixed
budget of epochs, the best lr chosen on validation, and how the tuned lr scales with B.

Accuracies are fractions in [0, 1]; learning rates are plain SGD step sizes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlpmnist.data import loader as mdata
from mlpmnist.science.common import BATCH_SIZES, REFERENCE_LR, check_positive_ints, final_rows, grid_config
from mlpmnist.training.health import COLLAPSED_ACC
from mlpmnist.training.many import train_many


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


@dataclass
class Halving:
    """A ``train`` stop rule for an lr grid: at the first evaluation, stop every replica whose lr
    is already out of the running (its mean ``metric`` over seeds more than ``margin`` below the
    best lr's) or that collapsed to chance; later evaluations stop nothing. A stopped replica's
    last row is that first evaluation, which is what ``lr_summary`` then reads for it."""

    margin: float = 0.05
    metric: str = "val_acc"
    seen: bool = False

    def __call__(self, rows: list[dict]) -> list[bool]:
        if self.seen or not rows:
            return [False] * len(rows)
        self.seen = True
        by_lr: dict[float, list[float]] = {}
        for r in rows:
            by_lr.setdefault(r["lr"], []).append(r[self.metric])
        means = {lr: float(np.nanmean(v)) if np.isfinite(v).any() else -math.inf for lr, v in by_lr.items()}
        best = max(means.values())
        return [means[r["lr"]] < best - self.margin or bool(r["collapsed"]) for r in rows]


def tune_lr(
    batch_sizes: Sequence[int] = BATCH_SIZES,
    lrs: Sequence[float] | Mapping[int, Sequence[float]] = lr_grid(),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 3,
    data: mdata.Data | None = None,
    *,
    progress: bool = False,
    concurrency: int | None = None,
    halving: float | None = None,
    **fields: Any,
) -> pd.DataFrame:
    """Train every (batch size, lr, seed) for ``epochs`` epochs with plain SGD.

    Each batch size is one engine running its lr x seed grid in lockstep, and the batch sizes
    train at the same time where the device allows (``trainer.train_many``, ``concurrency``);
    ``lrs`` is one list for every batch size, or a list per batch size. ``fields`` are further
    ``TrainConfig`` fields (holdout, train_limit, threads, device, engine, dtype, drop_last) over
    the science defaults (5,000 validation images, CPU, full batches only: at a large lr one
    small, noisy last step right before an evaluation can cost many points). Returns the
    concatenated histories: ``train``'s columns plus ``batch_size``, one row per replica and
    epoch; a replica that diverges stops there with ``diverged=True``. With ``halving`` (a
    margin in accuracy), each batch size's lrs race (``Halving``): after the first epoch the
    ones that are out of the running stop.
    """
    batch_sizes = check_positive_ints("batch_sizes", batch_sizes)
    per = lrs if isinstance(lrs, Mapping) else dict.fromkeys(batch_sizes, lrs)
    configs = [grid_config(b, per[b], seeds, epochs=epochs, **fields) for b in batch_sizes]
    data = data if data is not None else mdata.load(dataset=configs[0].dataset)
    hooks = [{"stop": Halving(halving)} if halving is not None else {} for _ in configs]
    frames = []
    trained = train_many(configs, data, hooks=hooks, concurrency=concurrency)
    for config, result in zip(configs, trained, strict=True):
        h = result.history
        h.insert(0, "batch_size", config.batch_size)
        frames.append(h)
        if progress:
            b, n = config.batch_size, len(config.seeds)
            print(f"tune_lr: batch {b:>4}: {n} replicas, {result.seconds:.1f} s", flush=True)
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


# ------------------------------------------------------------------------- refined lr search

#: Learning rates the search never goes beyond: below 1e-4 nothing trains in a short budget and
#: above 10 plain SGD on this MLP diverges at every batch size.
LR_BOUNDS = (1e-4, 10.0)
# Relative slack when comparing lr ratios: proposals are rounded to 6 significant digits.
_RTOL = 1e-4


def lr_search_summary(history: pd.DataFrame) -> pd.DataFrame:
    """``lr_summary`` plus, per batch size and lr, n_collapsed (seeds at chance level at their
    last evaluation and not diverged: the history's ``collapsed`` flag, else validation accuracy
    below ``COLLAPSED_ACC``) and n_failed = n_diverged + n_collapsed. The summary that
    ``refine_lrs``, ``collapse_lr`` and ``best_lr_interval`` read."""
    last = final_rows(history)
    if "collapsed" in last.columns:
        collapsed = last["collapsed"].fillna(False).astype(bool)
    else:
        collapsed = last["val_acc"] < COLLAPSED_ACC
    last = last.assign(_collapsed=collapsed & ~last["diverged"].astype(bool))
    counts = last.groupby(["batch_size", "lr"])["_collapsed"].sum().rename("n_collapsed").reset_index()
    out = lr_summary(history).merge(counts, on=["batch_size", "lr"], how="left")
    out["n_collapsed"] = out["n_collapsed"].astype(int)
    out["n_failed"] = out["n_diverged"].astype(int) + out["n_collapsed"]
    return out


def _failed(g: pd.DataFrame, metric: str) -> np.ndarray:
    """Per row of one batch size's summary: some seed diverged or collapsed, or no metric."""
    bad = g["n_diverged"].to_numpy() > 0
    if "n_collapsed" in g.columns:
        bad |= g["n_collapsed"].to_numpy() > 0
    return bad | g[metric].isna().to_numpy()


def _best_index(g: pd.DataFrame, metric: str) -> int | None:
    """Row position (in ``g``, sorted by lr) of the best lr among those that did not fail; the
    smallest lr on a tie; None when every lr failed."""
    ok = ~_failed(g, metric)
    if not ok.any():
        return None
    vals = np.where(ok, g[metric].to_numpy(float), -np.inf)
    return int(np.argmax(vals))


def _by_batch(summary: pd.DataFrame, metric: str) -> list[tuple[int, pd.DataFrame]]:
    need = {"batch_size", "lr", "n_diverged", metric}
    if missing := need - set(summary.columns):
        raise ValueError(f"summary lacks columns {sorted(missing)} (use lr_search_summary)")
    return [(int(b), g.sort_values("lr").reset_index(drop=True)) for b, g in summary.groupby("batch_size")]


def _round_lr(lr: float) -> float:
    return float(f"{lr:.6g}")


def _next_lrs(
    g: pd.DataFrame, metric: str, factor: float, coarse: float, bounds: tuple[float, float], ceiling: bool
) -> tuple[float, ...]:
    """The learning rates one batch size still needs (see ``refine_lrs``)."""
    lo, hi = bounds
    lrs = g["lr"].to_numpy(float)
    i = _best_index(g, metric)
    if i is None:  # every lr failed: step down from the smallest
        return (_round_lr(max(lrs[0] / coarse, lo)),) if lrs[0] > lo * (1 + _RTOL) else ()
    best, want = lrs[i], []
    if i == 0:  # the best is the smallest tried: extend the grid down
        if best > lo * (1 + _RTOL):
            want.append(max(best / coarse, lo))
    elif best / lrs[i - 1] > factor * (1 + _RTOL):
        want.append(math.sqrt(best * lrs[i - 1]))
    if i == len(lrs) - 1:  # the largest tried, and it did not fail: extend up
        if best < hi * (1 - _RTOL):
            want.append(min(best * coarse, hi))
    elif lrs[i + 1] / best > factor * (1 + _RTOL):
        want.append(math.sqrt(best * lrs[i + 1]))
    if ceiling:
        c = _collapse_row(g, metric)
        if np.isfinite(c["collapse_lr"]) and c["collapse_lr"] / c["max_ok_lr"] > factor * (1 + _RTOL):
            want.append(math.sqrt(c["collapse_lr"] * c["max_ok_lr"]))
    new = {_round_lr(v) for v in want}
    return tuple(sorted(v for v in new if not np.isclose(lrs, v, rtol=1e-6, atol=0).any()))


def refine_lrs(
    summary: pd.DataFrame,
    factor: float = math.sqrt(2),
    *,
    coarse: float = 3.0,
    bounds: tuple[float, float] = LR_BOUNDS,
    ceiling: bool = False,
    metric: str = "val_acc_mean",
) -> dict[int, tuple[float, ...]]:
    """Per batch size, the learning rates still to train so that its best lr is known within a
    factor ``factor``: the tried lrs next to the best on both sides at most ``factor`` away.

    ``summary``: ``lr_search_summary`` (or ``lr_summary``: then only divergence counts as
    failure) of every lr tried so far, e.g. a coarse pass at x2 or x3 (``lr_grid``); lrs are
    plain SGD step sizes. An lr fails when a seed diverged or collapsed to chance, or it has no
    ``metric``; the best is the one with the highest ``metric`` (mean validation accuracy over
    seeds) among those that did not fail. Per batch size, the lrs proposed are:

    - next to the best, the geometric midpoint with each neighbour more than ``factor`` away
      (a failed neighbour above bounds the search: nothing above it is proposed);
    - at an edge of what was tried (the best is the smallest, or the largest and nothing above
      failed), one step of ``coarse`` outward, clipped to ``bounds``;
    - when every lr failed, one step of ``coarse`` below the smallest;
    - with ``ceiling``, also the midpoint between the largest lr without a failure and the
      smallest failed lr above the best (``collapse_lr``) while they are more than ``factor``
      apart, so the collapse lr is known within ``factor`` as well.

    Train the proposals, add them to the summary and call again; an empty tuple means that
    batch size is done. Midpoints halve a log gap each round, so from a x3 grid two rounds
    bring a settled best within sqrt(2). The rounds are bounded: every proposal lies in
    ``bounds`` and, a bound itself apart, more than a factor sqrt(``factor``) from every lr
    tried, so only finitely many fit. Proposals are rounded to 6 significant digits.
    """
    if not (factor > 1 and coarse > 1):
        raise ValueError(f"need factor > 1 and coarse > 1; got {factor!r}, {coarse!r}")
    if not 0 < bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be 0 < low < high; got {bounds!r}")
    return {b: _next_lrs(g, metric, factor, coarse, bounds, ceiling) for b, g in _by_batch(summary, metric)}


def _collapse_row(g: pd.DataFrame, metric: str) -> dict[str, float]:
    """One batch size's ceiling (see ``collapse_lr``)."""
    lrs, bad = g["lr"].to_numpy(float), _failed(g, metric)
    i = _best_index(g, metric)
    above = np.flatnonzero(bad & (np.arange(len(lrs)) > (-1 if i is None else i)))
    j = int(above[0]) if len(above) else None
    ok_below = np.flatnonzero(~bad & (np.arange(len(lrs)) < (len(lrs) if j is None else j)))
    n_failed = g["n_diverged"].to_numpy() + (g["n_collapsed"].to_numpy() if "n_collapsed" in g else 0)
    nan = math.nan
    return {
        "best_lr": nan if i is None else float(lrs[i]),
        "max_ok_lr": float(lrs[ok_below[-1]]) if len(ok_below) else nan,
        "collapse_lr": nan if j is None else float(lrs[j]),
        "n_failed_at_collapse": nan if j is None else int(n_failed[j]),
        "n_seeds": int(g["n_seeds"].max()) if "n_seeds" in g else nan,
    }


def collapse_lr(summary: pd.DataFrame, metric: str = "val_acc_mean") -> pd.DataFrame:
    """Per batch size, where runs start to fail as the lr grows: the ceiling lies between
    max_ok_lr and collapse_lr.

    ``summary``: ``lr_search_summary`` (failure: a seed diverged or ended at chance level).
    Columns: batch_size; best_lr (as in ``refine_lrs``); collapse_lr, the smallest tried lr
    above the best at which some seed failed (NaN: none failed up to the largest tried);
    max_ok_lr, the largest tried lr below it at which none did; n_failed_at_collapse (seeds);
    n_seeds; ratio = collapse_lr / max_ok_lr (how well the ceiling is known). Failures below
    the best lr do not count: in a short budget a tiny lr can still be at chance, which is
    slowness, not instability. When every lr failed, best_lr and max_ok_lr are NaN and
    collapse_lr is the smallest tried.
    """
    rows = [{"batch_size": b, **_collapse_row(g, metric)} for b, g in _by_batch(summary, metric)]
    out = pd.DataFrame(rows)
    out["ratio"] = out["collapse_lr"] / out["max_ok_lr"]
    return out


def best_lr_interval(summary: pd.DataFrame, metric: str = "val_acc_mean") -> pd.DataFrame:
    """Per batch size, the best tried lr (as in ``refine_lrs``) and how well it is known.

    Columns: batch_size, lr, lr_low and lr_high (the tried lrs next to it: under a single peak
    the best lr lies between them; NaN at an edge of what was tried), within
    (max(lr / lr_low, lr_high / lr): the factor within which the best lr is known; inf at an
    edge), edge ("low", "high" or ""), ``metric`` at the best, and n_seeds. Batch sizes where
    every lr failed are left out.
    """
    rows = []
    for b, g in _by_batch(summary, metric):
        i = _best_index(g, metric)
        if i is None:
            continue
        lrs = g["lr"].to_numpy(float)
        low = float(lrs[i - 1]) if i > 0 else math.nan
        high = float(lrs[i + 1]) if i < len(lrs) - 1 else math.nan
        within = max(lrs[i] / low, high / lrs[i]) if i > 0 and i < len(lrs) - 1 else math.inf
        rows.append(
            {
                "batch_size": b,
                "lr": float(lrs[i]),
                "lr_low": low,
                "lr_high": high,
                "within": float(within),
                "edge": "low" if i == 0 else "high" if i == len(lrs) - 1 else "",
                metric: float(g.loc[i, metric]),
                "n_seeds": int(g.loc[i, "n_seeds"]) if "n_seeds" in g else math.nan,
            }
        )
    return pd.DataFrame(rows)


def search_lr(
    batch_sizes: Sequence[int] = BATCH_SIZES,
    lrs: Sequence[float] = lr_grid(),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 3,
    data: mdata.Data | None = None,
    *,
    factor: float = math.sqrt(2),
    coarse: float = 3.0,
    ceiling: bool = False,
    max_rounds: int = 8,
    progress: bool = False,
    concurrency: int | None = None,
    halving: float | None = None,
    **fields: Any,
) -> pd.DataFrame:
    """``tune_lr`` on the coarse grid ``lrs``, then rounds of ``refine_lrs`` proposals per batch
    size (each trained with ``tune_lr`` on the same seeds and budget) until none is left or
    after ``max_rounds`` rounds. Returns every round's history concatenated, with a
    ``search_round`` column (0 = the coarse pass); a (seed, lr) replica does not depend on the
    replicas it trains with, so the rows equal those of one grid holding every lr (without
    ``halving``, which races each round's lrs against each other only)."""
    data = data if data is not None else mdata.load(dataset=fields.get("dataset", "mnist"))
    race: dict[str, Any] = {"concurrency": concurrency, "halving": halving, "progress": progress}
    history = tune_lr(batch_sizes, lrs, seeds, epochs, data, **race, **fields)
    history.insert(1, "search_round", 0)
    for k in range(1, max_rounds + 1):
        todo = refine_lrs(lr_search_summary(history), factor, coarse=coarse, ceiling=ceiling)
        todo = {b: v for b, v in todo.items() if v}
        if not todo:
            break
        if progress:
            print(f"search_lr round {k}: {todo}", flush=True)
        more = tune_lr(list(todo), todo, seeds, epochs, data, **race, **fields)
        more.insert(1, "search_round", k)
        history = pd.concat([history, more], ignore_index=True)
    return history
