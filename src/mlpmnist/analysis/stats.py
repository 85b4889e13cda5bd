"""Statistics of seed outcomes, numbers only: medians with bootstrap intervals, quartiles,
failed seeds and outliers, the reference study's values, dead units, per-epoch medians.

At a fixed lr the final test accuracy over seeds is heavy-tailed at small batch sizes (at
batch 8, lr 0.1, 20 seeds ranged from 48.8% to 93.5%, median 90.8%, mean 86.0%) and a single
epoch is a noisy snapshot (single seeds jump ~1.5 points between epochs at batch 128). So a
configuration is summarised by its median over seeds with a bootstrap CI and its quartiles,
the mean with a Student-t CI beside it, and the mean of the last ``LAST_K`` epochs. A seed that
diverged or collapsed to chance *failed*; one that finished far below its configuration's
median (``is_outlier``) is an *outlier*, counted apart: an outcome, not a failure.

Functions take the tidy results frame (one row per experiment x replica x evaluation) or a frame
made from it, and return numbers: accuracies and dead-unit shares are fractions in [0, 1],
losses mean cross-entropy in nats. ``tables`` makes text for reading, ``findings`` sentences.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from mlpmnist.analysis.columns import (
    config_columns,
    dataset_names,
    dead_columns,
    group_columns,
    replica_columns,
)
from mlpmnist.data import specs as datasets
from mlpmnist.training.health import COLLAPSED_ACC, chance_loss

# The outlier rule (see ``is_outlier``).
#: Below this many finite values a configuration gets no interval and no difference claimed: a
#: percentile bootstrap interval of the median of 4 values is little more than their range (at 5
#: seeds it covers 93%, simulated: tests/unit/test_coverage.py). Tables print the range instead.
MIN_SEEDS = 5
OUTLIER_ERROR_RATIO = 2.0
OUTLIER_ROBUST_Z = 3.5
MAD_TO_SD = 1.4826  # MAD x this = SD for normal data
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
LAST_K = 3  # epochs averaged in test_acc_last3, last3_mean, last3_median
# The tail: seeds ending below this accuracy (batch 8's heavy lower tail at lr 0.1 sits there).
TAIL_BELOW = 0.85
MIN_CORR_SEEDS = 3  # a rank correlation over fewer seeds says nothing

# --------------------------------------------------------------------------- outliers, final


def is_outlier(acc: Sequence[float] | np.ndarray) -> np.ndarray:
    """The outlier rule: which seeds of ONE configuration ended far below the others.

    ``acc`` holds the final test accuracies (fractions) of one configuration's seeds; returns
    a bool array of the same length, True for a seed whose

    1. error rate is more than ``OUTLIER_ERROR_RATIO`` = 2 times the configuration's median
       error rate, AND
    2. accuracy lies more than ``OUTLIER_ROBUST_Z`` = 3.5 robust SDs below the median, the
       robust SD being 1.4826 x the median absolute deviation (MAD).

    NaN (a diverged seed) is never an outlier: divergence and collapse are failures, flagged on
    their own (``final``). With one seed nothing is an outlier; with two neither can be (each
    lies exactly one MAD from their median).

    Condition 2 alone would flag ordinary epoch-to-epoch jitter where seeds agree closely;
    condition 1 alone the heavy lower tail of a noisy configuration (batch 8 at lr 0.1). 3.5
    is Iglewicz and Hoaglin's cut-off for the modified z-score; with 3, whether batch 8's
    80.72% is flagged would hang on how many other seeds were run. Both are worked through on
    measured seeds in tests/test_stats.py (the outlier-rule tests).
    """
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
    """One row per experiment x replica: its last evaluation (all of that row's columns),
    ``test_acc_last3`` (mean test accuracy of its last ``LAST_K`` epoch-end evaluations, fewer
    if it ran fewer; NaN if it diverged) and the status flags, all bool:

    - ``diverged``: the replica diverged (its final metrics are NaN);
    - ``collapsed``: its last evaluation was at chance (the store's ``collapsed`` flag of that
      row; without it, test accuracy < ``health.COLLAPSED_ACC`` or training loss above the
      dataset's chance level);
    - ``failed``: diverged or collapsed;
    - ``outlier``: it did not fail, but ``is_outlier`` flags it among the replicas of its
      configuration (same config columns, ``lr`` included) on the final test accuracy.
    """
    return _final(df).reset_index(drop=True)


def _replica_id(df: pd.DataFrame) -> pd.Series:
    return df.groupby(replica_columns(df), dropna=False, sort=False).ngroup()


def _final(df: pd.DataFrame) -> pd.DataFrame:
    """``final``, indexed by ``_replica_id``."""
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
        chance = dataset_names(last).map(lambda name: chance_loss(datasets.get(name).n_classes))
        collapsed = (last["test_acc"] < COLLAPSED_ACC) | (loss > chance)
    last["collapsed"] = collapsed & ~last["diverged"]
    last["failed"] = last["diverged"] | last["collapsed"]
    cfg = config_columns(last)
    acc = last["test_acc"].astype(float)
    by = [last[c] for c in cfg] if cfg else np.zeros(len(last), int)
    far = acc.groupby(by, dropna=False).transform(lambda s: is_outlier(s.to_numpy())).astype(bool)
    last["outlier"] = far & ~last["failed"]  # a collapsed run is also far below: counted once
    return last


def best_key(df: pd.DataFrame, keys: Sequence[str] | None = None) -> tuple[str, float]:
    """Of the experiments ``keys`` of the results frame ``df`` (default: all, in key order), the
    one with the highest median final test accuracy over its replicas that did not diverge
    (ties: the first of ``keys``), and that median (a fraction; NaN when all diverged): whose
    models a notebook or ``figures`` shows by default. ``ValueError`` when none is in ``df``."""
    keys = [k for k in (sorted(df["key"].unique()) if keys is None else keys) if k in set(df["key"])]
    if not keys:
        raise ValueError("none of the experiments asked for is in the results frame")
    medians = final(df[df["key"].isin(keys)]).groupby("key")["test_acc"].median()
    best = max(keys, key=lambda k: medians.get(k, np.nan) if np.isfinite(medians.get(k, np.nan)) else -np.inf)
    return best, float(medians.get(best, np.nan))


def mark_failed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the replica's ``failed`` and ``outlier`` flags of ``final`` (bool) on every
    row of its history, so figures can draw a failed or outlying seed's whole curve apart.
    The per-row ``diverged`` and ``collapsed`` columns are left as they are."""
    out = df.drop(columns=[c for c in ("outlier", "failed") if c in df.columns])
    fin, rid = _final(out), _replica_id(out)
    for col in ("failed", "outlier"):
        out[col] = fin[col].reindex(rid).to_numpy()
    return out


# ------------------------------------------------------------------------------- intervals


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[..., float] = np.median,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """(low, high) bootstrap confidence interval of ``statistic`` over ``values`` (NaN
    dropped), in the values' units, from ``scipy.stats.bootstrap`` with 9,999 resamples and a
    fixed generator, so the same data give the same interval.

    The percentile method: for the median of ~10 values BCa's jackknife acceleration is
    unreliable (and NaN for constant data); a percentile interval stays within the data and,
    simulated (400 normal samples each), covered the true median 95.5%, 94.5% and 94.8% of the
    time at n = 5, 10 and 20. One value gives (NaN, NaN); constant values give (c, c).
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return float("nan"), float("nan")
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    kw = {"n_resamples": BOOTSTRAP_RESAMPLES, "rng": np.random.default_rng(BOOTSTRAP_SEED)}
    res = sps.bootstrap((v,), statistic, confidence_level=confidence, method="percentile", **kw)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student-t confidence interval of the mean of ``values`` (NaN
    dropped), in their units; NaN for fewer than two values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return float("nan")
    return float(sps.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def overlap(lo1: float, hi1: float, lo2: float, hi2: float) -> bool:
    """Whether two intervals overlap; an unknown (NaN) bound counts as overlapping, since it
    cannot separate anything."""
    if not all(np.isfinite([lo1, hi1, lo2, hi2])):
        return True
    return lo1 <= hi2 and lo2 <= hi1


def _spread(acc: np.ndarray) -> dict[str, float]:
    """median, q1, q3 of ``acc`` (finite values), NaN each when it is empty."""
    q1, median, q3 = np.quantile(acc, [0.25, 0.5, 0.75]) if len(acc) else (np.nan,) * 3
    return {"median": float(median), "q1": float(q1), "q3": float(q3)}


# ------------------------------------------------------------------------------- reference


def reference(rows: pd.DataFrame) -> tuple[float, float]:
    """The reference study's (single-seed value, headline) for the replicas ``rows`` of one
    configuration, fractions, from their dataset's spec (``datasets.get(name).reference``).
    Both NaN unless all rows share one dataset that has a reference, its lr
    (``Reference.lr``) and its number of epochs (``Reference.epochs``: the ``epochs`` column,
    else the last ``epoch``); the value is NaN also where it has none for the rows' batch size."""
    nan = (float("nan"), float("nan"))
    names = dataset_names(rows).unique()
    if len(names) != 1 or names[0] not in datasets.names() or "lr" not in rows.columns:
        return nan
    ref = datasets.get(names[0]).reference
    epochs = rows["epochs"] if "epochs" in rows.columns else rows["epoch"].max()
    if ref is None or not np.allclose(rows["lr"].astype(float), ref.lr) or np.any(epochs != ref.epochs):
        return nan
    sizes = rows["batch_size"].unique() if "batch_size" in rows.columns else []
    return float(ref.accuracy.get(int(sizes[0]), np.nan) if len(sizes) == 1 else np.nan), float(ref.headline)


# --------------------------------------------------------------------------------- summary

STAT_COLUMNS = (
    "n", "n_failed", "n_collapsed", "n_diverged", "n_outlier", "median", "median_lo", "median_hi", "q1", "q3",
    "mean", "mean_ci95", "sd", "last3_mean", "last3_median", "final_epoch", "best_epoch", "best_epoch_median",
    "reference", "reference_headline", "n_tail", "tail_lo", "tail_hi", "min", "max", "train_median",
)  # fmt: skip


def summary_by(summ: pd.DataFrame) -> list[str]:
    """The configuration columns of a ``summary`` frame (those that are not statistics)."""
    return [c for c in summ.columns if c not in STAT_COLUMNS]


def configurations(
    df: pd.DataFrame, by: Sequence[str] | None = None
) -> Iterator[tuple[dict, pd.DataFrame, pd.DataFrame]]:
    """Per configuration, sorted by ``by`` (default ``group_columns``): (its ``by`` values, its
    ``final`` rows, its history rows)."""
    fin = final(df)
    by = group_columns(fin) if by is None else list(by)
    if missing := [c for c in by if c not in fin.columns]:
        raise ValueError(f"cannot group by {missing}: not columns of the frame")
    # One group id over the final rows and the history together (NaN keys compare equal here).
    keys = pd.concat([fin[by], df[by]], ignore_index=True)
    gid = keys.groupby(by, dropna=False, sort=True).ngroup().to_numpy() if by else np.zeros(len(keys), int)
    fin_gid, hist_gid = gid[: len(fin)], gid[len(fin) :]
    for i in np.unique(fin_gid):
        g = fin[fin_gid == i]
        yield {c: g[c].iloc[0] for c in by}, g, df[hist_gid == i]


def summary(df: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Per configuration (grouped by ``by``; default ``group_columns(df)``: batch size and
    every other varying config column), the final test accuracy over seeds. Columns, after
    ``by``:

    - ``n``: replicas; ``n_failed`` = ``n_diverged`` + ``n_collapsed``; ``n_outlier``: replicas
      that finished far below the others (``final``), not counted as failed;
    - ``median`` with its 95% bootstrap CI ``median_lo``, ``median_hi`` (``bootstrap_ci``),
      quartiles ``q1``, ``q3``; ``mean`` with the Student-t 95% CI half-width ``mean_ci95``;
      ``sd``; ``min``, ``max``: over every replica that did not diverge, collapsed ones and
      outliers included (outcomes of the configuration; the median is robust to them). With
      fewer than ``MIN_SEEDS`` such replicas both intervals are NaN (the range is all they give);
    - ``train_median``: the median final training accuracy (mean over the last evaluation's steps);
    - ``last3_mean``, ``last3_median``: the same over each replica's last-``LAST_K``-epoch mean;
    - ``final_epoch``; ``best_epoch`` (a float: NaN when no replica finished an epoch) and
      ``best_epoch_median``: the (latest) epoch with the highest median test accuracy, and that median;
    - ``reference``, ``reference_headline``: the reference study's where they apply
      (``reference``), else NaN;
    - ``n_tail``: replicas ending below ``TAIL_BELOW`` (diverged ones included), and the Wilson
      95% interval of that share, ``tail_lo``, ``tail_hi`` (``scipy.stats.binomtest``).

    Accuracies are fractions in [0, 1]. One row per configuration, sorted by ``by``.
    """
    rows = []
    for row, g, hist in configurations(df, by):
        ends = epoch_ends(hist[~_diverged(hist)]).groupby("epoch")["test_acc"].median().dropna()
        acc = g["test_acc"].astype(float).to_numpy()
        acc = acc[np.isfinite(acc)]
        last3 = g["test_acc_last3"].astype(float).dropna().to_numpy()
        few = len(acc) < MIN_SEEDS  # no interval: the range says as much
        lo, hi = (np.nan, np.nan) if few else bootstrap_ci(acc)
        train = g["train_acc"].astype(float).dropna() if "train_acc" in g.columns else pd.Series([])
        ref, headline = reference(g)
        tail = int((~(g["test_acc"].astype(float) >= TAIL_BELOW)).sum())  # NaN (diverged) counts
        ci = sps.binomtest(tail, len(g)).proportion_ci(CONFIDENCE, method="wilson")
        row |= {"n_tail": tail, "tail_lo": float(ci.low), "tail_hi": float(ci.high)}
        row |= {f"n_{c}": int(g[c].sum()) for c in ("failed", "collapsed", "diverged", "outlier")}
        row |= _spread(acc) | {"median_lo": lo, "median_hi": hi, "mean_ci95": np.nan if few else mean_ci(acc)}
        row |= {
            "min": float(acc.min()) if len(acc) else np.nan,
            "max": float(acc.max()) if len(acc) else np.nan,
            "train_median": float(train.median()) if len(train) else np.nan,
        }
        row |= {
            "n": len(g),
            "mean": float(acc.mean()) if len(acc) else np.nan,
            "sd": float(acc.std(ddof=1)) if len(acc) > 1 else np.nan,
            "last3_mean": float(last3.mean()) if len(last3) else np.nan,
            "last3_median": float(np.median(last3)) if len(last3) else np.nan,
            "final_epoch": int(g["epoch"].max()),
            "best_epoch": float(ends[::-1].idxmax()) if len(ends) else np.nan,  # ties: the latest
            "best_epoch_median": float(ends.max()) if len(ends) else np.nan,
            "reference": ref,
            "reference_headline": headline,
        }
        rows.append(row)
    by = [c for c in rows[0] if c not in STAT_COLUMNS]
    return pd.DataFrame(rows, columns=[*by, *STAT_COLUMNS])


# ---------------------------------------------------------------------------- reproduction

REPRODUCTION_COLUMNS = ("reference", "median", "q1", "q3", "n", "epoch", "reference_percentile")


def reproduction(df: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Per configuration (default as ``summary``) that the reference study has a value for
    (``reference``): ``reference`` (its single seed, fraction), our ``median``, ``q1``, ``q3``
    of the final test accuracy (fractions, over replicas that did not diverge), ``n`` (those
    replicas), ``epoch`` (our final epoch) and ``reference_percentile``: the percentile (0-100)
    of the reference value among our seeds, ``scipy.stats.percentileofscore``, ties counted half."""
    rows, by_cols = [], []
    for row, g, _ in configurations(df, by):
        ref, _headline = reference(g)
        acc = g["test_acc"].astype(float).dropna().to_numpy()
        by_cols = list(row)
        if np.isfinite(ref):
            pctl = float(sps.percentileofscore(acc, ref, kind="mean")) if len(acc) else np.nan
            row |= {"reference": ref, **_spread(acc), "n": len(acc), "epoch": int(g["epoch"].max())}
            rows.append(row | {"reference_percentile": pctl})
    return pd.DataFrame(rows, columns=[*by_cols, *REPRODUCTION_COLUMNS])


# ------------------------------------------------------------------------------ dead units


def dead_layers(dead: pd.DataFrame) -> list[str]:
    """The layers ('dead_1', 'dead_2', ...) that a ``dead_units`` frame has columns for, in order."""
    return [c.removesuffix("_final") for c in dead.columns if re.fullmatch(r"dead_\d+_final", c)]


def dead_by(dead: pd.DataFrame) -> list[str]:
    """The configuration columns of a ``dead_units`` frame (those before ``n``)."""
    return list(dead.columns[: dead.columns.get_loc("n")])


def _rank_corr(x: pd.Series, y: pd.Series) -> tuple[float, float]:
    """Spearman's rank correlation and its two-sided p-value (the test of no correlation); NaN
    with fewer than ``MIN_CORR_SEEDS`` pairs or a constant side, and a NaN p below ``MIN_SEEDS``."""
    ok = x.notna() & y.notna()
    if ok.sum() < MIN_CORR_SEEDS or x[ok].nunique() < 2 or y[ok].nunique() < 2:
        return float("nan"), float("nan")
    res = sps.spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue) if ok.sum() >= MIN_SEEDS else float("nan")


def dead_units(df: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Per configuration (default as ``summary``), over its replicas that did not diverge:
    ``n`` (those replicas), ``first_epoch``, ``final_epoch``; per hidden layer k the median
    dead fraction ``dead_k_first`` after the first epoch and ``dead_k_final`` at the end
    (fractions of the layer's units); ``wnorm_1_final``, the median Frobenius norm of the first
    layer's weights at the end (NaN without ``wnorm_1``); ``rank_corr``: Spearman's rank
    correlation across seeds between the last hidden layer's final dead fraction and the final
    test accuracy (NaN with fewer than ``MIN_CORR_SEEDS`` seeds or constant values) and
    ``rank_corr_p``, its two-sided p-value (NaN below ``MIN_SEEDS`` seeds).

    Raises ``ValueError`` when the frame has no ``dead_*`` columns (older records)."""
    layers = dead_columns(df)
    if not layers:
        raise ValueError("the frame has no dead_* columns (records made before they were stored)")
    rows = []
    for row, g, hist in configurations(df, by):
        g, ends = g[~g["diverged"]], epoch_ends(hist)
        first = ends[ends["epoch"] == ends["epoch"].min()]
        row |= {"n": len(g), "first_epoch": int(ends["epoch"].min()), "final_epoch": int(hist["epoch"].max())}
        for c in layers:
            row |= {f"{c}_first": float(first[c].median()), f"{c}_final": float(g[c].median())}
        row["wnorm_1_final"] = float(g["wnorm_1"].median()) if "wnorm_1" in g.columns else np.nan
        rho, p = _rank_corr(g[layers[-1]], g["test_acc"])
        rows.append(row | {"rank_corr": rho, "rank_corr_p": p})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- epochs


def per_epoch(df: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Per configuration (default as ``summary``) and epoch, over the replicas that have not
    diverged: test accuracy ``test_acc_median``, ``test_acc_q1``, ``test_acc_q3`` (fractions),
    mean ``train_loss`` and ``test_loss`` (nats), and ``replicas`` (a count). Indexed by the
    configuration and ``epoch`` (int)."""
    if df.empty:
        raise ValueError("the results frame is empty; run a sweep first")
    by = group_columns(df) if by is None else list(by)
    ok = epoch_ends(df[~_diverged(df)])
    g = ok.assign(epoch=ok["epoch"].astype(int)).groupby([*by, "epoch"], dropna=False)
    acc, names = g["test_acc"], ["test_acc_median", "test_acc_q1", "test_acc_q3", "train_loss", "test_loss"]
    parts = [
        acc.median(),
        acc.quantile(0.25),
        acc.quantile(0.75),
        g["train_loss"].mean(),
        g["test_loss"].mean(),
    ]
    return pd.concat(parts, axis=1, keys=names).assign(replicas=g.size())
