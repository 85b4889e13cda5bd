"""The README's science section is worded by its numbers: each claim follows the record it is
generated from (``science.report``), so a rerun with other numbers cannot leave a sentence false."""

from __future__ import annotations

import copy

import pytest

from mlpmnist.science import report


def head(name: str, estimate: float, low: float, high: float, second: float) -> dict:
    return {"name": name, "estimate": estimate, "low": low, "high": high, "second": second, "inside": True}


def arm(name: str, lr: float, n_tail: int, p: float | None = None, diff: float = 0.0) -> dict:
    row = {
        "arm": name,
        "lr": lr,
        "n": 60,
        "n_tail": n_tail,
        "tail_lo": 0.1,
        "tail_hi": 0.3,
        "median": 0.95,
        "median_lo": 0.94,
        "median_hi": 0.96,
        "dead_1": 0.05,
        "dead_2": 0.2,
    }
    if p is not None:
        row |= {
            "tail_diff_difference": diff,
            "tail_diff_low": diff - 0.05,
            "tail_diff_high": diff + 0.05,
            "tail_diff_p": p,
            "median_diff_difference": 0.01,
            "median_diff_low": 0.0,
            "median_diff_high": 0.02,
        }
    return row


def record() -> dict:
    best = [{"batch_size": b, "lr": lr} for b, lr in ((8, 0.0177), (64, 0.05), (256, 0.1), (1024, 0.05))]
    steps = {
        "targets": [0.96, 0.97],
        "per_target": {
            t: {
                "fit": {"b_crit": 143.0},
                "sensitivity": {"without_smallest": 134.0, "without_largest": 184.0},
                "headlines": [
                    head("steps@8", 21518, 16860, 22594, 18146),
                    head("steps@64", 3520, 3048, 3787, 2562),
                    head("b_crit", 142.9, 97.2, 158.6, 131.0),
                    head("s_min", 1067, 971, 1332, 1026),
                ],
            }
            for t in ("0.96", "0.97")
        },
    }
    per_seed = [{"seed": s, "collapse_lr": 0.2 + 0.08 * (s % 2), "lambda_max": 40.0 + s} for s in range(20)]
    control = [{"seed": s, "collapse_lr": 1.6, "lambda_max": 1.9} for s in range(20)]
    corr = {"rho": -0.17, "low": -0.61, "high": 0.31, "n": 20}
    ceiling = {
        "batch_size": 128,
        "drop": 0.1,
        "scaled": {
            "tuned_lr": 0.1,
            "threshold": 0.85,
            "per_seed": per_seed,
            "correlation": corr,
            "lambda_median": 50.4,
            "lambda_range": [36.9, 70.2],
            "collapse_median": 0.283,
        },
        "control": {
            "tuned_lr": 0.283,
            "threshold": 0.87,
            "per_seed": control,
            "correlation": {"rho": None, "low": None, "high": None, "n": 20},
            "lambda_median": 1.93,
            "lambda_range": [1.59, 2.73],
            "collapse_median": 1.6,
        },
        "regimes": [
            {"lr": 0.05, "start": 2.3, "peak": 4.8, "late": 1.8, "regime": "edge of stability"},
            {"lr": 0.1, "start": 4.6, "peak": 6.3, "late": 2.0, "regime": "edge of stability"},
        ],
    }
    noise = {
        "batch_size": 128,
        "b_crit": 143.0,
        "per_epoch": [
            {"epoch": 0, "1": 27.2, "2": 26.1},
            {"epoch": 2, "1": 366.0, "2": 321.0},
            {"epoch": 3, "1": 335.0, "2": 450.0},
            {"epoch": 8, "1": 700.0, "2": 764.0},
        ],
        "at_target": [
            {"set": s, "seed": i, "b_simple_at_target": 700.0 + 10 * i} for s in (1, 2) for i in range(4)
        ],
    }
    recipe = {
        "chosen": "batch 128, 20 epochs",
        "test_acc": [0.981, 0.982],
        "reference_test_acc": [0.970, 0.971],
        "difference": {"difference": 0.0104, "low": 0.0077, "high": 0.0126, "p": 0.00018},
    }
    return {
        "sets": [list(range(10)), list(range(10, 20))],
        "tune_epochs": 2,
        "inside_rate": 0.79,
        "tuning": {
            "best": [best, best],
            "headlines": [
                head("slope", 0.26, 0.22, 0.35, 0.32),
                head("rms_power", 0.35, 0.29, 0.48, 0.32),
                head("b_noise", 27.4, 22.6, 44.2, 37.4),
                head("rms_saturating", 0.19, 0.13, 0.33, 0.18),
                head("rms_ratio", 1.84, 1.38, 2.36, 1.84),
            ],
        },
        "steps": steps,
        "ceiling": ceiling,
        "noise": noise,
        "recipes": {"set1": recipe, "set2": recipe},
        "tail": {
            "batch_size": 8,
            "epochs": 15,
            "arms": [
                arm("relu", 0.1, 12),
                arm("leaky", 0.1, 2, 0.004, -0.17),
                arm("tuned", 0.0177, 0, 0.0002, -0.2),
            ],
        },
    }


