"""Intervals over seeds: the cluster bootstrap (coverage with a known answer, failed resamples,
determinism, seeds moving together), binomial tail rates, and the headline statistics on
synthetic frames whose true values are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats as sps

from mlpmnist.science import (
    Interval,
    b_crit,
    b_simple_at_target,
    headline_intervals,
    lr_slope,
    proportion_interval,
    seed_bootstrap,
    seed_bootstrap_many,
    steps_intervals,
    steps_table,
    tail_rate,
)
from mlpmnist.science.intervals import resample_seeds, seed_groups, steps_statistics


def _median(frame: pd.DataFrame) -> float:
    return float(np.median(frame["value"].to_numpy()))


def _normal(n: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame({"seed": np.arange(n) + 100, "value": np.random.default_rng(seed).normal(size=n)})


# ------------------------------------------------------------------------------ the bootstrap


def test_one_row_per_seed_agrees_with_scipy() -> None:
    frame = _normal(15, 0)
    ours = seed_bootstrap(frame, _median, n_resamples=2000, rng=1)
    ref = sps.bootstrap(
        (frame["value"].to_numpy(),),
        np.median,
        n_resamples=4000,
        method="percentile",
        rng=np.random.default_rng(2),
    ).confidence_interval
    assert ours.estimate == pytest.approx(np.median(frame["value"]))
    assert ours.n_seeds == 15 and ours.n_failed == 0 and ours.n_resamples == 2000
    width = ref.high - ref.low
    assert abs(ours.low - ref.low) < 0.15 * width and abs(ours.high - ref.high) < 0.15 * width


@pytest.mark.slow
def test_median_interval_covers_the_true_median() -> None:
    hits, widths = [], []
    for k in range(60):
        iv = seed_bootstrap(_normal(12, k), _median, n_resamples=250, rng=k)
        hits.append(iv.contains(0.0))
        widths.append(iv.width)
    assert np.mean(hits) >= 0.85
    # The median of 12 normal values has SD about 1.25 / sqrt(12) = 0.36: a 95% width near 1.4.
    assert 0.8 < np.mean(widths) < 2.0


def _power_law(n_seeds: int, rng: int) -> pd.DataFrame:
    """y = 0.01 B^0.5 times a seed effect shared across batch sizes and independent noise."""
    g = np.random.default_rng(rng)
    bs = np.array([16, 32, 64, 128, 256, 512, 1024])
    seed_effect = g.normal(0, 0.3, n_seeds)
    rows = [
        {"batch_size": b, "seed": s, "y": 0.01 * b**0.5 * math.exp(seed_effect[s] + g.normal(0, 0.3))}
        for s in range(n_seeds)
        for b in bs
    ]
    return pd.DataFrame(rows)


def _slope(frame: pd.DataFrame) -> float:
    gm = frame.groupby("batch_size")["y"].apply(lambda v: np.log(v).mean())
    return float(np.polyfit(np.log(gm.index.to_numpy(float)), gm.to_numpy(), 1)[0])


@pytest.mark.slow
def test_power_law_slope_interval_holds_the_truth_and_shrinks_with_seeds() -> None:
    few = seed_bootstrap(_power_law(5, 0), _slope, n_resamples=300)
    many = seed_bootstrap(_power_law(40, 0), _slope, n_resamples=300)
    assert few.contains(0.5) and many.contains(0.5)
    assert many.width < 0.5 * few.width
    assert abs(many.estimate - 0.5) < 0.05


def test_resample_moves_every_row_of_a_seed_and_relabels_repeats() -> None:
    frame = pd.DataFrame(
        [{"batch_size": b, "seed": s, "value": 10 * s + b} for b in (1, 2, 3) for s in (5, 6, 7, 8)]
    )
    groups = seed_groups(frame)
    out = resample_seeds(frame, groups, np.array([2, 2, 0, 3]))
    assert len(out) == 12 and sorted(out["seed"].unique()) == [0, 1, 2, 3]
    for new, source in enumerate([7, 7, 5, 8]):
        rows = out[out["seed"] == new].sort_values("batch_size")
        assert rows["batch_size"].tolist() == [1, 2, 3]
        assert rows["value"].tolist() == [10 * source + b for b in (1, 2, 3)]
    assert out.index.equals(pd.RangeIndex(12))  # no repeated labels for .loc lookups


def test_failed_resamples_are_counted_not_dropped() -> None:
    frame = pd.DataFrame({"seed": np.arange(10), "value": np.arange(10.0)})

    def fragile(f: pd.DataFrame) -> float:
        if 1.0 not in f["value"].to_numpy():
            raise ValueError("undefined without seed 1")
        return float(f["value"].mean()) if 0.0 in f["value"].to_numpy() else math.nan

    iv = seed_bootstrap(frame, fragile, n_resamples=1000, rng=3)
    # P(seed 0 or seed 1 not drawn) = 2 * 0.9^10 - 0.8^10 = 0.590.
    assert abs(iv.n_failed - 590) < 5 * math.sqrt(1000 * 0.59 * 0.41)
    assert iv.estimate == 4.5 and iv.low < 4.5 < iv.high
    assert "resamples undefined" in iv.text()

    def broken(f: pd.DataFrame) -> float:
        raise TypeError("a bug, not an undefined statistic")

    with pytest.raises(TypeError):
        seed_bootstrap(frame, broken, n_resamples=10)


def test_fixed_rng_is_deterministic() -> None:
    frame = _normal(10, 4)
    a = seed_bootstrap(frame, _median, n_resamples=300, rng=7)
    assert a == seed_bootstrap(frame, _median, n_resamples=300, rng=7)
    assert a != seed_bootstrap(frame, _median, n_resamples=300, rng=8)


def test_one_seed_has_no_interval() -> None:
    iv = seed_bootstrap(_normal(1, 0), _median)
    assert math.isnan(iv.low) and math.isnan(iv.high) and iv.n_resamples == 0 and iv.n_seeds == 1


# ------------------------------------------------------------------------------- proportions


def test_wilson_and_exact_proportion_intervals() -> None:
    k, n, z = 4, 10, sps.norm.ppf(0.975)
    p = k / n
    center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    w = proportion_interval(k, n)
    assert (w.low, w.high) == pytest.approx((center - half, center + half), rel=1e-9)
    e = proportion_interval(k, n, method="exact")  # Clopper-Pearson: beta quantiles
    assert (e.low, e.high) == pytest.approx(
        (sps.beta.ppf(0.025, k, n - k + 1), sps.beta.ppf(0.975, k + 1, n - k))
    )
    assert e.low < w.low and w.high < e.high
    assert proportion_interval(0, 10).low == 0.0 and proportion_interval(0, 10).high > 0.2
    with pytest.raises(ValueError):
        proportion_interval(11, 10)


def test_tail_rate_counts_seeds_below_and_diverged() -> None:
    acc8 = [0.91, 0.84, 0.70, 0.93, 0.88, np.nan, 0.89, 0.80, 0.92, 0.90]  # 3 below, 1 diverged
    final = pd.DataFrame(
        [{"batch_size": 8, "lr": 0.1, "seed": s, "test_acc": a} for s, a in enumerate(acc8)]
        + [{"batch_size": 16, "lr": 0.1, "seed": s, "test_acc": 0.95} for s in range(10)]
    )
    r = tail_rate(final, below=0.85, where={"batch_size": 8, "lr": 0.1})
    assert (r.k, r.n, r.estimate, r.method) == (4, 10, 0.4, "wilson")
    assert r.low == pytest.approx(0.168, abs=1e-3) and r.high == pytest.approx(0.687, abs=1e-3)
    assert tail_rate(final, where={"batch_size": 16}).k == 0
    with pytest.raises(ValueError, match="several rows per seed"):
        tail_rate(final)


# ----------------------------------------------------------------------- headline statistics


def _tuning_rows(n_seeds: int, rng: int = 0) -> pd.DataFrame:
    """Final rows of an lr grid (x sqrt 2) whose validation accuracy peaks at 0.01 B^0.5, per
    batch size and seed up to a factor exp(0.15 z)."""
    g = np.random.default_rng(rng)
    lrs = [float(f"{0.01 * 2 ** (k / 2):.6g}") for k in range(14)]
    rows = []
    for b in (16, 64, 256, 1024):
        for s in range(n_seeds):
            peak = 0.01 * b**0.5 * math.exp(g.normal(0, 0.15))
            for lr in lrs:
                acc = 0.97 - 0.03 * math.log(lr / peak) ** 2 + g.normal(0, 0.002)
                rows.append(
                    {"batch_size": b, "seed": s, "lr": lr, "epoch": 2, "step": 100, "val_acc": acc}
                    | {"test_acc": acc, "val_loss": 0.1, "test_loss": 0.1, "diverged": False}
                )
    return pd.DataFrame(rows)


def _first_rows(n_seeds: int, rng: int = 0) -> pd.DataFrame:
    """``first_reaching``-like rows: S(B) = 2000 (1 + 300 / B) times noise, at a fast lr and a
    slower one (x1.3 steps); one batch size whose slow lr misses the target for one seed."""
    g = np.random.default_rng(rng)
    rows = []
    for b in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096):
        for s in range(n_seeds):
            steps = 2000 * (1 + 300 / b) * math.exp(g.normal(0, 0.08))
            for lr, mult in ((0.1, 1.0), (0.05, 1.3)):
                st = math.nan if (b == 4096 and lr == 0.05 and s == 0) else round(steps * mult)
                rows.append({"batch_size": b, "seed": s, "lr": lr, "steps": st, "examples": st * b})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_lr_slope_interval_on_a_known_power_law() -> None:
    iv = seed_bootstrap(_tuning_rows(8), lr_slope, n_resamples=100)
    assert iv.n_failed == 0 and iv.contains(0.5) and abs(iv.estimate - 0.5) < 0.08
    assert iv.width < 0.3


@pytest.mark.slow
def test_b_crit_and_steps_intervals_on_a_known_curve() -> None:
    first = _first_rows(8)
    out = seed_bootstrap_many(first, steps_statistics, n_resamples=100).set_index("name")
    fit = Interval(**out.loc["b_crit"])
    assert fit.contains(300.0) and 200 < fit.estimate < 450 and fit.n_failed == 0
    assert out.loc["b_crit", "estimate"] == pytest.approx(b_crit(first))
    assert Interval(**out.loc["s_min"]).contains(2000.0)
    table = steps_table(first)
    steps = out.loc[[f"steps@{b}" for b in table["batch_size"]]]
    assert np.allclose(steps["estimate"], table["steps"])
    assert (steps["low"] <= steps["estimate"]).all() and (steps["estimate"] <= steps["high"]).all()
    truth = 2000 * (1 + 300 / table["batch_size"].to_numpy(float))
    assert ((steps["low"].to_numpy() <= truth) & (truth <= steps["high"].to_numpy())).mean() >= 0.75
    # steps_intervals: the same numbers per batch size, from a bootstrap of its own.
    alone = steps_intervals(first, n_resamples=100)
    assert alone["batch_size"].tolist() == table["batch_size"].tolist()
    assert np.allclose(alone["estimate"], table["steps"])


def _noise(reached: list[bool]) -> pd.DataFrame:
    """``noise_scale_during_training``-like rows for one seed per entry of ``reached``: the
    last snapshot reaches 97% validation accuracy where True (B_simple 400 + seed there)."""
    frames = [
        pd.DataFrame(
            {
                "epoch": [0, 1, 2],
                "val_acc": [0.1, 0.9, 0.97 if r else 0.94],
                "b_simple": [50.0, 200.0, 400.0 + s],
            }
        ).assign(seed=s)
        for s, r in enumerate(reached)
    ]
    return pd.concat(frames, ignore_index=True)


def test_b_simple_is_undefined_on_resamples_without_a_seed_that_reached() -> None:
    noise = _noise([True, True, False, False, False, False])
    iv = seed_bootstrap(noise, lambda f: b_simple_at_target(f, 0.95), n_resamples=400, rng=0)
    assert iv.estimate == 400.5 and iv.low == 400.0 and iv.high == 401.0
    # Undefined when neither seed 0 nor seed 1 is drawn: P = (4/6)^6 = 0.088.
    assert abs(iv.n_failed - 0.0878 * 400) < 5 * math.sqrt(400 * 0.0878 * 0.9122)
    assert iv.n_failed > 0


def test_headline_intervals_rows() -> None:
    noise = _noise([True] * 4)
    tuned = pd.DataFrame({"seed": range(5), "test_acc": [0.981, 0.983, 0.979, 0.984, 0.982]})
    out = headline_intervals(
        tuning=_tuning_rows(4),
        first=_first_rows(4),
        tuned_last=tuned,
        noise=noise,
        target=0.95,
        n_resamples=30,
    )
    q = out.set_index("quantity")
    assert {
        "lr_slope",
        "b_crit",
        "s_min",
        "steps@16",
        "steps@4096",
        "tuned_test_acc",
        "b_simple_at_target",
    } <= set(q.index)
    assert list(out.columns[2:]) == list(Interval.__dataclass_fields__)
    assert q.loc["tuned_test_acc", "estimate"] == pytest.approx(0.9818)
    assert q.loc["b_simple_at_target", "estimate"] == pytest.approx(401.5)  # median of 400..403
    assert math.isnan(b_simple_at_target(noise, 0.99))  # no seed reached 99%
    assert (q["n_seeds"] == [4, 4, 4, *[4] * 9, 5, 4]).all()
