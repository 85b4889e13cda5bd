"""Whether two configurations differ: each difference judged by a test of the difference itself,
never by whether two intervals overlap.

- ``median_difference``: the difference of the two medians (b minus a) with a percentile
  bootstrap interval (each sample resampled on its own), and the two-sided Mann-Whitney U test's
  p-value (do values of one tend to be larger?).
- ``proportion_difference``: the difference of two shares (k of n below a threshold, say) with
  Newcombe's hybrid score interval (from the two Wilson intervals), and Fisher's exact test.
- ``holm``: p-values adjusted for the number of comparisons (Holm's step-down), when several pairs
  are compared at once.
- ``pairwise``: every pair of a results frame's configurations by ``median_difference``, Holm over
  all of them: what ``findings`` may call a difference.
- ``two``: two results frames of one configuration each, by both tests (``mlpmnist summary --a
  ... --b ...``).

With fewer than ``MIN_SEEDS`` values per side no difference is claimed: the functions return NaN
intervals and p-values, and say so (``enough`` False). Values and differences are in the units of
the inputs (fractions for accuracies).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.stats as sps

from mlpmnist.analysis.columns import config_columns, config_label
from mlpmnist.analysis.stats import MIN_SEEDS, configurations, final

__all__ = ["MIN_SEEDS", "holm", "median_difference", "pairwise", "proportion_difference", "two"]

CONFIDENCE = 0.95
RESAMPLES = 4999
#: The (family-wise) level at which a p-value may call a difference (see ``claimed``).
LEVEL = 0.05
PAIR_COLUMNS = ("a", "b", "n_a", "n_b", "median_a", "median_b", "difference", "low", "high", "p", "p_holm")


def _finite(v: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    return a[np.isfinite(a)]


def median_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, float | bool]:
    """median(b) - median(a), its 95% percentile bootstrap interval ``low``/``high``, the
    Mann-Whitney U test's two-sided ``p`` and ``enough`` (both sides have ``MIN_SEEDS`` values;
    else the interval and p are NaN). NaN values (diverged seeds) are left out."""
    a, b = _finite(a), _finite(b)
    diff = float(np.median(b) - np.median(a)) if len(a) and len(b) else math.nan
    if min(len(a), len(b)) < MIN_SEEDS:
        return {"difference": diff, "low": math.nan, "high": math.nan, "p": math.nan, "enough": False}
    gen = np.random.default_rng(seed)
    da = np.median(a[gen.integers(len(a), size=(resamples, len(a)))], axis=1)
    db = np.median(b[gen.integers(len(b), size=(resamples, len(b)))], axis=1)
    low, high = np.percentile(db - da, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    p = float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return {"difference": diff, "low": float(low), "high": float(high), "p": p, "enough": True}


def proportion_difference(k1: int, n1: int, k2: int, n2: int) -> dict[str, float | bool]:
    """k2/n2 - k1/n1 with Newcombe's (1998) hybrid score 95% interval (method 10, built from the
    Wilson intervals of each share) and Fisher's exact test's two-sided ``p``; ``enough`` as in
    ``median_difference`` (on n1 and n2)."""
    p1, p2 = k1 / n1, k2 / n2
    if min(n1, n2) < MIN_SEEDS:
        return {"difference": p2 - p1, "low": math.nan, "high": math.nan, "p": math.nan, "enough": False}
    l1, u1 = _wilson(k1, n1)
    l2, u2 = _wilson(k2, n2)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    p = float(sps.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)
    return {"difference": d, "low": low, "high": high, "p": p, "enough": True}


def _wilson(k: int, n: int) -> tuple[float, float]:
    ci = sps.binomtest(k, n).proportion_ci(CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of the p-values ``p`` (NaN kept as NaN): each adjusted p is
    compared with the level as it is, and the family-wise error rate stays at or below it."""
    vals = np.asarray(p, dtype=float)
    ok = np.flatnonzero(np.isfinite(vals))
    order = ok[np.argsort(vals[ok])]
    out = np.full(len(vals), np.nan)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * vals[i]))
        out[i] = running
    return out.tolist()


