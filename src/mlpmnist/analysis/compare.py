"""Whether two configurations differ, judged by a test of the difference itself, never by whether
two intervals overlap: of medians (``median_difference``) or shares (``proportion_difference``),
Holm-adjusted (``holm``) over every pair of a results frame's configurations (``pairwise``), or for
two results frames (``two``: ``mlpmnist summary --a ... --b ...``). Below ``MIN_SEEDS`` values a
side nothing is claimed: NaN intervals and p-values, ``enough`` False. Values in the inputs' units.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.stats as sps

from mlpmnist.analysis.columns import config_columns, config_label
from mlpmnist.analysis.stats import CONFIDENCE, MIN_SEEDS, Values, configurations, final, finite

__all__ = ["MIN_SEEDS", "holm", "median_difference", "pairwise", "proportion_difference", "two"]

RESAMPLES = 4999
#: The (family-wise) level at which a p-value may call a difference (see ``claimed``).
LEVEL = 0.05
NAN_RESULT = {"low": math.nan, "high": math.nan, "p": math.nan, "enough": False}
#: A comparison's columns from ``median_difference``.
PAIR_COLUMNS = ("n_a", "n_b", "median_a", "median_b", "difference", "low", "high", "p")


def median_difference(
    a: Values, b: Values, *, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, float | bool]:
    """Over each side's finite values: ``n_a``, ``n_b``, ``median_a``, ``median_b`` (NaN from none),
    ``difference`` (median_b - median_a), its percentile bootstrap interval ``low``, ``high`` (each
    side resampled on its own), the two-sided Mann-Whitney U ``p``, ``enough``."""
    a, b = finite(a), finite(b)
    med_a, med_b = (float(np.median(v)) if len(v) else math.nan for v in (a, b))
    head = {"n_a": len(a), "n_b": len(b), "median_a": med_a, "median_b": med_b, "difference": med_b - med_a}
    if min(len(a), len(b)) < MIN_SEEDS:
        return head | NAN_RESULT
    gen = np.random.default_rng(seed)
    da = np.median(a[gen.integers(len(a), size=(resamples, len(a)))], axis=1)
    db = np.median(b[gen.integers(len(b), size=(resamples, len(b)))], axis=1)
    low, high = np.percentile(db - da, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    p = float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return head | {"low": float(low), "high": float(high), "p": p, "enough": True}


def proportion_difference(k1: int, n1: int, k2: int, n2: int) -> dict[str, float | bool]:
    """k2/n2 - k1/n1 with Newcombe's (1998) hybrid score interval (method 10, from each share's
    Wilson interval), Fisher's exact two-sided ``p`` and ``enough``."""
    p1, p2 = k1 / n1, k2 / n2
    if min(n1, n2) < MIN_SEEDS:
        return {"difference": p2 - p1, **NAN_RESULT}
    (l1, u1), (l2, u2) = (
        sps.binomtest(k, n).proportion_ci(CONFIDENCE, "wilson") for k, n in ((k1, n1), (k2, n2))
    )
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    p = float(sps.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)
    return {"difference": d, "low": float(low), "high": float(high), "p": p, "enough": True}


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of the p-values ``p`` (NaN kept): it bounds the family-wise error."""
    vals = np.asarray(p, dtype=float)
    ok = np.flatnonzero(np.isfinite(vals))
    order = ok[np.argsort(vals[ok])]
    out = np.full(len(vals), np.nan)
    # the k-th smallest p times (m - k + 1), never below a smaller one's
    out[order] = np.minimum(1.0, np.maximum.accumulate((len(order) - np.arange(len(order))) * vals[order]))
    return out.tolist()


def claimed(row: pd.Series | dict, p: str = "p_holm") -> bool:
    """Whether ``row`` (of ``pairwise`` or ``two``) shows a difference: its p-value ``p`` is below
    ``LEVEL`` and the bootstrap interval of the difference excludes zero (never from NaN)."""
    return bool(row[p] < LEVEL and (row["low"] > 0 or row["high"] < 0))


def pairwise(df: pd.DataFrame) -> pd.DataFrame:
    """Every pair of configurations of ``df`` (grouped as ``stats.summary``) compared on final test
    accuracy, one row each: ``a``, ``b`` (in words, in the summary's order), ``PAIR_COLUMNS`` and
    ``p_holm``, Holm-adjusted over the pairs with ``MIN_SEEDS`` values a side."""
    rows = []
    for (ca, ga, _), (cb, gb, _) in itertools.combinations(configurations(df), 2):
        labels = {"a": config_label(ca, list(ca)), "b": config_label(cb, list(cb))}
        rows.append(labels | median_difference(ga["test_acc"], gb["test_acc"]))
    out = pd.DataFrame(rows, columns=["a", "b", *PAIR_COLUMNS])
    out["p_holm"] = holm(out["p"].tolist()) if len(out) else []
    return out


def two(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Two results frames of one configuration each, compared in one row: ``a``, ``b`` (in words, on
    the config columns where they differ), ``PAIR_COLUMNS``, ``failed_a``, ``failed_b`` of
    ``replicas_a``, ``replicas_b`` and ``proportion_difference``'s as ``failed_difference`` (b - a),
    ``failed_low``, ``failed_high``, ``failed_p``."""
    fa, fb = final(a), final(b)
    ra, rb = fa.iloc[0], fb.iloc[0]
    cols = [c for c in config_columns(fa) if c in fb.columns and str(ra[c]) != str(rb[c])]
    ka, kb = int(fa["failed"].sum()), int(fb["failed"].sum())
    share = proportion_difference(ka, len(fa), kb, len(fb))
    row: dict[str, object] = {"a": config_label(ra, cols) if cols else "a"}
    row["b"] = config_label(rb, cols) if cols else "b"
    pair = median_difference(fa["test_acc"], fb["test_acc"])
    row |= {k: pair[k] for k in PAIR_COLUMNS}
    row |= {"failed_a": ka, "failed_b": kb, "replicas_a": len(fa), "replicas_b": len(fb)}
    row |= {f"failed_{k}": share[k] for k in ("difference", "low", "high")}
    return pd.DataFrame([row | {"failed_p": share["p"]}])
