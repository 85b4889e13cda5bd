"""The refined learning-rate search: proposals on synthetic summaries (a known peak and ceiling
per batch size), the collapse lr, the best lr's bracket, and one real search on MNIST."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlpmnist.science import (
    LR_BOUNDS,
    best_lr_interval,
    collapse_lr,
    lr_grid,
    lr_search_summary,
    refine_lrs,
    search_lr,
    tune_lr,
)

SQRT2 = math.sqrt(2)


def _row(b: int, lr: float, peak: float, ceiling: float, diverge: float = math.inf) -> dict:
    """One summary row: mean validation accuracy peaks at ``peak`` (a parabola in log lr); from
    ``ceiling`` up every seed collapses to chance, from ``diverge`` up every seed diverges."""
    diverged, collapsed = lr >= diverge, ceiling <= lr < diverge
    acc = 0.97 - 0.02 * math.log(lr / peak) ** 2
    return {
        "batch_size": b,
        "lr": lr,
        "val_acc_mean": math.nan if diverged else 0.1 if collapsed else acc,
        "n_seeds": 3,
        "n_diverged": 3 * diverged,
        "n_collapsed": 3 * collapsed,
    }


def _search(world: dict[int, tuple[float, ...]], lrs, max_rounds: int = 30, **kw):
    """Run ``refine_lrs`` to the end on ``world`` (batch size -> ``_row``'s (peak, ceiling[,
    diverge])); returns the final summary, the rounds it took and every proposal made."""
    summary = pd.DataFrame([_row(b, lr, *world[b]) for b in world for lr in lrs])
    proposed: list[tuple[int, float]] = []
    for rounds in range(max_rounds + 1):
        todo = refine_lrs(summary, SQRT2, **kw)
        if not any(todo.values()):
            return summary, rounds, proposed
        proposed += [(b, lr) for b, v in todo.items() for lr in v]
        new = [_row(b, lr, *world[b]) for b, v in todo.items() for lr in v]
        summary = pd.concat([summary, pd.DataFrame(new)], ignore_index=True)
    raise AssertionError(f"no end after {max_rounds} rounds")


def test_refinement_ends_with_neighbours_within_sqrt2() -> None:
    world = {32: (0.05, 0.5), 128: (0.12, 0.7), 1024: (0.4, 1.5)}
    summary, rounds, _ = _search(world, lr_grid())  # x3 from 0.0037 to 2.7
    assert 1 <= rounds <= 4
    bracket = best_lr_interval(summary).set_index("batch_size")
    assert (bracket["edge"] == "").all()
    assert (bracket["within"] <= SQRT2 * (1 + 1e-4)).all()
    for b, (peak, _) in world.items():
        lo, hi = bracket.loc[b, "lr_low"], bracket.loc[b, "lr_high"]
        assert lo < peak < hi  # the true best lies between the best's neighbours
        assert abs(math.log(bracket.loc[b, "lr"] / peak)) <= math.log(SQRT2) + 1e-9
    # Done: nothing more to propose.
    assert refine_lrs(summary) == {b: () for b in world}


def test_best_at_the_edge_extends_the_grid() -> None:
    # Peaks below the grid (0.001 < 0.0037) and above the largest lr, with nothing failing.
    world = {8: (0.001, math.inf), 4096: (5.0, math.inf)}
    summary, rounds, proposed = _search(world, (0.0037, 0.011, 0.033, 0.1, 0.3, 0.9, 2.7))
    assert rounds <= 6
    bracket = best_lr_interval(summary).set_index("batch_size")
    assert bracket.loc[8, "lr"] < 0.0037 and bracket.loc[8, "within"] <= SQRT2 * (1 + 1e-4)
    assert bracket.loc[4096, "lr"] > 2.7 and bracket.loc[4096, "within"] <= SQRT2 * (1 + 1e-4)
    first = [lr for b, lr in proposed if b == 8][0]
    assert first == pytest.approx(0.0037 / 3, rel=1e-5)  # one x3 step down first
    assert min(lr for b, lr in proposed if b == 8) == pytest.approx(0.0037 / 9, rel=1e-4)  # 0.0012 was best


def test_a_peak_beyond_the_bounds_stops_at_the_bound() -> None:
    summary, _, proposed = _search({64: (50.0, math.inf)}, (1.0, 3.0))
    assert max(lr for _, lr in proposed) == LR_BOUNDS[1]
    row = best_lr_interval(summary).iloc[0]
    assert row["lr"] == LR_BOUNDS[1] and row["edge"] == "high" and math.isinf(row["within"])


@pytest.mark.parametrize("fails", ["collapse", "diverge"])
def test_search_stops_at_failed_lrs(fails: str) -> None:
    # Accuracy still rises where runs start to collapse or diverge (0.25): the failure bounds it.
    world = {16: (1.0, 0.25, math.inf) if fails == "collapse" else (1.0, math.inf, 0.25)}
    summary, _, proposed = _search(world, (0.011, 0.033, 0.1, 0.3, 0.9))
    assert proposed and all(lr < 0.25 for _, lr in proposed)
    row = best_lr_interval(summary).iloc[0]
    assert 0.1 < row["lr"] < 0.25 and row["lr_high"] == 0.3 and row["within"] <= SQRT2 * (1 + 1e-4)
    c = collapse_lr(summary).iloc[0]
    assert c["collapse_lr"] == 0.3 and c["max_ok_lr"] == row["lr"] and c["n_failed_at_collapse"] == 3


def test_every_lr_failed_steps_down() -> None:
    summary = pd.DataFrame([_row(8, lr, 0.01, 0.05) for lr in (0.1, 0.3)])
    assert refine_lrs(summary) == {8: (pytest.approx(0.1 / 3, rel=1e-5),)}
    assert best_lr_interval(summary).empty
    c = collapse_lr(summary).iloc[0]
    assert math.isnan(c["best_lr"]) and math.isnan(c["max_ok_lr"]) and c["collapse_lr"] == 0.1


def test_collapse_lr_ignores_slow_small_lrs_and_brackets_the_ceiling() -> None:
    rows = [
        {"lr": 0.001, "val_acc_mean": 0.11, "n_diverged": 0, "n_collapsed": 3},  # too slow: at chance
        {"lr": 0.01, "val_acc_mean": 0.90, "n_diverged": 0, "n_collapsed": 0},
        {"lr": 0.1, "val_acc_mean": 0.96, "n_diverged": 0, "n_collapsed": 0},
        {"lr": 0.3, "val_acc_mean": 0.95, "n_diverged": 0, "n_collapsed": 0},
        {"lr": 1.0, "val_acc_mean": 0.60, "n_diverged": 0, "n_collapsed": 1},
        {"lr": 3.0, "val_acc_mean": np.nan, "n_diverged": 3, "n_collapsed": 0},
    ]
    summary = pd.DataFrame([{"batch_size": 32, "n_seeds": 3, **r} for r in rows])
    calm = summary[summary["lr"] <= 0.3].assign(batch_size=64)
    c = collapse_lr(pd.concat([summary, calm])).set_index("batch_size")
    assert c.loc[32, ["best_lr", "max_ok_lr", "collapse_lr", "n_failed_at_collapse"]].tolist() == [
        0.1,
        0.3,
        1.0,
        1,
    ]
    assert c.loc[32, "ratio"] == pytest.approx(1 / 0.3)
    assert c.loc[64, "max_ok_lr"] == 0.3 and math.isnan(c.loc[64, "collapse_lr"])
    # With ceiling=True the search also narrows 0.3 .. 1.0 to within sqrt 2.
    plain, ceiling = refine_lrs(summary)[32], refine_lrs(summary, ceiling=True)[32]
    assert pytest.approx(math.sqrt(0.3)) in ceiling and pytest.approx(math.sqrt(0.3)) not in plain


def test_refine_lrs_rejects_summaries_without_the_columns() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        refine_lrs(pd.DataFrame({"batch_size": [8], "lr": [0.1]}))


def test_search_lr_on_mnist_matches_one_grid(mnist) -> None:
    common = dict(train_limit=1500, holdout=500, epochs=1)
    history = search_lr((100,), (0.01, 0.1, 1.0), (0,), data=mnist, factor=2.0, max_rounds=3, **common)
    assert history["search_round"].max() >= 1
    summary = lr_search_summary(history)
    tried = sorted(summary["lr"])
    assert len(tried) > 3 and summary["n_seeds"].eq(1).all()
    # The same lrs in one grid give the same runs: a replica does not depend on the others.
    grid = tune_lr((100,), tried, (0,), data=mnist, **common)
    a = history.set_index(["lr", "epoch"])["val_acc"].sort_index()
    b = grid.set_index(["lr", "epoch"])["val_acc"].sort_index()
    pd.testing.assert_series_equal(a, b)


def test_halving_stops_the_lrs_out_of_the_running_after_the_first_epoch(mnist):
    from mlpmnist.science.lr_tuning import Halving, tune_lr

    rule = Halving(margin=0.05)
    rows = [
        {"lr": 0.1, "val_acc": 0.90, "collapsed": False},
        {"lr": 0.1, "val_acc": 0.92, "collapsed": False},
        {"lr": 0.01, "val_acc": 0.80, "collapsed": False},
        {"lr": 0.5, "val_acc": 0.91, "collapsed": True},
    ]
    assert rule(rows) == [False, False, True, True] and rule(rows) == [False] * 4  # only once
    h = tune_lr((100,), (0.003, 0.1, 1.6), (0, 1), 2, mnist, halving=0.05, train_limit=3000, holdout=500)
    epochs = h.groupby("lr")["epoch"].max().to_dict()
    assert epochs[0.1] == 2 and epochs[1.6] == 1 and epochs[0.003] == 1
