"""Tables for reading, made from the number frames of ``stats`` (synthetic histories)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from studies import B8, B128, make_history

from mlpmnist.analysis import stats, tables


def test_summary_table_is_readable():
    table = tables.summary_table(stats.summary(make_history({8: [*B8, 10.1]})))
    row = table.iloc[0]
    assert row["batch_size"] == 8
    assert row["median [q1, q3] (%)"].startswith("90.48 [")
    assert row["failed seeds / n"] == "1 / 21 (1 collapsed)"  # the collapsed seed only...
    assert row["outliers"] == "2"  # ...the two seeds far below the others apart
    assert "±" in row["mean ± 95% CI (%)"]
    assert row["best epoch (median %)"] == "5 (90.48)"
    assert "reference (%, 1 seed)" not in table.columns  # 5 epochs: not the reference's setup


def test_summary_table_names_what_failed():
    table = tables.summary_table(stats.summary(make_history({8: [90.0, 91.0, float("nan"), 10.0]}, epochs=4)))
    assert table.loc[0, "failed seeds / n"] == "2 / 4 (1 collapsed, 1 diverged)"
    assert table.loc[0, "outliers"] == "0"


def test_one_seed_shows_no_spread():
    row = tables.summary_table(stats.summary(make_history({32: [26.6]}, epochs=1))).iloc[0]
    assert row["median [q1, q3] (%)"] == "26.60"  # no quartiles of one value
    assert row["median 95% CI (%)"] == "n/a"
    assert row["mean ± 95% CI (%)"] == "26.60"
    assert row["failed seeds / n"] == "0 / 1"


@pytest.mark.parametrize(("epochs", "shown"), [(1, False), (2, False), (3, True), (5, True)])
def test_the_last_k_epochs_column_needs_k_epochs(epochs, shown):
    table = tables.summary_table(stats.summary(make_history({32: [97.0, 97.2]}, epochs=epochs)))
    assert ("last 3 epochs, mean (%)" in table.columns) == shown


def test_the_last_k_epochs_column_needs_k_epochs_in_every_configuration():
    df = pd.concat([make_history({32: [97.0, 97.2]}, epochs=2), make_history({64: [97.0, 97.2]}, epochs=5)])
    assert "last 3 epochs, mean (%)" not in tables.summary_table(stats.summary(df)).columns


def test_markdown_table_uses_the_summary_cells():
    summ = stats.summary(make_history({8: B8, 128: B128, 200: [97.0, 97.2]}, epochs=15))
    cells = tables.summary_cells(summ)
    lines = tables.markdown_table(summ).splitlines()
    assert lines[0] == (
        "| batch size | median [q1, q3] (%) | median 95% CI (%) | mean ± 95% CI (%) "
        "| last 3 epochs, mean (%) | failed seeds / n | outliers | reference (%, 1 seed) |"
    )
    assert lines[1] == "|---|---|---|---|---|---|---|---|"
    rows = cells.drop(columns=[tables.BEST]).iterrows()
    for b, line, (_, c) in zip((8, 128, 200), lines[2:], rows, strict=True):
        assert line == "| " + " | ".join([str(b), *c]) + " |"  # the same cells, no second formatting
    assert lines[2].endswith("| 0 / 20 | 2 | 91.48 |")  # batch 8: nothing failed, two outliers
    assert lines[4].endswith("| 0 / 2 | 0 |  |")  # no reference value at batch 200


def test_markdown_table_without_a_reference_has_no_reference_column():
    summ = stats.summary(make_history({8: B8}, epochs=15, dataset="kmnist"))
    assert "reference" not in tables.markdown_table(summ).splitlines()[0]


def test_reproduction_table_reads_in_percent():
    repro = pd.DataFrame(
        {"batch_size": [8], "reference": [0.9148], "median": [0.88], "q1": [0.84], "q3": [0.9], "n": [10],
         "epoch": [15], "reference_percentile": [75.0]}
    )  # fmt: skip
    t = tables.reproduction_table(repro)
    assert list(t.columns) == [
        "batch_size",
        "reference, 1 seed (%)",
        "ours: median [q1, q3] (%)",
        "seeds",
        "reference's percentile among ours",
    ]
    assert (
        t.loc[0, "reference, 1 seed (%)"] == "91.48"
        and t.loc[0, "ours: median [q1, q3] (%)"] == "88.00 [84.00, 90.00]"
    )
    assert t.loc[0, "reference's percentile among ours"] == 75


def test_dead_units_table():
    dead = stats.dead_units(make_history({8: [90.0, 12.0, 88.0, 91.0], 128: [97.0, 97.2, 96.9]}))
    t = tables.dead_units_table(dead).set_index("batch_size")
    assert list(t.columns) == [
        "seeds",
        "dead_1 epoch 1 (%)",
        "dead_1 final (%)",
        "dead_2 epoch 1 (%)",
        "dead_2 final (%)",
        "wnorm_1 final",
        "rank corr. dead_2 vs accuracy",
    ]
    assert t.loc[8, "dead_1 final (%)"] == round(100 * dead.loc[0, "dead_1_final"], 1)  # percent
    assert t["seeds"].tolist() == [4, 3]
    assert t.loc[8, "rank corr. dead_2 vs accuracy"] < 0
    # From MIN_SEEDS seeds on, the correlation comes with its test's p-value.
    six = stats.dead_units(make_history({8: [90.0, 12.0, 88.0, 91.0, 60.0, 70.0]}))
    t6 = tables.dead_units_table(six)
    assert t6.columns[-1] == "rank corr. p" and 0 < t6.loc[0, "rank corr. p"] < 1


def test_dead_units_table_after_one_epoch_of_one_seed():
    t = tables.dead_units_table(stats.dead_units(make_history({32: [26.6]}, epochs=1)))
    # After one epoch the first epoch is the last: one column per layer; no correlation of one seed.
    assert list(t.columns) == ["batch_size", "seeds", "dead_1 final (%)", "dead_2 final (%)", "wnorm_1 final"]


def test_per_epoch_table_in_percent():
    df = make_history({128: B128}, epochs=3)
    t = tables.per_epoch_table(stats.per_epoch(df))
    assert t.loc[(128, 3), "test_acc_median_%"] == pytest.approx(np.median(B128), abs=0.006)
    assert list(t.columns) == [
        "test_acc_median_%",
        "test_acc_q1_%",
        "test_acc_q3_%",
        "train_loss",
        "test_loss",
        "replicas",
    ]


def test_percent():
    assert tables.percent(0.97254) == "97.25" and tables.percent(float("nan")) == "n/a"
    assert tables.percent(0.5, digits=0) == "50"
