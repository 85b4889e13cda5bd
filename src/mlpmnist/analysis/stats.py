"""Statistics of seed outcomes, numbers only, from the tidy results frame (one row per experiment x
replica x evaluation): accuracies and dead-unit shares as fractions, losses in nats.

Final accuracy over seeds is heavy-tailed at small batch sizes (batch 8, lr 0.1: 20 seeds from
48.8% to 93.5%, median 90.8%, mean 86.0%), so a configuration is summarised by its median with a
bootstrap CI and its quartiles. A seed that diverged or collapsed to chance *failed*; one that
finished far below its configuration's median (``is_outlier``) is an *outlier*, counted apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from mlpmnist.analysis import columns
from mlpmnist.data import specs as datasets
from mlpmnist.training.health import COLLAPSED_ACC, chance_loss

Values = Sequence[float] | np.ndarray  # a configuration's values, NaN for a diverged seed

#: Below this many finite values a configuration gets no interval and no difference claimed: a
#: percentile bootstrap interval of the median of 4 values is little more than their range (at 5
#: seeds it covers 93%, simulated: tests/unit/test_coverage.py). Tables print the range instead.
MIN_SEEDS = 5
OUTLIER_ERROR_RATIO = 2.0  # this and the next two: the outlier rule (``is_outlier``)
OUTLIER_ROBUST_Z = 3.5
MAD_TO_SD = 1.4826  # MAD x this = SD for normal data
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
LAST_K = 3  # epochs averaged in test_acc_last3, last3_mean, last3_median
TAIL_BELOW = 0.85  # the tail: seeds ending below it (where batch 8's at lr 0.1 sits)
MIN_CORR_SEEDS = 3  # a rank correlation over fewer seeds says nothing


def is_outlier(acc: Values) -> np.ndarray:
    """Which seeds of ONE configuration (final test accuracies ``acc``) ended far below the others
    (bool array): error rate over ``OUTLIER_ERROR_RATIO`` times the median's AND accuracy over
    ``OUTLIER_ROBUST_Z`` robust SDs below the median. NaN (diverged) is never one, nor either of two.
    The second condition alone flags jitter where seeds agree closely, the first alone the tail of a
    noisy configuration; 3.5 is Iglewicz and Hoaglin's cut-off (tests/unit/test_stats.py)."""
    a = np.asarray(acc, dtype=float)
    out = np.zeros(a.shape, dtype=bool)
    ok = np.isfinite(a)
    if ok.sum() < 2:
        return out
    v = a[ok]
    median = float(np.median(v))
    robust_sd = MAD_TO_SD * float(np.median(np.abs(v - median)))
    far_error = (1 - v) > OUTLIER_ERROR_RATIO * (1 - median)
    # With a MAD of zero any seed below the median is "far" here; condition 1 still has to hold.
    far_below = (median - v) > OUTLIER_ROBUST_Z * robust_sd
    out[ok] = far_error & far_below
    return out


def epoch_ends(df: pd.DataFrame) -> pd.DataFrame:
    """Rows evaluated at the end of an epoch (an integral ``epoch``)."""
    e = pd.to_numeric(df["epoch"], errors="coerce")
    return df[np.isfinite(e) & (e == np.round(e))]


def _diverged(df: pd.DataFrame) -> pd.Series:
    if "diverged" in df.columns:
        return df["diverged"].fillna(False).astype(bool)
    return ~np.isfinite(df["test_acc"].astype(float))


