"""The batch-size science: noise-scale estimator, steps to target and its stop rule, per-replica
lr, presets, the candidate-lr rule, recipe selection, the summary record, the notebook."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlpmnist import TrainConfig, train
from mlpmnist.science import (
    COARSE_LRS,
    FULL,
    QUICK,
    REFERENCE_RECIPE,
    Recipe,
    RecipeRun,
    Stopwatch,
    TargetRace,
    best_lr,
    candidate_lrs,
    estimate_noise_scale,
    eval_steps,
    exact_noise_scale,
    first_reaching,
    headline,
    lost_race,
    lr_grid,
    lr_summary,
    mlp_chunk_grads,
    noise_scale_during_training,
    noise_scale_from_norms,
    preset,
    run_recipe,
    scaling_regimes,
    select_recipe,
    steps_table,
    summary_record,
    train_to_target,
    try_scaling_regimes,
    tune_lr,
    write_summary,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "batch_science.ipynb"
QUIET = dict(progress=False, verbose=False)


# ---------------------------------------------------------------------------------------------
# Gradient noise scale


def _least_squares(n: int = 4000, p: int = 12, seed: int = 0):
    """A linear model with loss 0.5 (w.x - y)^2 away from its optimum: gradients are exact."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2.0, p, dtype=torch.float64)
    y = x @ torch.randn(p, generator=g, dtype=torch.float64) + 0.7 * torch.randn(
        n, generator=g, dtype=torch.float64
    )
    w = torch.full((p,), 0.25, dtype=torch.float64)

    def chunk_grads(xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
        r = xc @ w - yc  # [k, b]
        return (r.unsqueeze(-1) * xc).mean(1)  # gradient of the mean loss per chunk

    per_example = (x @ w - y).unsqueeze(1) * x
    return x, y, chunk_grads, per_example


def test_noise_scale_matches_exact_least_squares() -> None:
    x, y, chunk_grads, per_example = _least_squares()
    trace, grad_sq, b_simple = exact_noise_scale(per_example)
    assert 1 < b_simple < 1000  # a problem where both parts matter
    est = estimate_noise_scale(chunk_grads, x, y, 8, 128, 3000, torch.Generator().manual_seed(1))
    assert est.trace == pytest.approx(trace, rel=0.05)
    assert est.grad_sq == pytest.approx(grad_sq, rel=0.05)
    assert est.b_simple == pytest.approx(b_simple, rel=0.08)
    # The plain big-batch norm is biased upward by tr(Sigma)/B_big; the estimator removes it.
    assert est.g2_big == pytest.approx(grad_sq + trace / 128, rel=0.05)


def test_noise_scale_from_norms_inverts_the_model() -> None:
    trace, grad_sq = 37.0, 0.8
    for bs, bb in ((4, 64), (32, 1024)):
        g2s, g2b = grad_sq + trace / bs, grad_sq + trace / bb
        t, g, b = noise_scale_from_norms(g2s, g2b, bs, bb)
        assert (t, g, b) == pytest.approx((trace, grad_sq, trace / grad_sq))
    with pytest.raises(ValueError, match="b_small"):
        noise_scale_from_norms(1.0, 1.0, 64, 64)


def test_noise_scale_rejects_bad_batches() -> None:
    x, y, chunk_grads, _ = _least_squares(100, 3)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="multiple"):
        estimate_noise_scale(chunk_grads, x, y, 3, 10, 2, gen)
    with pytest.raises(ValueError, match="n_big"):
        estimate_noise_scale(chunk_grads, x, y, 2, 10, 0, gen)


def test_mlp_chunk_grads_match_autograd(mnist) -> None:
    from mlpmnist.model import MLP

    model = MLP(generator=torch.Generator().manual_seed(3))
    x, y = mnist.train.x[:48].reshape(3, 16, -1), mnist.train.y[:48].reshape(3, 16)
    got = mlp_chunk_grads(model.state_dict())(x, y)
    for k in range(3):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[k]), y[k]).backward()
        want = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(got[k], want, rtol=1e-4, atol=1e-6)


