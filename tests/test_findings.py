"""Findings in plain language, from the number frames of ``stats`` (synthetic histories): what
they claim, and that they read well for any counts."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
from test_stats import B8, B16, B128, make_history

from mlpmnist.analysis import findings, stats

NAN = float("nan")


def _summ(medians: Mapping[int, float], spread: float, epochs: int = 5) -> pd.DataFrame:
    """Summaries of 10 seeds per batch size around each median (percent), +-spread."""
    offsets = np.linspace(-spread, spread, 10)
    return stats.summary(make_history({b: list(m + offsets) for b, m in medians.items()}, epochs=epochs))


def well_formed(lines: list[str]) -> str:
    """The lines as one text, after checking what a reader would trip over: a plural after 1,
    a list that is empty or 'none', a value that is NaN, a configuration compared with itself."""
    text = " ".join(lines)
    assert not re.search(r"\b1 (seeds|configurations|experiments|batch sizes)\b", text), text
    assert not re.search(r"\b0 finished|\bnone\]|\[\]|sizes none|nan%|n/a%", text), text
    for line in lines:
        assert line[0].isupper() and line.endswith("."), line
        labels = re.findall(r"batch \d+(?:, lr [\d.]+)?", line)
        compared = re.search(r"against|cannot separate|differ|Lowest", line)
        assert not (compared and len(labels) == 2 and labels[0] == labels[1]), line
    return text


# ----------------------------------------------------------------------------- conclusions


def test_conclusions_never_call_overlapping_intervals_different():
    summ = _summ({64: 97.0, 128: 97.2}, spread=1.0)
    assert stats.overlap(*summ.loc[0, ["median_lo", "median_hi"]], *summ.loc[1, ["median_lo", "median_hi"]])
    text = well_formed(findings.conclusions(summ)).lower()
    assert "cannot separate" in text
    for word in ("differ", "real", "significant", "better", "worse", "do not overlap"):
        assert word not in text


def test_conclusions_call_far_apart_intervals_different_and_name_failures_and_outliers_apart():
    summ = stats.summary(make_history({8: [*B8, 10.1, NAN], 128: B128}))
    lines = findings.conclusions(summ)
    text = well_formed(lines)
    assert "The medians of batch 128 and batch 8 differ" in text and "do not overlap" in text
    assert (
        "Failed seeds (diverged or collapsed to chance): batch 8: 2 of 22 (1 collapsed, 1 diverged); "
        "none in the other configuration." in lines
    )
    assert (
        "Outliers (finished, but far below their configuration's median; not counted as failed): "
        "batch 8: 2 of 22; none in the other configuration." in lines
    )
    assert any(line.startswith("At batch 8 the mean") for line in lines)  # the heavy tail


def test_conclusions_list_the_others_by_whether_they_can_be_told_from_the_best():
    summ = _summ({8: 90.0, 64: 96.0, 90: 97.1, 128: 97.2}, spread=0.3)
    lines = findings.conclusions(summ)
    well_formed(lines)
    assert lines[:2] == [
        f"Highest median final test accuracy: batch 128, median 97.20% (95% CI "
        f"{100 * summ.loc[3, 'median_lo']:.2f}–{100 * summ.loc[3, 'median_hi']:.2f}; 10 seeds).",
        f"Lowest: batch 8, median 90.00% (95% CI {100 * summ.loc[0, 'median_lo']:.2f}–"
        f"{100 * summ.loc[0, 'median_hi']:.2f}; 10 seeds).",
    ]
    assert "Of the others, below the best with CIs that do not overlap its CI: batch 64." in lines
    assert (
        "Of the others, these seeds cannot separate batch 90 from the best (their 95% CIs overlap its CI)."
        in lines
    )


def test_conclusions_with_one_seed_cannot_separate():
    summ = stats.summary(make_history({8: [90.0], 128: [97.0]}))
    lines = findings.conclusions(summ)
    text = well_formed(lines)
    assert lines[:3] == [
        "Highest final test accuracy: batch 128, 97.00% (1 seed: no interval).",
        "Lowest: batch 8, 90.00% (1 seed: no interval).",
        "One seed gives no 95% CI, so these seeds cannot separate batch 128 from batch 8.",
    ]
    assert "differ" not in text and "median" not in lines[0]
    assert "No outliers: with 1 finished seed per configuration the outlier rule flags none." in lines


def test_conclusions_of_one_configuration_compare_nothing():
    lines = findings.conclusions(stats.summary(make_history({32: B128}, epochs=4)))
    text = well_formed(lines)
    assert lines[0].startswith("Final test accuracy: batch 32, median 97.15% (95% CI ")
    for word in ("Highest", "Lowest", "separate", "differ", "against", "the other configuration"):
        assert word not in text
    assert "No seed failed: none of the 10 seeds diverged or collapsed to chance." in lines


def test_conclusions_of_one_seed_after_one_epoch():
    lines = findings.conclusions(stats.summary(make_history({32: [26.6]}, epochs=1)))
    assert well_formed(lines) and lines == [
        "Final test accuracy: batch 32, 26.60% (1 seed: no interval).",
        "The one seed did not fail: it neither diverged nor collapsed to chance.",
        "No outliers: with 1 finished seed per configuration the outlier rule flags none.",
    ]


def test_conclusions_when_every_seed_failed():
    summ = stats.summary(make_history({32: [NAN, NAN], 64: [NAN]}, epochs=2))
    lines = findings.conclusions(summ)
    assert well_formed(lines) and lines == [
        "No seed finished without diverging: there is no accuracy to summarise.",
        "Every seed failed (diverged or collapsed to chance): batch 32: both (2 diverged); "
        "batch 64: its one seed diverged.",
    ]
    collapsed = findings.conclusions(stats.summary(make_history({32: [10.0, 11.0, 10.5]}, epochs=4)))
    well_formed(collapsed)
    assert "Every seed failed (diverged or collapsed to chance): batch 32: all 3 (3 collapsed)." in collapsed
    # The median peaked before the collapse: said, with the epoch.
    assert any("highest before the last epoch at batch 32 (epoch 2, 79.50 points" in x for x in collapsed)


def test_conclusions_when_all_medians_are_equal():
    lines = findings.conclusions(stats.summary(make_history({32: [95.0, 95.0], 64: [95.0, 95.0]}, epochs=2)))
    well_formed(lines)
    assert lines[0] == "Both configurations end at the same median final test accuracy, 95.00%."
    assert not any(x.startswith(("Highest", "Lowest")) for x in lines)
    three = stats.summary(make_history({32: [95.0] * 2, 64: [95.0] * 2, 128: [95.0] * 2}, epochs=2))
    assert findings.conclusions(three)[0].startswith("All 3 configurations end at the same")


def test_conclusions_place_the_reference_among_our_seeds():
    text = well_formed(findings.conclusions(_summ({8: 90.0, 90: 97.0}, spread=0.3, epochs=15)))
    assert "The reference study's single seed lies above our quartiles at batch 8, 90." in text
    assert "The reference study's headline, 97.64%, lies above every median here." in text


def test_conclusions_give_the_headline_where_no_batch_size_has_a_reference_seed():
    lines = findings.conclusions(_summ({200: 97.0, 256: 97.9}, spread=0.3, epochs=15))
    text = well_formed(lines)
    assert "single seed" not in text
    assert (
        lines[-1]
        == "The reference study's headline, 97.64%, lies at or below our median at batch 256 (97.90%)."
    )


def test_conclusions_say_nothing_of_the_reference_outside_its_setup():
    for summ in (
        _summ({8: 90.0, 90: 97.0}, spread=0.3, epochs=5),
        stats.summary(make_history({8: B16, 90: B128}, epochs=15, dataset="fashion-mnist")),
    ):
        assert "reference" not in well_formed(findings.conclusions(summ)).lower()


def test_conclusions_name_every_grid_axis():
    df = pd.concat([make_history({32: B128}, lr=0.1), make_history({32: B16}, lr=0.03)])
    text = well_formed(findings.conclusions(stats.summary(df)))
    assert "Highest median final test accuracy: batch 32, lr 0.1, median 97.15%" in text
    assert "Outliers (finished, but far below their configuration's median; not counted as failed): " in text
    assert "batch 32, lr 0.03: 1 of 10; none in the other configuration." in text


# ------------------------------------------------------------------------------ dead units


def test_dead_units_findings_come_from_the_numbers():
    dead = stats.dead_units(make_history({8: [90.0, 12.0, 88.0], 128: [97.0, 97.2, 96.9]}))
    lines = findings.dead_units_findings(dead)
    well_formed(lines)
    d8, d128 = dead.set_index("batch_size").loc[8], dead.set_index("batch_size").loc[128]

    def pct(v: float) -> str:
        return f"{round(100 * v, 1):g}%"

    assert lines[0] == (
        f"Dead units in hidden layer 1: {pct(d8.dead_1_first)} after epoch 1 ({pct(d8.dead_1_final)} after "
        f"epoch 5) at batch 8, against {pct(d128.dead_1_first)} after epoch 1 ({pct(d128.dead_1_final)} "
        "after epoch 5) at batch 128."
    )
    # The collapsed seed ends with 95% of layer 1 and 50% of layer 2 dead: the median of three does not.
    assert "No batch size leaves hidden layer 1 with over 10% of its units dead." in lines
    assert any(line.startswith("Across seeds") for line in lines)
    assert "it cannot be measured at batch 128" in lines[-1]  # its seeds' dead shares are equal
    # Both ranges end with the same synthetic weights.
    same = "The first layer's weights end with about the same norm at the smallest and largest batch: 15.0 at"
    assert any(line.startswith(same) for line in lines)


def test_dead_units_findings_name_the_heavy_layers_and_the_strong_links():
    dead = pd.DataFrame(
        {"batch_size": [8, 150], "n": [10, 10], "first_epoch": [1, 1], "final_epoch": [15, 15],
         "dead_1_first": [0.59, 0.03], "dead_1_final": [0.64, 0.05], "dead_2_first": [0.21, 0.0],
         "dead_2_final": [0.46, 0.0], "wnorm_1_final": [48.9, 14.0], "rank_corr": [-0.7, -0.1]}
    )  # fmt: skip
    lines = findings.dead_units_findings(dead)
    assert well_formed(lines) and lines == [
        "Dead units in hidden layer 1: 59% after epoch 1 (64% after epoch 15) at batch 8, against 3% after "
        "epoch 1 (5% after epoch 15) at batch 150.",
        "Hidden layer 1 ends with over 10% of its units dead at batch 8 only.",
        "Hidden layer 2 ends with over 10% of its units dead at batch 8 only.",
        "The first layer's weights end 3.5 times larger at the smallest batch: norm 48.9 at batch 8, 14.0 at "
        "batch 150.",
        "Across seeds, more dead units in the last hidden layer go with lower final accuracy (Spearman's "
        "rank correlation at most -0.5) at batch 8; elsewhere the link is weak.",
    ]


def test_dead_units_findings_of_one_batch_size_after_one_epoch():
    lines = findings.dead_units_findings(stats.dead_units(make_history({32: [26.6]}, epochs=1)))
    text = well_formed(lines)
    assert lines[0] == "Dead units in hidden layer 1 at batch 32: 1.8% after epoch 1."
    assert "against" not in text and "(" not in lines[0]
    assert lines[-1].startswith(
        "Whether more dead units go with lower accuracy across seeds cannot be measured"
    )


def test_dead_units_findings_per_value_of_another_axis():
    df = pd.concat(
        [make_history({8: B8[:5], 64: B128[:5]}, lr=0.1), make_history({8: B16[:5], 64: B128[:5]}, lr=0.03)]
    )
    lines = findings.dead_units_findings(stats.dead_units(df))
    well_formed(lines)
    assert [x.split(",")[0] for x in lines[:1]] == ["At lr 0.03"]
    assert lines[0].startswith("At lr 0.03, dead units in hidden layer 1:")
    assert sum(x.startswith("At lr 0.1, ") for x in lines) == sum(x.startswith("At lr 0.03, ") for x in lines)


def test_dead_units_findings_when_every_seed_diverged():
    dead = stats.dead_units(make_history({32: [NAN, NAN]}, epochs=2))
    assert findings.dead_units_findings(dead) == [
        "Every seed diverged: there are no dead-unit numbers at the end of training."
    ]


@pytest.mark.parametrize("frame", [pd.DataFrame(), pd.DataFrame({"lr": [0.1]})])
def test_dead_units_findings_without_batch_sizes(frame):
    assert findings.dead_units_findings(frame) == ["No dead-unit measurements by batch size."]


def test_a_lower_tail_is_counted_with_its_interval():
    # Ten seeds around 91% and three below 85%: the tail, as k of n with a Wilson interval.
    acc = [91.0, 91.5, 92.0, 90.5, 92.5, 91.2, 90.8, 80.1, 83.0, 70.2]
    summ = stats.summary(make_history({8: acc}, epochs=15))
    (row,) = summ.to_dict("records")
    assert row["n_tail"] == 3 and 0.10 < row["tail_lo"] < 0.3 < row["tail_hi"] < 0.65
    lines = findings.conclusions(summ)
    assert "At batch 8, 3 of 10 seeds ended below 85% (30%, 95% CI 11–60%, Wilson)." in lines
    # Below the threshold at the median, a "tail" means nothing: no such sentence.
    low = findings.conclusions(stats.summary(make_history({8: [60.0, 62.0, 90.0]}, epochs=15)))
    assert not any("ended below" in line for line in low)