def final(df: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment x replica: its last evaluation, ``test_acc_last3`` (mean test accuracy
    of its last ``LAST_K`` epoch ends; NaN if it diverged), flags ``diverged``, ``collapsed`` (the
    stored flag, else ``health``'s rule), ``failed`` (either) and ``outlier`` (not failed, but
    ``is_outlier`` among its configuration's replicas, ``lr`` included); row i is replica
    ``_replica_id`` i."""
    if df.empty:
        raise ValueError("the results frame is empty; run a sweep first")
    if missing := {"seed", "epoch", "test_acc"} - set(df.columns):
        raise ValueError(f"the results frame lacks the columns {sorted(missing)}")
    df = df.assign(_rid=_replica_id(df), diverged=_diverged(df))
    df = df.sort_values(["_rid", *[c for c in ("epoch", "step") if c in df.columns]], kind="stable")
    last = df.groupby("_rid", sort=True).tail(1).set_index("_rid")
    last["diverged"] = df.groupby("_rid")["diverged"].any()
    # A replica flagged diverged by its loss (above DIVERGED_LOSS) may still have a finite accuracy
    # from its wild weights: it is no outcome of training, so no statistic sees it.
    last.loc[last["diverged"], "test_acc"] = np.nan
    ends = epoch_ends(df[~df["diverged"]])
    last["test_acc_last3"] = ends.groupby("_rid")["test_acc"].apply(lambda s: s.tail(LAST_K).mean())
    last.loc[last["diverged"], "test_acc_last3"] = np.nan
    if "collapsed" in last.columns:
        collapsed = last["collapsed"].fillna(False).astype(bool)
    else:
        loss = last["train_loss"] if "train_loss" in last.columns else pd.Series(0.0, index=last.index)
        chance = columns.dataset_names(last).map(lambda name: chance_loss(datasets.get(name).n_classes))
        collapsed = (last["test_acc"] < COLLAPSED_ACC) | (loss > chance)
    last["collapsed"] = collapsed & ~last["diverged"]
    last["failed"] = last["diverged"] | last["collapsed"]
    cfg = columns.config_columns(last)
    acc = last["test_acc"].astype(float)
    by = [last[c] for c in cfg] if cfg else np.zeros(len(last), int)
    far = acc.groupby(by, dropna=False).transform(lambda s: is_outlier(s.to_numpy())).astype(bool)
    last["outlier"] = far & ~last["failed"]  # a collapsed run is also far below: counted once
    return last.reset_index(drop=True)


def _replica_id(df: pd.DataFrame) -> pd.Series:
    """Each row's replica, numbered 0, 1, ... in order of first appearance."""
    return df.groupby(columns.replica_columns(df), dropna=False, sort=False).ngroup()


def mark_failed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``final``'s ``failed`` and ``outlier`` flags on every row of each replica's history."""
    out = df.drop(columns=[c for c in ("outlier", "failed") if c in df.columns])
    fin, rid = final(out), _replica_id(out).to_numpy()
    for col in ("failed", "outlier"):
        out[col] = fin[col].to_numpy()[rid]
    return out


def bootstrap_ci(values: Values) -> tuple[float, float]:
    """(low, high) percentile bootstrap interval of the median of ``values`` (NaN dropped), from
    a fixed generator; (NaN, NaN) from one value, (c, c) from constant ones. Not BCa: its acceleration
    is unreliable for the median of ~10 values (coverage: tests/unit/test_coverage.py)."""
    v = finite(values)
    if len(v) < 2:
        return float("nan"), float("nan")
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    kw = {"n_resamples": BOOTSTRAP_RESAMPLES, "rng": np.random.default_rng(BOOTSTRAP_SEED)}
    res = sps.bootstrap((v,), np.median, confidence_level=CONFIDENCE, method="percentile", **kw)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci(values: Values) -> float:
    """Half-width of the Student-t interval of the mean of ``values`` (NaN dropped); NaN below two."""
    v = finite(values)
    if len(v) < 2:
        return float("nan")
    return float(sps.t.ppf(0.5 + CONFIDENCE / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def finite(values: Values | pd.Series) -> np.ndarray:
    """The finite ``values`` (a diverged seed's NaN dropped) as a float array."""
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def _of(values: np.ndarray | pd.Series, f: Callable) -> float:
    """``f(values)`` as a float, NaN when there are none."""
    return float(f(values)) if len(values) else np.nan


def _spread(acc: np.ndarray) -> dict[str, float]:
    """median, q1, q3 of ``acc`` (finite values), NaN each when it is empty."""
    q1, median, q3 = np.quantile(acc, [0.25, 0.5, 0.75]) if len(acc) else (np.nan,) * 3
    return {"median": float(median), "q1": float(q1), "q3": float(q3)}


#: The study this project reproduces: its test accuracy (fraction) per batch size, one seed each,
#: after ``REFERENCE_EPOCHS`` epochs on MNIST at lr ``REFERENCE_LR``, and its headline accuracy.
REFERENCE_ACCURACY = {
    8: 0.9148,
    16: 0.9400,
    32: 0.9682,
    48: 0.9701,
    64: 0.9693,
    90: 0.9745,
    128: 0.9711,
    150: 0.9696,
}
REFERENCE_HEADLINE = 0.9764
REFERENCE_EPOCHS = 15
REFERENCE_LR = 0.1


def reference(rows: pd.DataFrame) -> tuple[float, float]:
    """The reference study's (single-seed value, headline) for the replicas ``rows`` of one
    configuration: NaN unless they ran on its dataset, at its lr, epochs and one of its batch sizes."""
    nan = (float("nan"), float("nan"))
    if list(columns.dataset_names(rows).unique()) != ["mnist"] or "lr" not in rows.columns:
        return nan
    epochs = rows["epochs"] if "epochs" in rows.columns else rows["epoch"].max()
    if not np.allclose(rows["lr"].astype(float), REFERENCE_LR) or np.any(epochs != REFERENCE_EPOCHS):
        return nan
    sizes = rows["batch_size"].unique() if "batch_size" in rows.columns else []
    single = REFERENCE_ACCURACY.get(int(sizes[0]), np.nan) if len(sizes) == 1 else np.nan
    return float(single), REFERENCE_HEADLINE


def summary_by(summ: pd.DataFrame) -> list[str]:
    """The configuration columns of a ``summary`` or ``dead_units`` frame (those before ``n``)."""
    return list(summ.columns[: summ.columns.get_loc("n")])


def configurations(df: pd.DataFrame) -> Iterator[tuple[dict, pd.DataFrame, pd.DataFrame]]:
    """Per configuration (its ``group_columns``, sorted by them): those values, ``final`` rows and
    history rows."""
    fin = final(df)
    by = columns.group_columns(fin)
    if missing := [c for c in by if c not in fin.columns]:
        raise ValueError(f"cannot group by {missing}: not columns of the frame")
    # One group id over the final rows and the history together (NaN keys compare equal here).
    keys = pd.concat([fin[by], df[by]], ignore_index=True)
    gid = keys.groupby(by, dropna=False, sort=True).ngroup().to_numpy()
    fin_gid, hist_gid = gid[: len(fin)], gid[len(fin) :]
    for i in np.unique(fin_gid):
        g = fin[fin_gid == i]
        yield {c: g[c].iloc[0] for c in by}, g, df[hist_gid == i]


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy over seeds, one row per configuration (``group_columns``), sorted by
    them; after them: ``n`` replicas, ``n_failed`` (= ``n_diverged`` + ``n_collapsed``),
    ``n_outlier``; over the replicas that did not diverge, ``median`` with its bootstrap CI
    ``median_lo``/``median_hi``, ``q1``, ``q3``, ``mean`` with its Student-t half-width ``mean_ci95``
    (both CIs NaN below ``MIN_SEEDS``), ``sd``, ``min``, ``max``, ``train_median``, ``last3_mean``,
    ``last3_median``; ``final_epoch``, ``best_epoch`` (latest with the highest median) and its
    ``best_epoch_median``; ``reference``, ``reference_headline``; ``n_tail`` (below ``TAIL_BELOW``,
    diverged included) with its share's Wilson interval ``tail_lo``, ``tail_hi``."""
    rows = []
    for row, g, hist in configurations(df):
        ends = epoch_ends(hist[~_diverged(hist)]).groupby("epoch")["test_acc"].median().dropna()
        acc = finite(g["test_acc"])
        last3 = finite(g["test_acc_last3"])
        train = finite(g["train_acc"]) if "train_acc" in g.columns else np.array([])
        few = len(acc) < MIN_SEEDS  # no interval: the range says as much
        lo, hi = (np.nan, np.nan) if few else bootstrap_ci(acc)
        ref, headline = reference(g)
        tail = int((~(g["test_acc"].astype(float) >= TAIL_BELOW)).sum())  # NaN (diverged) counts
        ci = sps.binomtest(tail, len(g)).proportion_ci(CONFIDENCE, method="wilson")
        sd = float(acc.std(ddof=1)) if len(acc) > 1 else np.nan
        best = float(ends[::-1].idxmax()) if len(ends) else np.nan  # ties: the latest
        counts = {f"n_{c}": int(g[c].sum()) for c in ("failed", "collapsed", "diverged", "outlier")}
        q, ci95 = _spread(acc), np.nan if few else mean_ci(acc)
        # In this order: what comes before n is the configuration (``summary_by``).
        row |= {"n": len(g), **counts, "median": q["median"], "median_lo": lo, "median_hi": hi}
        row |= {"q1": q["q1"], "q3": q["q3"], "mean": _of(acc, np.mean), "mean_ci95": ci95, "sd": sd}
        row |= {"last3_mean": _of(last3, np.mean), "last3_median": _of(last3, np.median)}
        row |= {"final_epoch": int(g["epoch"].max()), "best_epoch": best, "best_epoch_median": _of(ends, max)}
        row |= {"reference": ref, "reference_headline": headline}
        row |= {"n_tail": tail, "tail_lo": float(ci.low), "tail_hi": float(ci.high)}
        row |= {"min": _of(acc, np.min), "max": _of(acc, np.max), "train_median": _of(train, np.median)}
        rows.append(row)
    return pd.DataFrame(rows)


REPRODUCTION_COLUMNS = ("reference", "median", "q1", "q3", "n", "epoch", "reference_percentile")


def reproduction(df: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (as ``summary``) with a reference value: ``reference`` (its single seed), our
    ``median``, ``q1``, ``q3``, ``n`` (not diverged), final ``epoch`` and ``reference_percentile``:
    where the reference falls among our seeds (0-100, ties counted half)."""
    rows, by_cols = [], []
    for row, g, _ in configurations(df):
        ref, _headline = reference(g)
        acc = g["test_acc"].astype(float).dropna().to_numpy()
        by_cols = list(row)
        if np.isfinite(ref):
            pctl = float(sps.percentileofscore(acc, ref, kind="mean")) if len(acc) else np.nan
            row |= {"reference": ref, **_spread(acc), "n": len(acc), "epoch": int(g["epoch"].max())}
            rows.append(row | {"reference_percentile": pctl})
    return pd.DataFrame(rows, columns=[*by_cols, *REPRODUCTION_COLUMNS])


def _rank_corr(x: pd.Series, y: pd.Series) -> tuple[float, float]:
    """Spearman's rank correlation and its two-sided p-value; NaN with fewer than ``MIN_CORR_SEEDS``
    pairs or a constant side, and a NaN p below ``MIN_SEEDS``."""
    ok = x.notna() & y.notna()
    if ok.sum() < MIN_CORR_SEEDS or x[ok].nunique() < 2 or y[ok].nunique() < 2:
        return float("nan"), float("nan")
    res = sps.spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue) if ok.sum() >= MIN_SEEDS else float("nan")


def dead_units(df: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (as ``summary``), over its replicas that did not diverge: ``n``,
    ``first_epoch``, ``final_epoch``; per hidden layer k the median dead fraction ``dead_k_first`` and
    ``dead_k_final``; ``wnorm_1_final`` (median; NaN without ``wnorm_1``); ``rank_corr``, ``rank_corr_p``
    of the last layer's dead fraction with the test accuracy. ``ValueError`` without ``dead_*`` columns."""
    layers = columns.dead_columns(df)
    if not layers:
        raise ValueError("the frame has no dead_* columns (records made before they were stored)")
    rows = []
    for row, g, hist in configurations(df):
        g, ends = g[~g["diverged"]], epoch_ends(hist)
        first = ends[ends["epoch"] == ends["epoch"].min()]
        row |= {"n": len(g), "first_epoch": int(ends["epoch"].min()), "final_epoch": int(hist["epoch"].max())}
        for c in layers:
            row |= {f"{c}_first": float(first[c].median()), f"{c}_final": float(g[c].median())}
        row["wnorm_1_final"] = float(g["wnorm_1"].median()) if "wnorm_1" in g.columns else np.nan
        rho, p = _rank_corr(g[layers[-1]], g["test_acc"])
        rows.append(row | {"rank_corr": rho, "rank_corr_p": p})
    return pd.DataFrame(rows)


def per_epoch(df: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (as ``summary``) and epoch (the index), over the replicas that have not
    diverged: ``test_acc_median``, ``test_acc_q1``, ``test_acc_q3``, mean ``train_loss``,
    ``test_loss`` and ``replicas``."""
    if df.empty:
        raise ValueError("the results frame is empty; run a sweep first")
    by = columns.group_columns(df)
    ok = epoch_ends(df[~_diverged(df)])
    g = ok.assign(epoch=ok["epoch"].astype(int)).groupby([*by, "epoch"], dropna=False)
    acc, names = g["test_acc"], ["test_acc_median", "test_acc_q1", "test_acc_q3", "train_loss", "test_loss"]
    parts = [acc.median(), acc.quantile(0.25), acc.quantile(0.75)]
    parts += [g["train_loss"].mean(), g["test_loss"].mean()]
    return pd.concat(parts, axis=1, keys=names).assign(replicas=g.size())