def test_the_section_quotes_the_record_and_says_what_its_numbers_show():
    text = report.section(record())
    assert "13 of 13 second-set values fall inside" in text and "about 79% of the time" in text
    assert "B_crit = 143 [97, 159] (second set 131) examples" in text
    assert "Without the smallest batch size B_crit is 134, without the largest 184." in text
    assert "The saturating form fits better" in text and "do not settle" not in text
    assert "highest at B = 256 and lower at every larger batch size" in text
    assert "the interval includes 0, so no link" in text  # the scaled inputs' rho
    assert "every seed collapses at the same lr, 1.6, so the grid cannot rank them" in text  # the control
    assert "At every lr it is the edge of stability" in text
    assert "not monotonically: 366 at epoch 2 to 335 at epoch 3" in text
    assert "+1.04 points [+0.77, +1.26], Mann-Whitney p = 0.00018" in text
    assert "| leaky ReLU | 0.1 | 2 of 60" in text and "Both interventions remove the tail" in text
    assert "lr 0.1 is too large a step for batch 8" in text and "below 85% test accuracy" in text


def test_each_claim_changes_with_its_numbers():
    rec = record()
    rec["tuning"]["headlines"][-1] |= {"estimate": 0.9, "low": 0.7, "high": 1.2}
    rec["tuning"]["best"][0][-1]["lr"] = 0.2
    rec["ceiling"]["scaled"]["correlation"] = {"rho": -0.7, "low": -0.9, "high": -0.3, "n": 20}
    rec["ceiling"]["regimes"][0] |= {"late": 1.2, "regime": "catapult"}
    rec["noise"]["per_epoch"][2]["1"] = 400.0
    text = report.section(rec)
    assert "The power law fits better" in text and "these seeds do not settle which" in text
    assert "highest at the largest batch size" in text
    assert "seeds that start sharper collapse at smaller lrs" in text
    assert "The regime depends on the lr" in text
    assert "rising at every measured epoch" in text


@pytest.mark.parametrize(
    "leaky_p,tuned_p,words",
    [
        (0.5, 0.0002, "The step, not the dying alone"),
        (0.004, 0.5, "Dead units carry the tail"),
        (0.5, 0.5, "Neither intervention moves the tail detectably with 60 seeds"),
    ],
)
def test_the_tails_meaning_follows_both_tests(leaky_p, tuned_p, words):
    rec = copy.deepcopy(record())
    arms = rec["tail"]["arms"]
    arms[1]["tail_diff_p"], arms[2]["tail_diff_p"] = leaky_p, tuned_p
    text = report.section(rec)
    assert words in text
    assert ("- leaky ReLU does not move" in text) == (leaky_p >= report.ALPHA)