def test_noise_scale_during_training_rows(mnist) -> None:
    ns = noise_scale_during_training(
        50,
        0.1,
        mnist,
        epochs=(0, 2),
        b_small=16,
        b_big=256,
        n_big=2,
        train_limit=2000,
        holdout=500,
        threads=1,
    )
    assert list(ns["epoch"]) == [0, 2] and list(ns["step"]) == [0, 2 * (1500 // 50)]
    assert list(ns["seed"]) == [0, 0]
    assert math.isnan(ns["val_acc"].iloc[0]) and 0.5 < ns["val_acc"].iloc[1] <= 1
    assert (ns["trace"] > 0).all() and ns["train_loss_full"].iloc[1] < ns["train_loss_full"].iloc[0]


# ---------------------------------------------------------------------------------------------
# Steps to target


def test_first_reaching_on_synthetic_history() -> None:
    steps = [1, 2, 4, 8, 16, 32]
    curve = pd.DataFrame(
        [
            {"batch_size": 8, "seed": 0, "lr": 0.1, "step": s, "val_acc": a}
            for s, a in zip(steps, [0.5, 0.9, 0.969, 0.97, 0.96, 0.99], strict=True)
        ]
        + [
            {"batch_size": 8, "seed": 1, "lr": 0.1, "step": s, "val_acc": a}
            for s, a in zip(steps, [0.5, 0.97, 0.2, 0.3, 0.4, 0.5], strict=True)
        ]
        + [  # never reaches the target
            {"batch_size": 64, "seed": 0, "lr": 0.3, "step": s, "val_acc": 0.9} for s in steps
        ]
    ).sample(frac=1.0, random_state=0)  # order must not matter
    first = first_reaching(curve, target=0.97).set_index(["batch_size", "seed"])
    assert first.loc[(8, 0), "steps"] == 8  # >= target, the first crossing (not the last)
    assert first.loc[(8, 1), "steps"] == 2
    assert first.loc[(8, 0), "examples"] == 64
    assert math.isnan(first.loc[(64, 0), "steps"])
    assert first.loc[(64, 0), "max_step"] == 32
    table = steps_table(first.reset_index()).set_index("batch_size")
    assert table.loc[8, "steps"] == 5  # median of 8 and 2
    assert (table.loc[8, "steps_min"], table.loc[8, "steps_max"]) == (2, 8)
    assert math.isnan(table.loc[64, "steps"]) and table.loc[64, "lr"] == 0.3
    with pytest.raises(ValueError, match="lacks"):
        first_reaching(curve.drop(columns="step"))


def test_steps_table_picks_fastest_lr_where_every_seed_reached() -> None:
    first = pd.DataFrame(
        {
            "batch_size": [16] * 6,
            "seed": [0, 1, 0, 1, 0, 1],
            "lr": [0.01, 0.01, 0.1, 0.1, 1.0, 1.0],
            "steps": [100.0, 120.0, 40.0, 60.0, 10.0, np.nan],
        }
    )
    row = steps_table(first).iloc[0]
    assert row["lr"] == 0.1 and row["steps"] == 50 and row["examples"] == 800 and row["n_seeds"] == 2


def test_scaling_regimes_recovers_critical_batch() -> None:
    b = np.array([8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096], float)
    s_min, b_crit = 300.0, 200.0
    table = pd.DataFrame({"batch_size": b.astype(int), "steps": s_min * (1 + b_crit / b)})
    sc = scaling_regimes(table)
    assert sc.b_crit == pytest.approx(b_crit, rel=1e-4)
    assert sc.s_min == pytest.approx(s_min, rel=1e-4)
    assert sc.perfect_end == pytest.approx(b_crit / 4, rel=1e-4)
    assert sc.diminishing_end == pytest.approx(4 * b_crit, rel=1e-4)
    assert (sc.perfect_end_measured, sc.diminishing_end_measured) == (32, 512)
    # Measured slopes go from near -1 (perfect scaling) towards 0 (no gain).
    assert sc.local_slopes["slope"].iloc[0] < -0.9 and sc.local_slopes["slope"].iloc[-1] > -0.1
    with pytest.raises(ValueError, match="at least 3"):
        scaling_regimes(table.head(2))
    assert try_scaling_regimes(table.head(2)) is None


def test_eval_steps_geometric() -> None:
    s = eval_steps(10_000, 1.05, first=3)
    assert s[0] == 3 and s[-1] == 10_000
    assert np.all(np.diff(s) > 0)
    assert np.all(s[1:] / s[:-1] <= 1.05 + 1 / s[:-1])  # relative resolution ratio (plus rounding)
    assert list(eval_steps(5, 2.0)) == [1, 2, 4, 5]
    with pytest.raises(ValueError, match="ratio"):
        eval_steps(10, 1.0)


def test_lost_race_rule() -> None:
    replicas = [(s, lr) for lr in (0.1, 0.3) for s in (0, 1, 2)]
    # Nothing settled yet: nobody loses.
    assert lost_race(replicas, {(0, 0.1): 50}, 60) == set()
    # lr 0.1 settled at median 80 (2 of 3 seeds); lr 0.3 has one seed at 40, the others > 100.
    reached = {(0, 0.1): 50, (1, 0.1): 80, (0, 0.3): 40}
    assert lost_race(replicas, reached, 100) == {0.3}
    # At step 70 lr 0.3 could still have median 70 < 80.
    assert lost_race(replicas, reached, 70) == set()
    # An even count is settled only when every seed is there.
    two = [(s, lr) for lr in (0.1, 0.3) for s in (0, 1)]
    assert lost_race(two, {(0, 0.1): 10}, 500) == set()
    assert lost_race(two, {(0, 0.1): 10, (1, 0.1): 30}, 31) == {0.3}


def _rows(step: int, accs: dict[tuple[int, float], float]) -> list[dict]:
    return [{"seed": s, "lr": lr, "step": step, "val_acc": a} for (s, lr), a in accs.items()]


def test_target_race_stop_rule() -> None:
    replicas = [(s, lr) for s in (0, 1, 2) for lr in (0.1, 0.3)]
    rule = TargetRace(replicas, target=0.9)
    # Step 10: seeds 0 and 1 reach at lr 0.1 (settled median 10 with 3 seeds); they stop, and lr
    # 0.3, whose seeds are all below the target, can no longer win.
    accs = {(0, 0.1): 0.95, (0, 0.3): 0.5, (1, 0.1): 0.91, (1, 0.3): 0.6, (2, 0.1): 0.8, (2, 0.3): 0.7}
    assert rule(_rows(10, accs)) == [True, False, True, False, False, False]
    assert rule.reached == {(0, 0.1): 10, (1, 0.1): 10}
    assert rule(_rows(11, {(0, 0.3): 0.5, (1, 0.3): 0.6, (2, 0.1): 0.8, (2, 0.3): 0.7})) == [
        True,
        True,
        False,
        True,
    ]
    # Without the race only reaching the target stops a replica; NaN (diverged) never reaches.
    plain = TargetRace(replicas, target=0.9, race=False)
    assert plain(_rows(10, {**accs, (2, 0.1): math.nan})) == [True, False, True, False, False, False]


def test_train_to_target_per_replica_lr_and_stop(mnist) -> None:
    kw = dict(
        target=0.8,
        max_epochs=6,
        train_limit=3000,
        holdout=1000,
        threads=1,
        eval_ratio=1.1,
        eval_from_examples=64,
    )
    both = train_to_target(32, (0.01, 0.1), (1,), mnist, race=False, **kw)
    assert {"batch_size", "examples", "val_acc", "diverged"} <= set(both.columns)
    assert "test_acc" not in both.columns and (both["examples"] == 32 * both["step"]).all()
    for lr in (0.01, 0.1):
        # A run of one lr folds it into the engine's alpha, a grid scales per replica: the same
        # steps up to float rounding, which a hundred steps can turn into an image or two.
        alone = train_to_target(32, (lr,), (1,), mnist, **kw).set_index("step")["val_acc"]
        mine = both[both["lr"] == lr].set_index("step")["val_acc"]
        common = mine.index.intersection(alone.index)
        assert len(common) >= min(len(mine), len(alone)) - 1
        np.testing.assert_allclose(mine[common], alone[common], atol=0.005)
    first = first_reaching(both, 0.8).set_index("lr")
    assert first["steps"].notna().all()
    # Each replica stops at the evaluation where it first reaches the target.
    for lr, g in both.groupby("lr"):
        assert g["step"].max() == first.loc[lr, "steps"]
        assert (g["val_acc"].iloc[:-1] < 0.8).all()
    # Racing: the slower lr stops as soon as it can no longer win, with the same curve so far.
    fast, slow = first["steps"].idxmin(), first["steps"].idxmax()
    assert first.loc[fast, "steps"] < first.loc[slow, "steps"]
    raced = train_to_target(32, (0.01, 0.1), (1,), mnist, **kw)
    cut = raced[raced["lr"] == slow]
    assert first.loc[fast, "steps"] <= cut["step"].max() < first.loc[slow, "steps"]
    np.testing.assert_allclose(
        cut["val_acc"], both[both["lr"] == slow]["val_acc"].iloc[: len(cut)], atol=1e-6
    )
    table = steps_table(first_reaching(raced, 0.8))
    assert table["lr"].iloc[0] == fast and table["steps"].iloc[0] == first.loc[fast, "steps"]
    with pytest.raises(ValueError, match="holdout"):
        train_to_target(32, (0.1,), (1,), mnist, holdout=0, train_limit=3000)


# ---------------------------------------------------------------------------------------------
# Learning-rate tuning and the candidate-lr rule


def _tuning_rows(accs: dict[float, float], diverged: set[tuple[int, float]] = frozenset()) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "batch_size": 32,
                "seed": seed,
                "lr": lr,
                "epoch": 2,
                "val_acc": acc,
                "test_acc": acc - 0.01,
                "diverged": (seed, lr) in diverged,
            }
            for seed in (0, 1)
            for lr, acc in accs.items()
        ]
    )


