"""Findings in plain language, from the number frames of ``stats`` and ``compare`` (synthetic
histories): what they claim, that a difference is only claimed by its test, that nothing is
claimed below ``stats.MIN_SEEDS`` seeds, and that they read well for any counts."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
from studies import B8, B16, B128, make_history

from mlpmnist.analysis import compare, findings, stats, tables

NAN = float("nan")


def conclude(df: pd.DataFrame) -> list[str]:
    """What run.ipynb concludes from the results frame ``df``."""
    return findings.conclusions(stats.summary(df), compare.pairwise(df))


def _history(medians: Mapping[int, float], spread: float, epochs: int = 5) -> pd.DataFrame:
    """10 seeds per batch size around each median (percent), +-spread."""
    offsets = np.linspace(-spread, spread, 10)
    return make_history({b: list(m + offsets) for b, m in medians.items()}, epochs=epochs)


def well_formed(lines: list[str]) -> str:
    """The lines as one text, after checking what a reader would trip over: a plural after 1,
    a list that is empty or 'none', a value that is NaN, a configuration compared with itself."""
    text = " ".join(lines)
    assert not re.search(r"\b1 (seeds|configurations|experiments|batch sizes|pairs)\b", text), text
    assert not re.search(r"\b0 finished|\bnone\]|\[\]|sizes none|nan%|n/a%|\bnan\b", text), text
    for line in lines:
        assert line[0].isupper() and line.endswith("."), line
        labels = re.findall(r"batch \d+(?:, lr [\d.]+)?", line)
        compared = re.search(r"against|cannot separate|differ|Lowest", line)
        assert not (compared and len(labels) == 2 and labels[0] == labels[1]), line
    return text


# ----------------------------------------------------------------------------- conclusions


def test_overlapping_seeds_are_never_called_different():
    text = well_formed(conclude(_history({64: 97.0, 128: 97.2}, spread=1.0))).lower()
    assert "cannot separate batch 64 from the best" in text
    for word in ("below the best", "differ", "significant", "better", "worse", "do not overlap"):
        assert not re.search(rf"\b{word}\b", text), word


def test_a_difference_is_claimed_by_its_test_with_the_interval_and_p():
    df = make_history({8: [*B8, 10.1, NAN], 128: B128})
    lines = conclude(df)
    well_formed(lines)
    pair = compare.pairwise(df).iloc[0]
    assert (pair["a"], pair["b"]) == ("batch 8", "batch 128")  # b minus a
    assert pair["p_holm"] < 0.001 and 0 < pair["low"] < pair["difference"] < pair["high"]
    assert (
        "A difference is claimed only where the two-sided Mann-Whitney U test on the seeds' final accuracies "
        "rejects, Holm-adjusted over the 1 pair of configurations (family-wise level 0.05), and the 95% "
        "bootstrap interval of the difference of medians excludes zero." in lines
    )
    below = next(x for x in lines if x.startswith("Below the best"))
    d, hi, lo = (-100 * pair[k] for k in ("difference", "low", "high"))  # batch 8 minus the best
    assert (
        below == f"Below the best (batch 128), by the test: batch 8 ({d:+.2f} points, 95% CI {lo:+.2f} to "
        f"{hi:+.2f}; adjusted p < 0.001)."
    )
    assert (
        "Failed seeds (diverged or collapsed to chance): batch 8: 2 of 22 (1 collapsed, 1 diverged); "
        "none in the other configuration." in lines
    )
    assert (
        "Outliers (finished, but far below their configuration's median; not counted as failed): "
        "batch 8: 2 of 22; none in the other configuration." in lines
    )
    assert any(line.startswith("At batch 8 the mean") for line in lines)  # the heavy tail


def test_the_others_are_placed_by_the_holm_adjusted_test_against_the_best():
    df = _history({8: 90.0, 64: 96.0, 90: 97.1, 128: 97.2}, spread=0.3)
    summ, pairs = stats.summary(df), compare.pairwise(df)
    lines = findings.conclusions(summ, pairs)
    well_formed(lines)
    assert lines[:2] == [
        f"Highest median final test accuracy: batch 128, median 97.20% (95% CI "
        f"{100 * summ.loc[3, 'median_lo']:.2f}–{100 * summ.loc[3, 'median_hi']:.2f}; 10 seeds).",
        f"Lowest: batch 8, median 90.00% (95% CI {100 * summ.loc[0, 'median_lo']:.2f}–"
        f"{100 * summ.loc[0, 'median_hi']:.2f}; 10 seeds).",
    ]
    assert "Holm-adjusted over the 6 pairs of configurations (family-wise level 0.05)" in lines[2]
    excludes_zero = (pairs["low"] > 0) | (pairs["high"] < 0)
    assert [compare.claimed(r) for _, r in pairs.iterrows()] == list((pairs["p_holm"] < 0.05) & excludes_zero)
    assert len(pairs) == 6 and pairs["p_holm"].ge(pairs["p"]).all()
    below = next(x for x in lines if x.startswith("Below the best (batch 128), by the test: "))
    assert "batch 8 (" in below and "batch 64 (" in below and "batch 90" not in below
    assert any(
        x.startswith("These seeds cannot separate batch 90 from the best (adjusted p = ") for x in lines
    )


def test_a_rank_test_that_the_medians_do_not_back_claims_nothing():
    # The rank test rejects, but the interval of the difference of medians includes zero (a
    # bimodal spread can do that): the two disagree, and no difference is claimed.
    df = _history({32: 96.0, 64: 97.0}, spread=0.3)
    summ, pairs = stats.summary(df), compare.pairwise(df)
    assert compare.claimed(pairs.iloc[0])
    pairs.loc[0, ["low", "high"]] = [-0.002, 0.015]
    assert not compare.claimed(pairs.iloc[0])
    lines = findings.conclusions(summ, pairs)
    well_formed(lines)
    assert any(
        x.startswith("No difference from the best is claimed at batch 32 (adjusted p < 0.001") for x in lines
    )
    assert not any(x.startswith(("Below the best", "These seeds cannot")) for x in lines)


def test_two_seeds_give_a_range_no_interval_and_no_difference():
    # The M1: seeds [0, 1] and two lrs. Two equal seeds are not a zero-width "95% CI".
    df = pd.concat([make_history({32: [93.84, 93.84]}, lr=0.03), make_history({32: [92.10, 92.12]}, lr=0.1)])
    summ, pairs = stats.summary(df), compare.pairwise(df)
    assert summ["median_lo"].isna().all() and summ["mean_ci95"].isna().all()
    assert pairs["p"].isna().all() and pairs["low"].isna().all()
    lines = findings.conclusions(summ, pairs)
    text = well_formed(lines)
    assert lines[0] == (
        "Highest median final test accuracy: batch 32, lr 0.03, median 93.84% (range 93.84–93.84 from 2 "
        "seeds: too few for an interval)."
    )
    assert lines[2] == (
        "With fewer than 5 seeds on a side no difference is claimed: these seeds cannot separate any two "
        "configurations."
    )
    for word in (r"\bdiffer\b", "95% CI", "below the best", "do not overlap"):
        assert not re.search(word, text), word
    table = tables.summary_table(summ)
    assert list(table[tables.MEDIAN_CI]) == ["93.84–93.84 (range, 2 seeds)", "92.10–92.12 (range, 2 seeds)"]
    assert "±" not in " ".join(table[tables.MEAN])


def test_a_configuration_below_min_seeds_is_left_out_of_the_claims():
    df = make_history({8: B8[:4], 64: B128, 128: B128})
    lines = conclude(df)
    well_formed(lines)
    assert "Fewer than 5 seeds at batch 8 or at the best: no difference claimed." in lines
    assert not any("batch 8 (" in x for x in lines if x.startswith("Below the best"))


def test_conclusions_with_one_seed_cannot_separate():
    lines = conclude(make_history({8: [90.0], 128: [97.0]}))
    text = well_formed(lines)
    assert lines[:3] == [
        "Highest final test accuracy: batch 128, 97.00% (1 seed: no interval).",
        "Lowest: batch 8, 90.00% (1 seed: no interval).",
        "With fewer than 5 seeds on a side no difference is claimed: these seeds cannot separate any two "
        "configurations.",
    ]
    assert not re.search(r"\bdiffer\b", text) and "median" not in lines[0]
    assert "No outliers: with 1 finished seed per configuration the outlier rule flags none." in lines


def test_conclusions_of_one_configuration_compare_nothing():
    lines = conclude(make_history({32: B128}, epochs=4))
    text = well_formed(lines)
    assert lines[0].startswith("Final test accuracy: batch 32, median 97.15% (95% CI ")
    for word in ("Highest", "Lowest", "separate", "differ", "against", "the other configuration", "Holm"):
        assert word not in text
    assert "No seed failed: none of the 10 seeds diverged or collapsed to chance." in lines


def test_conclusions_of_one_seed_after_one_epoch():
    lines = conclude(make_history({32: [26.6]}, epochs=1))
    assert well_formed(lines) and lines == [
        "Final test accuracy: batch 32, 26.60% (1 seed: no interval).",
        "The one seed did not fail: it neither diverged nor collapsed to chance.",
        "No outliers: with 1 finished seed per configuration the outlier rule flags none.",
        "Training accuracy (the mean over the last evaluation's steps) ends above test accuracy at batch "
        "32, by 1.00 points in median.",
    ]


def test_conclusions_when_every_seed_failed():
    lines = conclude(make_history({32: [NAN, NAN], 64: [NAN]}, epochs=2))
    assert well_formed(lines) and lines == [
        "No seed finished without diverging: there is no accuracy to summarise.",
        "Every seed failed (diverged or collapsed to chance): batch 32: both (2 diverged); "
        "batch 64: its one seed diverged.",
    ]
    collapsed = conclude(make_history({32: [10.0, 11.0, 10.5, 10.2, 10.8]}, epochs=4))
    well_formed(collapsed)
    assert "Every seed failed (diverged or collapsed to chance): batch 32: all 5 (5 collapsed)." in collapsed
    # The median peaked before the collapse, far above the final median's interval: said, with the epoch.
    assert any(
        "before the last epoch, above the final median's 95% CI, at batch 32 (epoch 2, 79.50" in x
        for x in collapsed
    )
    # With three seeds there is no interval to be above: nothing is said.
    few = conclude(make_history({32: [10.0, 11.0, 10.5]}, epochs=4))
    assert not any("before the last epoch" in x for x in few)


def test_epoch_to_epoch_jitter_within_the_interval_is_not_called_a_peak():
    df = make_history({90: B128}, epochs=15)
    summ = stats.summary(df)
    # make_history's curves wobble by 0.1 point before the last epoch: inside the median's CI.
    assert not any("before the last epoch" in x for x in conclude(df))
    assert summ.loc[0, "best_epoch_median"] <= summ.loc[0, "median_hi"]


def test_conclusions_when_all_medians_are_equal():
    lines = conclude(make_history({32: [95.0, 95.0], 64: [95.0, 95.0]}, epochs=2))
    well_formed(lines)
    assert lines[0] == "Both configurations end at the same median final test accuracy, 95.00%."
    assert not any(x.startswith(("Highest", "Lowest")) for x in lines)
    three = make_history({32: [95.0] * 2, 64: [95.0] * 2, 128: [95.0] * 2}, epochs=2)
    assert conclude(three)[0].startswith("All 3 configurations end at the same")


def test_conclusions_place_the_reference_among_our_seeds():
    text = well_formed(conclude(_history({8: 90.0, 90: 97.0}, spread=0.3, epochs=15)))
    assert "The reference study's single seed lies above our quartiles at batch 8, 90." in text
    assert (
        "The reference study's headline, 97.64%, lies above every median here and above every median's "
        "95% CI." in text
    )


def test_conclusions_give_the_headline_where_no_batch_size_has_a_reference_seed():
    lines = conclude(_history({200: 97.0, 256: 97.9}, spread=0.3, epochs=15))
    text = well_formed(lines)
    assert "single seed" not in text
    assert (
        lines[-1]
        == "The reference study's headline, 97.64%, lies at or below our median at batch 256 (97.90%)."
    )
    # Above the best median but inside its interval: said so, since a rerun could put it below.
    near = conclude(_history({200: 97.0, 256: 97.5}, spread=0.6, epochs=15))
    assert near[-1].startswith(
        "The reference study's headline, 97.64%, lies above every median here, within the 95% CI of "
        "batch 256's median"
    )


def test_conclusions_say_nothing_of_the_reference_outside_its_setup():
    for df in (
        _history({8: 90.0, 90: 97.0}, spread=0.3, epochs=5),
        make_history({8: B16, 90: B128}, epochs=15, dataset="fashion-mnist"),
    ):
        assert "reference" not in well_formed(conclude(df)).lower()


def test_conclusions_name_every_grid_axis():
    df = pd.concat([make_history({32: B128}, lr=0.1), make_history({32: B16}, lr=0.03)])
    text = well_formed(conclude(df))
    assert "Highest median final test accuracy: batch 32, lr 0.1, median 97.15%" in text
    assert "Outliers (finished, but far below their configuration's median; not counted as failed): " in text
    assert "batch 32, lr 0.03: 1 of 10; none in the other configuration." in text
    assert "Below the best (batch 32, lr 0.1), by the test: batch 32, lr 0.03 (" in text


def test_conclusions_read_the_same_from_the_committed_csvs(tmp_path):
    # The README's text is made from the CSVs publish writes: the same text as from the frames.
    from mlpmnist.workbench import report

    df = make_history({8: [*B8, 10.1, NAN], 64: B16, 128: B128}, epochs=15)
    summ, pairs = stats.summary(df), compare.pairwise(df)
    report.write_csv(summ, tmp_path / "s.csv")
    report.write_csv(pairs, tmp_path / "p.csv")
    again = findings.conclusions(report.read_summary(tmp_path / "s.csv"), pd.read_csv(tmp_path / "p.csv"))
    assert again == findings.conclusions(summ, pairs)


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
    # Three seeds a batch size: too few for the correlation's test, so no link is claimed.
    assert lines[-1].startswith("Whether more dead units go with lower accuracy across seeds is not tested")
    # Both ranges end with the same synthetic weights.
    same = "The first layer's weights end with about the same norm at the smallest and largest batch: 15.0 at"
    assert any(line.startswith(same) for line in lines)


def test_dead_units_findings_name_the_heavy_layers_and_the_strong_links():
    dead = pd.DataFrame(
        {"batch_size": [8, 150], "n": [10, 10], "first_epoch": [1, 1], "final_epoch": [15, 15],
         "dead_1_first": [0.59, 0.03], "dead_1_final": [0.64, 0.05], "dead_2_first": [0.21, 0.0],
         "dead_2_final": [0.46, 0.0], "wnorm_1_final": [48.9, 14.0], "rank_corr": [-0.7, -0.1],
         "rank_corr_p": [1e-4, 0.6]}
    )  # fmt: skip
    lines = findings.dead_units_findings(dead)
    assert well_formed(lines) and lines == [
        "Dead units in hidden layer 1: 59% after epoch 1 (64% after epoch 15) at batch 8, against 3% after "
        "epoch 1 (5% after epoch 15) at batch 150.",
        "Hidden layer 1 ends with over 10% of its units dead at batch 8 only.",
        "Hidden layer 2 ends with over 10% of its units dead at batch 8 only.",
        "The first layer's weights end 3.5 times larger at the smallest batch: norm 48.9 at batch 8, 14.0 at "
        "batch 150.",
        "Across seeds, more dead units in the last hidden layer go with lower final accuracy at batch 8 "
        "(Spearman's rho -0.70, adjusted p < 0.001); elsewhere no link is shown.",
    ]
    # A strong-looking correlation that its test does not support (after Holm) is not a link.
    weak = dead.assign(rank_corr=[-0.6, -0.55], rank_corr_p=[0.04, 0.09])
    assert findings.dead_units_findings(weak)[-1] == (
        "Across seeds, no link between the last hidden layer's dead units and the final accuracy is shown "
        "at any batch size (Spearman's rank correlation, Holm-adjusted over 2 batch sizes: p >= 0.05)."
    )


def test_dead_units_findings_of_one_batch_size_after_one_epoch():
    lines = findings.dead_units_findings(stats.dead_units(make_history({32: [26.6]}, epochs=1)))
    text = well_formed(lines)
    assert lines[0] == "Dead units in hidden layer 1 at batch 32: 1.8% after epoch 1."
    assert "against" not in text and "(" not in lines[0]
    assert lines[-1].startswith("Whether more dead units go with lower accuracy across seeds is not tested")


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
    lines = conclude(make_history({8: acc}, epochs=15))
    assert (
        "At batch 8, 3 of 10 seeds ended below 85% (30%, 95% CI 11–60%, Wilson); its seeds end between "
        "70.20% and 92.50%." in lines
    )
    # Below the threshold at the median, a "tail" means nothing: no such sentence.
    low = conclude(make_history({8: [60.0, 62.0, 90.0, 61.0, 59.0]}, epochs=15))
    assert not any("ended below" in line for line in low)
    # Below MIN_SEEDS seeds, no share is claimed either.
    assert not any("ended below" in line for line in conclude(make_history({8: [91.0, 92.0, 70.0]})))


def test_dead_units_findings_list_the_first_epoch_at_every_batch_size():
    df = make_history({8: B8[:5], 32: B16[:5], 128: B128[:5]})
    lines = findings.dead_units_findings(stats.dead_units(df))
    well_formed(lines)
    assert any(
        x.startswith("After epoch 1 the share of hidden layer 1's units that are dead is ")
        and "% at batch 32, " in x
        for x in lines
    )
