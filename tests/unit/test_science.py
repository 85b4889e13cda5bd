"""The science's numbers on synthetic frames: fits that recover known curves, grids that grow
until the optimum has neighbours, the fastest lr to a target, a seed's collapse lr, intervals over
seeds and the rate at which a rerun falls inside them."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from mlpmnist.analysis import compare
from mlpmnist.science import ceiling, intervals, presets, scaling, steps, tuning


def lasts(accuracy, batch_sizes=(32, 128), lrs=(0.025, 0.05, 0.1, 0.2), seeds=range(6), noise=0.0, rng=0):
    """One final row per (batch size, lr, seed): val_acc = ``accuracy(b, lr)`` + noise."""
    gen = np.random.default_rng(rng)
    rows = [
        {"batch_size": b, "lr": lr, "seed": s, "step": 100, "val_acc": accuracy(b, lr) + noise * gen.normal(),
         "test_acc": accuracy(b, lr), "diverged": False, "collapsed": False}
        for b in batch_sizes for lr in lrs for s in seeds
    ]  # fmt: skip
    return pd.DataFrame(rows)


def peaked(best: dict[int, float]):
    """Validation accuracy peaking at ``best[b]`` in log lr."""
    return lambda b, lr: 0.95 - 0.02 * np.log2(lr / best[b]) ** 2


def test_power_law_and_saturating_fits_recover_known_curves():
    b = np.array([8, 16, 32, 64, 128, 256, 512, 1024], float)
    p = scaling.power_law(b, 0.003 * b**0.5)
    assert p.params["slope"] == pytest.approx(0.5, abs=1e-9) and p.rms < 1e-9
    s = scaling.saturating(b, 0.2 / (1 + 64 / b))
    assert s.params["lr_max"] == pytest.approx(0.2, rel=1e-4) and s.params["b_noise"] == pytest.approx(
        64, rel=1e-4
    )
    fits = scaling.lr_fits(pd.DataFrame({"batch_size": b, "lr_interp": 0.2 / (1 + 64 / b)}))
    assert fits["rms_saturating"] < 1e-6 < fits["rms_power"] and fits["rms_ratio"] > 100
    with pytest.raises(ValueError, match="at least 3"):
        scaling.power_law(b[:2], b[:2])


def test_steps_fit_recovers_b_crit_and_its_sensitivity():
    b = np.array([8, 16, 32, 64, 128, 256, 512], float)
    fit = scaling.steps_fit(b, 1200 * (1 + 120 / b))
    assert fit.b_crit == pytest.approx(120, rel=1e-5) and fit.s_min == pytest.approx(1200, rel=1e-5)
    assert (fit.perfect_end, fit.diminishing_end) == pytest.approx((30, 480), rel=1e-5)
    sens = scaling.sensitivity(b, np.append(1200 * (1 + 120 / b[:-1]), np.nan))  # the largest never got there
    assert sens["all"] == pytest.approx(120, rel=1e-5) and sens["without_largest"] == pytest.approx(
        120, rel=1e-4
    )
    assert math.isnan(scaling.sensitivity(b[:3], 1200 * (1 + 120 / b[:3]))["without_smallest"])


def test_the_grid_grows_until_the_best_has_neighbours():
    frame = lasts(peaked({32: 0.0125, 128: 0.1}))
    more = tuning.grow(tuning.lr_summary(frame))
    assert more == {32: (0.0176777, 0.0125), 128: ()}  # 0.025 is the smallest tried: two steps down
    best = tuning.best_lrs(frame).set_index("batch_size")
    assert best.loc[128, "lr"] == 0.1 and best.loc[128, "inside"] and not best.loc[32, "inside"]
    assert best.loc[128, "lr_interp"] == pytest.approx(0.1, rel=1e-6)  # the parabola's vertex
    # An lr where a seed diverged is ruled out; a failed top lr does not extend the grid.
    frame.loc[(frame["batch_size"] == 128) & (frame["lr"] == 0.1) & (frame["seed"] == 0), "diverged"] = True
    best = tuning.best_lrs(frame).set_index("batch_size")
    assert best.loc[128, "lr"] in (0.05, 0.2)


def test_first_reaching_and_the_fastest_lr():
    rows = []
    for lr, per_step in ((0.05, 0.007), (0.1, 0.02), (0.2, 0.015)):
        for seed in range(3):
            for step in (10, 20, 30, 40, 50):
                rows.append(
                    {"batch_size": 64, "seed": seed, "lr": lr, "step": step, "val_acc": 0.5 + per_step * step}
                )
    first = steps.first_reaching(pd.DataFrame(rows), [0.8, 0.9])
    assert first.loc[np.isclose(first["lr"], 0.1) & (first["target"] == 0.9), "steps"].tolist() == [20.0] * 3
    assert first.loc[np.isclose(first["lr"], 0.05) & (first["target"] == 0.9), "steps"].isna().all()
    table = steps.fastest(first, 0.9)
    assert table.iloc[0][["lr", "steps", "inside"]].tolist() == [0.1, 20.0, True]
    assert steps._grow(first, 0.9) == {64: ()}


def test_a_seeds_collapse_lr_is_the_first_failure_above_the_tuned_lr():
    frame = lasts(lambda b, lr: 0.95, batch_sizes=(128,), lrs=(0.1, 0.141421, 0.2, 0.282843), seeds=range(3))
    frame.loc[(frame["seed"] == 0) & (frame["lr"] >= 0.2), "val_acc"] = 0.5  # fails from 0.2
    frame.loc[(frame["seed"] == 1) & (frame["lr"] == 0.282843), "diverged"] = True
    per = ceiling.per_seed(frame, tuned=0.1, threshold=0.85).set_index("seed")
    assert per.loc[0, "collapse_lr"] == 0.2 and per.loc[0, "ok_lr"] == 0.141421
    assert per.loc[1, "collapse_lr"] == 0.282843 and math.isnan(per.loc[2, "collapse_lr"])
    corr = ceiling.correlation(pd.DataFrame({"a": range(20), "b": range(20)}), "a", "b", n_resamples=50)
    assert corr["rho"] == pytest.approx(1.0) and corr["n"] == 20


def test_a_correlation_with_a_constant_column_is_undefined_without_a_warning():
    # The control: every seed collapses at the same lr, so there is no rank order to correlate.
    table = pd.DataFrame({"lam": [1.9, 2.0, 1.8, 2.1], "collapse": [1.6] * 4})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corr = ceiling.correlation(table, "lam", "collapse", n_resamples=50)
    assert math.isnan(corr["rho"]) and math.isnan(corr["low"]) and corr["n"] == 4


def test_the_tuned_lr_statistics_remake_the_choice_on_each_resample():
    best = {32: 0.05, 128: 0.1, 512: 0.1}
    frame = lasts(peaked(best), batch_sizes=tuple(best), lrs=(0.025, 0.05, 0.1, 0.2), noise=0.002)
    stats = intervals.tuning_statistics(frame)
    assert stats["lr@32"] == pytest.approx(0.05, rel=0.05) and "slope" in stats and "b_noise" in stats
    heads = intervals.two_sets(frame, frame, intervals.tuning_statistics, n_resamples=30)
    assert set(heads["name"]) == set(stats) and heads["inside"].dropna().all()


def test_a_rerun_falls_inside_a_calibrated_interval_less_often_than_95_percent():
    # Two independent estimates each vary: for a median of 10 normal values the rate is about 0.8.
    values = np.random.default_rng(1).normal(size=2000)
    rate = intervals.inside_rate(values, 10, reps=400, n_resamples=200)
    assert 0.7 < rate < 0.92
    assert math.isnan(intervals.inside_rate([1.0], 10))


def test_differences_are_judged_by_a_test_of_the_difference():
    gen = np.random.default_rng(0)
    a, b = gen.normal(0.90, 0.01, 60), gen.normal(0.92, 0.01, 60)
    d = compare.median_difference(a, b, resamples=999)
    assert d["enough"] and d["low"] < d["difference"] < d["high"] and d["low"] > 0 and d["p"] < 1e-6
    few = compare.median_difference(a[:4], b[:4])
    assert not few["enough"] and math.isnan(few["p"])
    share = compare.proportion_difference(12, 60, 2, 60)
    assert share["difference"] == pytest.approx(-10 / 60) and share["high"] < 0 and share["p"] < 0.01
    assert compare.holm([0.01, 0.04, float("nan"), 0.03]) == pytest.approx(
        [0.03, 0.06, float("nan"), 0.06], nan_ok=True
    )


def test_presets_check_their_seed_sets():
    p = presets.preset(True)
    assert not set(p.sets[0]) & set(p.sets[1]) and p.common["threads"] == 1
    assert presets.preset(False).sets == (tuple(range(10)), tuple(range(10, 20)))
    # Seed text reads as run.ipynb reads seeds.
    assert presets.preset(False, sets=["0-2", "3 4 5"]).sets == ((0, 1, 2), (3, 4, 5))
    assert presets.sqrt2_grid(0.0125, 3) == (0.0125, 0.0176777, 0.025)
