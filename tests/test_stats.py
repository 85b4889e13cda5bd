"""Statistics of seed outcomes, on synthetic histories shaped like ``results.load``'s frame
(measured final accuracies) and on one small real training run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pytest

from mlpmnist import stats
from mlpmnist.results import frame, make_record
from mlpmnist.train import TrainConfig, train

# Measured: batch 8, lr 0.1, 15 epochs, 20 seeds (percent).
B8 = [48.79, 61.42, 80.72, 82.29, 83.84, 83.91, 84.43, 90.21, 90.36, 90.48]
B8 += [91.15, 91.26, 91.38, 91.42, 92.74, 92.85, 92.86, 93.34, 93.45, 93.54]
B8_FIVE = [82.29, 91.15, 93.34, 80.72, 91.38]  # the default sweep's seeds 0-4
# Batch 128, 10 seeds: one last-epoch dip among the others (epoch-to-epoch jitter).
B128 = [96.8, 96.9, 97.0, 97.1, 97.2, 97.3, 97.35, 97.4, 97.5, 95.7]
# Batch 16, 10 seeds: one seed far below the rest.
B16 = [89.04, 94.7, 94.9, 95.1, 95.3, 95.4, 95.5, 95.6, 95.8, 96.0]

CONFIG = dict(
    epochs=5,
    momentum=0.0,
    weight_decay=0.0,
    schedule="constant",
    hidden="64x64",
    engine="fast",
    train_limit=np.nan,
    holdout=0,
    drop_last=False,
    dtype="float32",
    max_shift=0,
)


def make_history(
    finals: Mapping[int, Sequence[float]], epochs: int = 5, lr: float = 0.1, **config
) -> pd.DataFrame:
    """A frame with ``results.load``'s columns: per batch size (``finals``' keys) one replica
    per listed final test accuracy (percent; NaN: the replica diverges in its last epoch).
    Curves rise to the final value; a final below 20% is a run that collapsed after epoch 2,
    its dead-unit fraction climbing towards 95%."""
    rows = []
    for bs, accs in finals.items():
        cfg = {**CONFIG, "epochs": epochs, **config, "batch_size": bs}
        key = f"bs{bs:04d}-lr{lr:g}-" + "-".join(f"{v}" for k, v in sorted(config.items()))
        dead = 0.1 / (epochs * math.sqrt(bs))  # smaller batches kill more units (made up)
        for seed, final_pct in enumerate(accs):
            final = final_pct / 100
            for e in range(1, epochs + 1):
                diverged = not math.isfinite(final) and e == epochs
                if not math.isfinite(final) and not diverged:
                    acc = 0.9
                elif final < 0.2:
                    acc = 0.9 if e <= 2 else final
                else:
                    acc = final - 0.02 * (epochs - e) / epochs + 0.001 * ((seed + e) % 3 - 1) * (e < epochs)
                collapse = acc < 0.2
                nan = float("nan")
                rows.append(
                    {
                        "key": key,
                        **cfg,
                        "lr": lr,
                        "seed": seed,
                        "epoch": e,
                        "step": e * math.ceil(60_000 / bs),
                        "train_loss": nan if diverged else (2.4 if collapse else 1.2 * (1 - acc)),
                        "test_loss": nan if diverged else (2.4 if collapse else 1.5 * (1 - acc)),
                        "train_acc": nan if diverged else min(1.0, acc + 0.01),
                        "test_acc": nan if diverged else acc,
                        "dead_1": nan if diverged else (0.95 * e / epochs if final < 0.2 else dead * e),
                        "dead_2": nan if diverged else (0.5 * e / epochs if final < 0.2 else dead * e / 2),
                        "wnorm_1": 10.0 + e,
                        "wnorm_2": 5.0 + e,
                        "wnorm_3": 2.0 + e,
                        "seconds": 1.0,
                        "eval_seconds": 0.1,
                        "diverged": diverged,
                        "collapsed": collapse and not diverged,
                    }
                )
    return pd.DataFrame(rows)


def pct(values) -> list[float]:
    return [round(100 * v, 2) for v in values]


# --------------------------------------------------------------------------- outlier rule


def test_outlier_rule_flags_the_two_failed_batch8_seeds_and_not_the_tail():
    flagged = np.asarray(B8)[stats.is_outlier(np.asarray(B8) / 100)]
    assert flagged.tolist() == [48.79, 61.42]  # 80.72 is the low end of a tail at 80.7-84.4


def test_outlier_rule_gives_the_same_verdict_on_five_seeds():
    assert not stats.is_outlier(np.asarray(B8_FIVE) / 100).any()


def test_outlier_rule_leaves_epoch_jitter_alone():
    assert not stats.is_outlier(np.asarray(B128) / 100).any()


def test_outlier_rule_flags_a_seed_far_below_a_tight_cluster():
    flagged = np.asarray(B16)[stats.is_outlier(np.asarray(B16) / 100)]
    assert flagged.tolist() == [89.04]


def test_outlier_rule_small_and_degenerate_inputs():
    assert stats.is_outlier([]).tolist() == []
    assert stats.is_outlier([0.5]).tolist() == [False]
    assert stats.is_outlier([0.97, 0.5]).tolist() == [False, False]  # two seeds: no majority
    assert stats.is_outlier([0.97, 0.97, 0.5, np.nan]).tolist() == [False, False, True, False]
    assert not stats.is_outlier([0.97] * 5).any()


def test_final_flags_collapsed_outlier_and_diverged_replicas():
    df = make_history({8: [*B8, 10.1, float("nan")], 128: B128})
    fin = stats.final(df)
    assert len(fin) == len(B8) + 2 + len(B128)
    b8 = fin[fin["batch_size"] == 8]
    assert pct(b8.loc[b8["outlier"], "test_acc"]) == [48.79, 61.42]  # the collapsed one counts as that
    assert pct(b8.loc[b8["collapsed"], "test_acc"]) == [10.1]  # a collapsed run always fails
    assert b8["diverged"].sum() == 1 and b8.loc[b8["diverged"], "test_acc"].isna().all()
    assert b8["failed"].sum() == 4
    assert not fin.loc[fin["batch_size"] == 128, "failed"].any()
    # The last-3-epoch mean: the synthetic curve rises 0.4 points per epoch to the final value.
    r = fin[(fin["batch_size"] == 128)].iloc[0]
    hist = df[(df["batch_size"] == 128) & (df["seed"] == r["seed"])]
    assert r["test_acc_last3"] == pytest.approx(hist["test_acc"].tail(3).mean())
    assert r["epoch"] == 5


def test_collapse_counts_without_a_stored_flag():
    df = make_history({8: [97.0, 96.5, 10.1]}).drop(columns=["collapsed"])
    fin = stats.final(df)
    assert fin["collapsed"].tolist() == [False, False, True]


def test_outliers_are_judged_per_configuration():
    # The same accuracies are ordinary at one lr and an outlier among tight seeds at another.
    a = make_history({16: [89.04, 88.0, 90.1, 87.5, 89.9]}, lr=0.3)
    b = make_history({16: B16}, lr=0.1)
    fin = stats.final(pd.concat([a, b], ignore_index=True))
    assert fin.groupby("lr")["outlier"].sum().to_dict() == {0.1: 1, 0.3: 0}


def test_mark_failed_puts_the_flags_on_every_row():
    df = make_history({8: B8, 128: B128})
    marked = stats.mark_failed(df)
    assert len(marked) == len(df)
    bad = marked[marked["failed"]]
    assert set(bad["seed"]) == {0, 1} and (bad["batch_size"] == 8).all()
    assert len(bad) == 2 * 5  # every epoch of both failed seeds
    assert stats.mark_failed(marked)["failed"].sum() == len(bad)  # idempotent


# ----------------------------------------------------------------------------- intervals


def test_bootstrap_ci_contains_the_true_median_of_a_large_sample():
    x = np.random.default_rng(1).normal(5.0, 2.0, 2_000)
    lo, hi = stats.bootstrap_ci(x)
    assert lo < 5.0 < hi
    assert hi - lo < 0.4
    assert stats.bootstrap_ci(x) == (lo, hi)  # fixed generator


def test_bootstrap_ci_of_measured_seeds_and_other_statistics():
    lo, hi = stats.bootstrap_ci(np.asarray(B8) / 100)
    assert lo < np.median(B8) / 100 < hi
    assert lo >= 0.48 and hi <= 0.94  # a percentile interval stays inside the data
    lo_m, hi_m = stats.bootstrap_ci(np.asarray(B8) / 100, statistic=np.mean, confidence=0.9)
    assert lo_m < np.mean(B8) / 100 < hi_m


def test_bootstrap_ci_degenerate_cases():
    assert all(math.isnan(v) for v in stats.bootstrap_ci([]))
    assert all(math.isnan(v) for v in stats.bootstrap_ci([0.97]))
    assert all(math.isnan(v) for v in stats.bootstrap_ci([0.97, np.nan]))
    assert stats.bootstrap_ci([0.97] * 4) == (0.97, 0.97)


def test_mean_ci_is_student_t():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert stats.mean_ci(x) == pytest.approx(3.182446 * x.std(ddof=1) / 2, rel=1e-5)
    assert math.isnan(stats.mean_ci([1.0]))


# ------------------------------------------------------------------------------- summary


def test_summary_columns_and_values():
    df = make_history({8: [*B8, float("nan")], 128: B128})
    summ = stats.summary(df)
    assert summ["batch_size"].tolist() == [8, 128]
    for col in ("n", "n_failed", "n_collapsed", "n_diverged", "n_outlier", "median", "median_lo"):
        assert col in summ.columns
    for col in ("median_hi", "q1", "q3", "mean", "mean_ci95", "last3_mean", "last3_median", "best_epoch"):
        assert col in summ.columns
    b8 = summ.iloc[0]
    assert (b8["n"], b8["n_failed"], b8["n_diverged"], b8["n_outlier"]) == (21, 3, 1, 2)
    assert b8["median"] == pytest.approx(np.median(B8) / 100)
    assert b8["q1"] == pytest.approx(np.quantile(B8, 0.25) / 100)
    assert b8["mean"] == pytest.approx(np.mean(B8) / 100)
    assert b8["median_lo"] < b8["median"] < b8["median_hi"]
    assert b8["best_epoch"] == 5 and b8["final_epoch"] == 5
    assert summ["median"].min() > 0 and summ["median"].max() < 1  # fractions


def test_summary_groups_by_every_varying_axis():
    df = pd.concat([make_history({32: B128}, lr=0.1), make_history({32: B16}, lr=0.03)])
    assert stats.varying_axes(df) == ["lr"]
    assert stats.group_columns(df) == ["batch_size", "lr"]
    summ = stats.summary(df)
    assert summ[["batch_size", "lr"]].values.tolist() == [[32, 0.03], [32, 0.1]]
    assert stats.summary(df, by=["batch_size"])["n"].tolist() == [20]


def test_summary_with_a_missing_config_value_as_an_axis():
    # train_limit None (NaN in the frame) and 3000: NaN is a value of the axis like any other.
    df = pd.concat([make_history({32: B128}), make_history({32: B16}, train_limit=3000)])
    summ = stats.summary(df)
    assert summ["train_limit"].isna().tolist() == [False, True]
    assert summ["n"].tolist() == [10, 10] and (summ["best_epoch"] == 5).all()
    assert stats.summary(df, by=[])["n"].tolist() == [20]


def test_summary_table_is_readable():
    table = stats.summary_table(stats.summary(make_history({8: [*B8, 10.1]})))
    row = table.iloc[0]
    assert row["median [q1, q3] (%)"].startswith("90.48 [")
    assert row["failed/n"] == "3/21 (1 collapsed, 2 outlier)"
    assert "±" in row["mean ± 95% CI (%)"]


def _summ(medians: Mapping[int, float], spread: float) -> pd.DataFrame:
    """Summaries of 10 seeds per batch size around each median (percent), +-spread."""
    offsets = np.linspace(-spread, spread, 10)
    return stats.summary(make_history({b: list(m + offsets) for b, m in medians.items()}))


def test_conclusions_never_call_overlapping_intervals_different():
    summ = _summ({64: 97.0, 128: 97.2}, spread=1.0)
    assert stats.overlap(*summ.loc[0, ["median_lo", "median_hi"]], *summ.loc[1, ["median_lo", "median_hi"]])
    text = " ".join(stats.conclusions(summ)).lower()
    assert "cannot separate" in text
    for word in ("differ", "real", "significant", "better", "worse", "do not overlap"):
        assert word not in text


def test_conclusions_call_far_apart_intervals_different_and_count_failures():
    summ = stats.summary(make_history({8: B8, 128: B128}))
    lines = stats.conclusions(summ)
    text = " ".join(lines)
    assert "batch 128 and batch 8 differ" in text and "do not overlap" in text
    assert "batch 8: 2 of 20 (2 far below the median); none in the other configuration" in text
    assert any(line.startswith("At batch 8 the mean") for line in lines)  # the heavy tail


def test_conclusions_with_one_seed_cannot_separate():
    summ = stats.summary(make_history({8: [90.0], 128: [97.0]}))
    text = " ".join(stats.conclusions(summ))
    assert "no interval from one seed; 1 seed)" in text and "cannot separate" in text and "differ" not in text


def test_conclusions_place_the_reference_among_our_seeds():
    summ = _summ({8: 90.0, 90: 97.0}, spread=0.3)
    summ["final_epoch"] = 15
    text = " ".join(stats.conclusions(summ))
    assert "single seed lies above our quartiles at batch 8, 90" in text


# -------------------------------------------------------------------------- reproduction


def test_reproduction_percentile_of_the_reference():
    df = make_history({8: [90.0, 91.0, 92.0, 93.0], 90: [97.0, 97.45, 97.6, 97.8], 100: [97.0]})
    rep = stats.reproduction(df)
    assert rep["batch_size"].tolist() == [8, 90]  # no reference value at 100
    assert rep["reference"].tolist() == [0.9148, 0.9745]
    # 91.48: two of four seeds below -> 50th percentile; 97.45: one below, one tie -> 37.5.
    assert rep["reference_percentile"].tolist() == [50.0, 37.5]
    assert rep["median"].iloc[0] == pytest.approx(0.915)
    assert rep["n"].tolist() == [4, 4]


def test_reference_only_at_its_lr():
    df = pd.concat([make_history({8: [90.0]}, lr=0.1), make_history({8: [95.0]}, lr=0.01)])
    assert stats.reproduction(df)["lr"].tolist() == [0.1]


def test_per_epoch_table():
    df = make_history({8: [*B8[:5], float("nan")], 128: B128}, epochs=3)
    table = stats.per_epoch_table(df)
    assert table.index.names == ["batch_size", "epoch"]
    assert len(table) == 2 * 3
    assert table.loc[(8, 3), "replicas"] == 5  # the diverged replica's last row left out
    assert table.loc[(8, 1), "replicas"] == 6
    assert table.loc[(128, 3), "test_acc_median_%"] == pytest.approx(np.median(B128), abs=0.006)
    assert {"test_acc_q1_%", "test_acc_q3_%", "train_loss", "test_loss"} <= set(table.columns)


# ------------------------------------------------------------------ a real frame (today's)


@pytest.fixture(scope="module")
def real(mnist) -> pd.DataFrame:
    cfg = TrainConfig(batch_size=128, epochs=2, seeds=(0, 1, 2), train_limit=3000, threads=1)
    return frame([make_record(train(cfg, mnist, progress=False, verbose=False))])


def test_a_real_frame(real):
    fin = stats.final(real)
    assert len(fin) == 3 and not fin["failed"].any()
    summ = stats.summary(real)
    assert summ["n"].tolist() == [3] and 0.5 < summ.loc[0, "median"] < 1
    assert stats.conclusions(summ)[0].startswith("Highest median final test accuracy: batch 128")
    assert stats.per_epoch_table(real)["replicas"].tolist() == [3, 3]


def test_reproduction_table_reads_in_percent():
    repro = pd.DataFrame(
        {"batch_size": [8], "reference": [0.9148], "median": [0.88], "q1": [0.84], "q3": [0.9], "n": [10],
         "epoch": [15], "reference_percentile": [75.0]}
    )  # fmt: skip
    t = stats.reproduction_table(repro)
    assert (
        t.loc[0, "reference, 1 seed (%)"] == "91.48"
        and t.loc[0, "ours: median [q1, q3] (%)"] == "88.00 [84.00, 90.00]"
    )
    assert t.loc[0, "reference's percentile among ours"] == 75


def test_dead_units_table():
    df = stats.mark_failed(make_history({8: [90.0, 12.0, 88.0, 91.0], 128: [97.0, 97.2, 96.9]}))
    t = stats.dead_units_table(df).set_index("batch_size")
    assert list(t.index) == [8, 128]
    final_cols = [c for c in t.columns if c.startswith("dead_") and c.endswith("final (%)")]
    assert final_cols and (t[final_cols].to_numpy() >= 0).all() and (t[final_cols].to_numpy() <= 100).all()
    # The collapsed seed has the most dead units, so at batch 8 more dead means less accurate.
    assert t.loc[8, [c for c in t.columns if c.startswith("rank corr.")][0]] < 0
    with pytest.raises(ValueError, match="no dead_"):
        stats.dead_units_table(df.drop(columns=[c for c in df.columns if c.startswith("dead_")]))


def test_dead_units_findings_come_from_the_table():
    table = stats.dead_units_table(
        stats.mark_failed(make_history({8: [90.0, 12.0, 88.0], 128: [97.0, 97.2, 96.9]}))
    )
    lines = stats.dead_units_findings(table)
    first = table.set_index("batch_size").filter(like="epoch 1").iloc[:, 0]
    assert f"{first[8]:g}% of its units are dead after the first epoch at batch 8" in lines[0]
    assert f"against {first[128]:g}% at batch 128" in lines[0]
    assert any(line.startswith("Across seeds") for line in lines)