def claimed(row: pd.Series | dict, p: str = "p_holm") -> bool:
    """Whether ``row`` (of ``pairwise`` or ``two``) shows a difference: its p-value ``p`` (Holm's
    for ``pairwise``) is below ``LEVEL`` and the bootstrap interval of the difference of medians
    excludes zero, so the rank test and the medians agree; never below ``MIN_SEEDS`` (NaN)."""
    return bool(row[p] < LEVEL and (row["low"] > 0 or row["high"] < 0))


def pairwise(df: pd.DataFrame, by: Sequence[str] | None = None, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Every pair of configurations of the results frame ``df`` (grouped as ``stats.summary``,
    default: batch size and every other varying config column), compared on their seeds' final
    test accuracies (diverged seeds left out) by ``median_difference``: ``a``, ``b`` (each
    configuration in words, ``columns.config_label``; ``a`` first in the summary's order),
    ``n_a``, ``n_b`` (finite values), ``median_a``, ``median_b``, ``difference`` = median_b -
    median_a with its 95% bootstrap interval ``low``, ``high`` (fractions), the Mann-Whitney
    ``p`` and ``p_holm``: Holm-adjusted over every pair with ``MIN_SEEDS`` values a side (NaN
    for the others). ``claimed`` says where a difference is claimed. One row per pair."""
    groups = list(configurations(df, by))
    rows = []
    for (ca, ga, _), (cb, gb, _) in itertools.combinations(groups, 2):
        a, b = (g["test_acc"].astype(float).to_numpy() for g in (ga, gb))
        res = median_difference(a, b, resamples=resamples)
        fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
        rows.append(
            {
                "a": config_label(ca, list(ca)),
                "b": config_label(cb, list(cb)),
                "n_a": len(fa),
                "n_b": len(fb),
                "median_a": float(np.median(fa)) if len(fa) else math.nan,
                "median_b": float(np.median(fb)) if len(fb) else math.nan,
                **{k: res[k] for k in ("difference", "low", "high", "p")},
            }
        )
    out = pd.DataFrame(rows, columns=list(PAIR_COLUMNS[:-1]))
    out["p_holm"] = holm(out["p"].tolist()) if len(out) else []
    return out


def two(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Two results frames of one configuration each, compared: one row with ``a``, ``b`` (each
    configuration in words, on the config columns where they differ), ``n_a``, ``n_b``,
    ``median_a``, ``median_b``, ``difference`` (b minus a) with its 95% bootstrap interval
    ``low``, ``high`` and the Mann-Whitney ``p`` (``median_difference``, on the final test
    accuracies of the seeds that did not diverge), and ``failed_a``, ``failed_b`` (failed seeds:
    diverged or collapsed), ``failed_difference`` (b's share minus a's) with Newcombe's interval
    ``failed_low``, ``failed_high`` and Fisher's ``failed_p`` (``proportion_difference``).
    Fractions; NaN intervals and p-values below ``MIN_SEEDS`` seeds a side."""
    fa, fb = final(a), final(b)
    ra, rb = fa.iloc[0], fb.iloc[0]
    cols = [c for c in config_columns(fa) if c in fb.columns and str(ra[c]) != str(rb[c])]
    acc_a, acc_b = (f["test_acc"].astype(float).to_numpy() for f in (fa, fb))
    med = median_difference(acc_a, acc_b)
    ka, kb = int(fa["failed"].sum()), int(fb["failed"].sum())
    share = proportion_difference(ka, len(fa), kb, len(fb))
    fin_a, fin_b = acc_a[np.isfinite(acc_a)], acc_b[np.isfinite(acc_b)]
    row = {
        "a": config_label(ra, cols) if cols else "a",
        "b": config_label(rb, cols) if cols else "b",
        "n_a": len(fin_a),
        "n_b": len(fin_b),
        "median_a": float(np.median(fin_a)) if len(fin_a) else math.nan,
        "median_b": float(np.median(fin_b)) if len(fin_b) else math.nan,
        **{k: med[k] for k in ("difference", "low", "high", "p")},
        "failed_a": ka,
        "failed_b": kb,
        "replicas_a": len(fa),
        "replicas_b": len(fb),
        **{f"failed_{k}": share[k] for k in ("difference", "low", "high")},
        "failed_p": share["p"],
    }
    return pd.DataFrame([row])