def test_lr_grid_and_best_lr() -> None:
    grid = lr_grid()
    assert 0.1 in grid and grid[0] == pytest.approx(0.1 / 27, rel=1e-5) and len(grid) == 7
    with pytest.raises(ValueError):
        lr_grid(factor=1.0)
    hist = _tuning_rows({0.01: 0.90, 0.1: 0.95, 1.0: 0.96}, diverged={(1, 1.0)})
    best = best_lr(hist).iloc[0]  # lr 1.0 diverged for one seed: ruled out
    assert best["lr"] == 0.1 and best["lr_interp"] == 0.1  # next to a diverged lr: no parabola
    assert best["test_acc_mean"] == pytest.approx(0.94)
    assert best["ref_test_acc_mean"] == pytest.approx(0.94)
    peak = best_lr(_tuning_rows({0.01: 0.90, 0.1: 0.95, 1.0: 0.92})).iloc[0]
    assert 0.1 < peak["lr_interp"] < 1.0  # the parabola leans towards the better neighbour


def test_candidate_lrs_rule() -> None:
    hist = pd.concat(
        [
            _tuning_rows({0.01: 0.90, 0.1: 0.95, 1.0: 0.80}),  # next lr up is fine: both race
            _tuning_rows({0.01: 0.90, 0.1: 0.95, 1.0: 0.80}, {(0, 1.0)}).assign(batch_size=64),
            _tuning_rows({0.01: 0.90, 0.1: 0.85, 1.0: 0.97}).assign(batch_size=128),  # top of grid
        ]
    )
    summary, best = lr_summary(hist), best_lr(hist)
    assert candidate_lrs(summary, best) == {32: (0.1, 1.0), 64: (0.1,), 128: (1.0,)}


