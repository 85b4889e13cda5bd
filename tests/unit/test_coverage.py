"""The intervals and the difference test have the coverage they claim at the study's seed counts
(10 seeds a batch size, 60 at batch 8), simulated from distributions shaped like the study's final
accuracies: a tight normal one (batch 90) and batch 8's heavy lower tail. A modest number of
simulations each, with fixed generators, so the test is exact from run to run; the bounds leave
about 2.5 Monte Carlo standard errors below the nominal level."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats as sps

from mlpmnist.analysis import compare, stats

NOMINAL = 0.95


def tight(rng: np.random.Generator, n: int) -> np.ndarray:
    """Like batch 90's seeds: about 97.2%, SD 0.15 points."""
    return rng.normal(0.972, 0.0015, n)


def heavy(rng: np.random.Generator, n: int) -> np.ndarray:
    """Like batch 8's seeds: most about 91.5%, a fifth spread down to 40%."""
    body = rng.normal(0.915, 0.012, n)
    tail = rng.uniform(0.40, 0.85, n)
    return np.where(rng.random(n) < 0.2, tail, body)


def true_median(draw) -> float:
    return float(np.median(draw(np.random.default_rng(12345), 2_000_000)))


def lower_bound(sims: int, level: float = NOMINAL) -> float:
    return level - 2.5 * np.sqrt(level * (1 - level) / sims)


@pytest.mark.parametrize(("draw", "n", "sims"), [(tight, 10, 300), (heavy, 10, 300), (heavy, 60, 150)])
def test_the_medians_bootstrap_interval_covers_the_true_median(draw, n, sims):
    rng, truth = np.random.default_rng(n), true_median(draw)
    hits = 0
    for _ in range(sims):
        lo, hi = stats.bootstrap_ci(draw(rng, n))
        hits += lo <= truth <= hi
    assert hits / sims >= lower_bound(sims), hits / sims


@pytest.mark.parametrize(("na", "nb", "sims"), [(10, 10, 300), (60, 10, 150)])
def test_the_difference_of_medians_interval_covers_the_true_difference(na, nb, sims):
    rng = np.random.default_rng(na + nb)
    shift = 0.01  # b's seeds end one point higher
    hits = 0
    for i in range(sims):
        res = compare.median_difference(heavy(rng, na), heavy(rng, nb) + shift, seed=i)
        hits += res["low"] <= shift <= res["high"]
    assert hits / sims >= lower_bound(sims), hits / sims


@pytest.mark.parametrize(("na", "nb"), [(10, 10), (60, 10)])
def test_the_difference_test_rejects_equal_configurations_at_most_at_its_level(na, nb):
    rng, sims = np.random.default_rng(7 * na + nb), 400
    rejected = sum(
        compare.median_difference(heavy(rng, na), heavy(rng, nb), resamples=1)["p"] < compare.LEVEL
        for _ in range(sims)
    )
    se = np.sqrt(compare.LEVEL * (1 - compare.LEVEL) / sims)
    assert rejected / sims <= compare.LEVEL + 2.5 * se, rejected / sims


def test_holm_keeps_the_family_wise_error_over_the_studys_pairs():
    # The study: 8 batch sizes, one with 60 seeds; all equal here, so any claimed difference is false.
    rng, sims, sizes = np.random.default_rng(3), 100, [60, 10, 10, 10, 10, 10, 10, 10]
    false = 0
    for _ in range(sims):
        samples = [heavy(rng, n) for n in sizes]
        p = [compare.median_difference(a, b, resamples=1)["p"] for a, b in itertools.combinations(samples, 2)]
        assert len(p) == 28
        false += min(compare.holm(p)) < compare.LEVEL
    se = np.sqrt(compare.LEVEL * (1 - compare.LEVEL) / sims)
    assert false / sims <= compare.LEVEL + 2.5 * se, false / sims


@pytest.mark.parametrize("n", [10, 60])
def test_the_wilson_interval_of_a_tail_share_covers_it(n):
    # summary's tail share (k of n below 85%) at batch 8's 20%: exact coverage over every k.
    share = 0.2
    covered = 0.0
    for k in range(n + 1):
        ci = sps.binomtest(k, n).proportion_ci(NOMINAL, method="wilson")
        covered += sps.binom.pmf(k, n, share) * (ci.low <= share <= ci.high)
    assert covered >= 0.93, covered


@pytest.mark.parametrize(("n1", "n2"), [(10, 10), (60, 10)])
def test_newcombes_interval_of_a_difference_of_shares_covers_it(n1, n2):
    p1, p2 = 0.2, 0.1
    covered = 0.0
    for k1, k2 in itertools.product(range(n1 + 1), range(n2 + 1)):
        res = compare.proportion_difference(k1, n1, k2, n2)
        weight = sps.binom.pmf(k1, n1, p1) * sps.binom.pmf(k2, n2, p2)
        covered += weight * (res["low"] <= p2 - p1 <= res["high"])
    assert covered >= 0.93, covered


def test_below_min_seeds_nothing_is_claimed():
    few = np.array([0.9, 0.91, 0.92, 0.93])
    assert len(few) < stats.MIN_SEEDS == compare.MIN_SEEDS
    res = compare.median_difference(few, few + 0.05)
    assert not res["enough"] and np.isnan(res["p"]) and np.isnan(res["low"])