def test_tune_lr_drops_the_ragged_last_batch_and_matches_single_runs(mnist) -> None:
    # 2,500 training images at batch 90: 27 full batches and a remainder of 70, left out.
    kw = dict(holdout=500, train_limit=3000, threads=1)
    hist = tune_lr((90,), (0.03, 0.1), (0,), 1, mnist, **kw)
    summ = lr_summary(hist)
    assert list(summ["lr"]) == [0.03, 0.1] and (summ["batch_size"] == 90).all()
    assert hist.columns[0] == "batch_size" and (hist["step"] == 27).all()
    cols = ["train_loss", "val_acc", "test_acc"]
    for lr in (0.03, 0.1):  # stable lrs: at the edge of divergence rounding decides
        mine = hist[hist["lr"] == lr][cols].to_numpy(float)
        for drop_last in (True, False):
            cfg = TrainConfig(batch_size=90, epochs=1, lr=lr, seeds=(0,), drop_last=drop_last, **kw)
            alone = train(cfg, mnist, **QUIET).history[cols].to_numpy(float)
            if drop_last:
                np.testing.assert_allclose(mine, alone, rtol=1e-4, atol=1e-5)
            else:  # the 70-image step changes the result
                assert not np.allclose(mine, alone, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Recipes


def test_recipe_config() -> None:
    cfg = Recipe(max_shift=1).config((0, 1), holdout=500, threads=1)
    assert (cfg.max_shift, cfg.momentum, cfg.schedule, cfg.drop_last) == (1, 0.9, "cosine", True)
    assert (cfg.seeds, cfg.holdout, cfg.device) == ((0, 1), 500, "cpu")
    assert REFERENCE_RECIPE.config((0,)).drop_last
    ref = REFERENCE_RECIPE
    assert (ref.batch_size, ref.epochs, ref.lr) == (90, 15, 0.1)
    assert (ref.momentum, ref.weight_decay, ref.schedule, ref.max_shift) == (0.0, 0.0, "constant", 0)
    assert "ragged" in Recipe(drop_last=False).describe() and "ragged" not in Recipe().describe()
    assert "shifts of up to 1 px" in Recipe(max_shift=1).describe()
    with pytest.raises(ValueError, match="max_shift"):
        Recipe(max_shift=9)


def test_augmented_recipe_is_train_with_max_shift(mnist) -> None:
    rec = Recipe(batch_size=100, epochs=1, max_shift=1)
    kw = dict(holdout=500, train_limit=2000, threads=1)
    run = run_recipe(rec, (0, 1), mnist, **kw)
    again = train(rec.config((0, 1), **kw), mnist, **QUIET).history
    pd.testing.assert_frame_equal(
        run.history.drop(columns=["seconds", "eval_seconds"]), again.drop(columns=["seconds", "eval_seconds"])
    )
    assert list(run.last["seed"]) == [0, 1] and (run.last["epoch"] == 1).all()


def _run(val: list[float], test: list[float], **recipe: object) -> RecipeRun:
    last = pd.DataFrame({"seed": range(len(val)), "epoch": 3, "val_acc": val, "test_acc": test})
    return RecipeRun(Recipe(**recipe), last.assign(diverged=False), last)


def test_select_recipe_by_validation_only() -> None:
    a = _run([0.97, 0.98], [0.99, 0.99])
    b = _run([0.98, 0.985], [0.97, 0.97], max_shift=1)  # better on validation, worse on test
    assert select_recipe([a, b]) is b and select_recipe([b, a]) is b
    assert select_recipe([a, _run([0.97, 0.98], [0.5, 0.5])]) is a  # a tie keeps the first
    with pytest.raises(ValueError, match="no recipe"):
        select_recipe([])
    with pytest.raises(ValueError, match="validation"):
        select_recipe([RecipeRun(a.recipe, a.history, a.last.drop(columns="val_acc"))])


# ---------------------------------------------------------------------------------------------
# Presets and the summary record


def test_presets() -> None:
    full = preset(False, threads=1)
    assert full.batch_sizes == FULL.batch_sizes and 8 in full.batch_sizes and 1024 in full.batch_sizes
    assert full.lrs == COARSE_LRS and 0.1 in full.lrs and full.target == 0.97
    assert full.seeds == tuple(range(6)) and full.second_seeds == tuple(range(6, 12))
    assert full.all_seeds == tuple(range(12)) and set(full.steps_batch_sizes) <= set(full.batch_sizes)
    assert full.common == {"holdout": 5000, "train_limit": None, "threads": 1}
    assert full.noise["batch_size"] in full.batch_sizes  # its lr comes from the tuning
    assert full.reference == REFERENCE_RECIPE and {r.max_shift for r in full.candidates} == {0, 1}
    quick = preset(True, seeds=[3, 4], second_seeds=[7, 8], target=0.9)
    assert (quick.seeds, quick.second_seeds, quick.target) == ((3, 4), (7, 8), 0.9)
    assert quick.train_limit == QUICK.train_limit == 20_000 and quick.holdout == 2_000
    assert preset(True).target == 0.92 and quick.noise["batch_size"] in quick.batch_sizes
    assert all(r.epochs <= 3 for r in (*quick.candidates, quick.reference))
    assert "quick=True" in quick.describe()
    with pytest.raises(ValueError, match="target"):
        preset(False, target=97)
    with pytest.raises(ValueError, match="seeds"):
        preset(False, seeds=[0, 0])
    with pytest.raises(ValueError, match="disjoint"):
        preset(False, seeds=[0, 1], second_seeds=[1, 2])


def test_summary_record_is_json_and_headline(tmp_path) -> None:
    ceiling = pd.DataFrame(
        {"batch_size": [8, 64], "lr": [0.01, 0.1], "max_ok_lr": [0.1, 0.2], "collapse_lr": [0.14, np.nan]}
    )
    noise = pd.DataFrame(
        {
            "seed": [0, 0, 0],
            "epoch": [0, 1, 2],
            "step": [0, 10, 20],
            "val_acc": [np.nan, 0.95, 0.975],
            "train_loss_full": [2.3, 0.3, 0.1],
            "grad_sq": [1.0, 0.1, 0.01],
            "trace": [30.0, 20.0, 10.0],
            "b_simple": [30.0, 200.0, 1000.0],
            "b_small": 64,
        }
    )
    headlines = pd.DataFrame(
        {
            "quantity": ["lr_slope", "b_crit"],
            "unit": ["exponent", "examples"],
            "estimate": [0.1, np.nan],
            "low": [-0.1, np.nan],
            "high": [0.3, np.nan],
            "second": [0.05, 120.0],
            "inside": [True, None],
        }
    )
    chosen, reference = _run([0.98, 0.99], [0.981, 0.982], max_shift=1), _run([0.97, 0.97], [0.96, 0.97])
    again = _run([0.98, 0.98], [0.983, 0.984], max_shift=1)
    record = summary_record(
        preset=preset(True),
        ceiling=ceiling,
        scaling={"slope": np.float64(0.14), "c": 0.02, "r2": 0.5},
        control=pd.DataFrame({"batch_size": [64], "ceiling_moved": [5.0]}),
        lambda_init=45.0,
        headlines=headlines,
        regimes=None,
        noise=noise,
        chosen=chosen,
        reference=reference,
        again=again,
        seconds={"lr_search": 1.5},
    )
    text = json.dumps(record, allow_nan=False)  # NaN became null: strict JSON
    back = json.loads(text)
    assert back["ceiling"][1]["collapse_lr"] is None and back["steps_to_target"]["perfect_end"] is None
    assert back["headlines"][1]["estimate"] is None and back["headlines"][1]["inside"] is None
    assert "b_small" not in back["noise_scale"][0] and back["noise_scale"][2]["b_simple"] == 1000.0
    assert back["tuned"]["test_acc"] == [0.981, 0.982] and back["tuned"]["second_test_acc"] == [0.983, 0.984]
    assert "shifts" in back["tuned"]["recipe"] and back["lr_scaling"]["slope"] == 0.14
    path = write_summary(record, tmp_path / "s" / "science_summary.json")
    assert json.loads(path.read_text()) == back
    text = headline(record)
    assert "8: 0.01 (0.1..0.14)" in text and "64: 0.1 (0.2..n/a)" in text
    assert "lr_slope: 0.1 [-0.1, 0.3] exponent; second run 0.05 (inside)" in text
    assert "b_crit: n/a [n/a, n/a] examples; second run 120 (n/a)" in text and "2/lambda_max 0.0444" in text


def test_stopwatch() -> None:
    clock = Stopwatch()
    a, b = clock.lap("a"), clock.lap("b")
    assert list(clock.laps) == ["a", "b"] and min(a, b) >= 0 and clock.total() >= a + b


# ---------------------------------------------------------------------------------------------
# The notebook: thin, and its quick mode through papermill


def test_notebook_is_thin() -> None:
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tags = [t for c in code for t in c["metadata"].get("tags", [])]
    assert tags.count("parameters") == 1 and "injected-parameters" not in tags
    assert max(len("".join(c["source"]).splitlines()) for c in code) <= 10
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    params = "".join(next(c["source"] for c in code if "parameters" in c["metadata"].get("tags", [])))
    for name in (
        "quick",
        "data_dir",
        "media_dir",
        "out_dir",
        "seeds",
        "second_seeds",
        "threads",
        "concurrency",
    ):
        assert f"{name} = " in params, name


@pytest.mark.slow
def test_notebook_quick(tmp_path, mnist) -> None:
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={
            "quick": True,
            "media_dir": str(tmp_path / "media"),
            "out_dir": str(tmp_path / "results"),
            "data_dir": str(Path(mnist.root).resolve()),
        },
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    names = ("lr_tuning", "ceiling", "steps_to_target", "noise_scale", "tuned", "headlines")
    for name in names:
        png = tmp_path / "media" / f"science_{name}.png"
        assert png.is_file() and png.stat().st_size > 10_000, name
    nb = json.loads(out.read_text())
    text = "".join(
        "".join(o.get("text", ""))
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    )
    for claim in (
        "best lr",
        "steps to",
        "B_simple",
        "tuned recipe",
        "lambda_max at initialisation",
        "control",
    ):
        assert claim in text, claim
    summary = json.loads((tmp_path / "results" / "science_summary.json").read_text())
    assert {"ceiling", "headlines", "steps_to_target", "noise_scale", "tuned", "control"} <= set(summary)
    assert summary["quick"] is True and len(summary["tuned"]["test_acc"]) == 2
    assert len(summary["tuned"]["second_test_acc"]) == 2 and summary["seeds"] != summary["second_seeds"]
    quantities = {h["quantity"] for h in summary["headlines"]}
    assert {"lr_slope", "b_crit", "tuned_test_acc"} <= quantities
    assert all({"low", "high", "second", "inside"} <= set(h) for h in summary["headlines"])


def test_a_target_reached_by_the_first_validation_is_flagged(mnist) -> None:
    # 80% on 3,000 images comes within two epochs at batch 32: validating only from the third
    # epoch on cannot say when it came, and the run says so.
    kw = dict(target=0.8, max_epochs=4, train_limit=3000, holdout=1000, threads=1, eval_ratio=1.1)
    with pytest.warns(RuntimeWarning, match="reached the target by the first validation"):
        late = train_to_target(32, (0.1,), (1,), mnist, eval_from_examples=6000, **kw)
    assert late["step"].min() == 6000 // 32 + 1 and late["val_acc"].iloc[0] >= 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_to_target(32, (0.1,), (1,), mnist, eval_from_examples=64, **kw)
