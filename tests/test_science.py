"""The batch-size science: noise-scale estimator, steps to target, per-replica lr, notebook."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlpmnist import TrainConfig, train
from mlpmnist.noise import (
    estimate_noise_scale,
    exact_noise_scale,
    mlp_chunk_grads,
    noise_scale_from_norms,
)
from mlpmnist.science import (
    REFERENCE_RECIPE,
    Recipe,
    _lost_race,
    best_lr,
    eval_steps,
    first_reaching,
    lr_grid,
    lr_summary,
    scaling_regimes,
    steps_table,
    train_to_target,
    translate,
    tune_lr,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "batch_science.ipynb"


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


# ---------------------------------------------------------------------------------------------
# Steps to target


def test_first_reaching_on_synthetic_history() -> None:
    steps = [1, 2, 4, 8, 16, 32]
    curve = pd.DataFrame(
        [
            {"batch_size": 8, "seed": 0, "lr": 0.1, "step": s, "val_acc": a}
            for s, a in zip(steps, [0.5, 0.9, 0.969, 0.97, 0.96, 0.99])
        ]
        + [
            {"batch_size": 8, "seed": 1, "lr": 0.1, "step": s, "val_acc": a}
            for s, a in zip(steps, [0.5, 0.97, 0.2, 0.3, 0.4, 0.5])
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
    assert math.isnan(table.loc[64, "steps"])
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
    assert row["lr"] == 0.1 and row["steps"] == 50


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


def test_eval_steps_geometric() -> None:
    s = eval_steps(10_000, 1.05, first=3)
    assert s[0] == 3 and s[-1] == 10_000
    assert np.all(np.diff(s) > 0)
    assert np.all(s[1:] / s[:-1] <= 1.05 + 1 / s[:-1])  # relative resolution ratio (plus rounding)
    assert list(eval_steps(5, 2.0)) == [1, 2, 4, 5]
    with pytest.raises(ValueError, match="ratio"):
        eval_steps(10, 1.0)


def test_lr_grid_and_best_lr() -> None:
    grid = lr_grid()
    assert 0.1 in grid and grid[0] == pytest.approx(0.1 / 27, rel=1e-5) and len(grid) == 7
    with pytest.raises(ValueError):
        lr_grid(factor=1.0)
    rows = []
    for seed in (0, 1):
        for lr, acc in ((0.01, 0.90), (0.1, 0.95), (1.0, 0.96)):
            rows.append(
                {
                    "batch_size": 32,
                    "seed": seed,
                    "lr": lr,
                    "epoch": 2,
                    "val_acc": acc,
                    "test_acc": acc - 0.01,
                    "diverged": False,
                }
            )
    rows[-1]["diverged"] = True  # lr 1.0 diverged for one seed: ruled out
    best = best_lr(pd.DataFrame(rows)).iloc[0]
    assert best["lr"] == 0.1
    assert best["test_acc_mean"] == pytest.approx(0.94)
    assert best["ref_test_acc_mean"] == pytest.approx(0.94)


# ---------------------------------------------------------------------------------------------
# Per-replica learning rates (real data, real engine)


def test_per_replica_lr_equals_separate_runs(mnist) -> None:
    common = dict(batch_size=50, epochs=2, train_limit=1200, holdout=200, threads=1, device="cpu")
    lrs = (0.02, 0.1, 0.3)
    grid = train(TrainConfig(seeds=(4, 4, 4), lr=lrs, **common), mnist, progress=False, verbose=False)
    cols = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]
    for r, lr in enumerate(lrs):
        single = train(TrainConfig(seeds=(4,), lr=lr, **common), mnist, progress=False, verbose=False)
        mine = grid.history[grid.history["lr"] == lr].reset_index(drop=True)
        np.testing.assert_allclose(
            mine[cols].to_numpy(float), single.history[cols].to_numpy(float), rtol=1e-4, atol=1e-5
        )
        for k, v in single.state_dicts[0].items():
            torch.testing.assert_close(grid.state_dicts[r][k], v, rtol=1e-4, atol=1e-5)
    # The learning rates really differ: the replicas end up apart.
    assert not torch.allclose(grid.state_dicts[0]["layers.0.weight"], grid.state_dicts[2]["layers.0.weight"])


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
    for lr in (0.01, 0.1):
        alone = train_to_target(32, (lr,), (1,), mnist, **kw)
        mine = both[both["lr"] == lr].reset_index(drop=True)
        np.testing.assert_allclose(mine["val_acc"], alone["val_acc"], atol=1e-6)
        assert list(mine["step"]) == list(alone["step"])
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


def test_lost_race_rule() -> None:
    replicas = [(s, lr) for lr in (0.1, 0.3) for s in (0, 1, 2)]  # indices 0-2: lr 0.1, 3-5: lr 0.3
    # Nothing settled yet: nobody loses.
    assert _lost_race(replicas, {0: 50}, 60) == set()
    # lr 0.1 settled at median 80 (2 of 3 seeds); lr 0.3 has one seed at 40, the others > 100.
    assert _lost_race(replicas, {0: 50, 1: 80, 3: 40}, 100) == {0.3}
    # At step 70 lr 0.3 could still have median 70 < 80.
    assert _lost_race(replicas, {0: 50, 1: 80, 3: 40}, 70) == set()


def test_tune_lr_and_recipes_drop_the_ragged_last_batch(mnist) -> None:
    # 2,500 training images at batch 90: 27 full batches and a remainder of 70, left out.
    kw = dict(holdout=500, train_limit=3000, threads=1)
    hist = tune_lr((90,), (0.05, 0.2), (0,), 1, mnist, **kw)
    summ = lr_summary(hist)
    assert list(summ["lr"]) == [0.05, 0.2] and (summ["batch_size"] == 90).all()
    cols = ["train_loss", "val_acc", "test_acc"]
    for lr in (0.05, 0.2):
        mine = hist[hist["lr"] == lr][cols].to_numpy(float)
        for drop_last in (True, False):
            cfg = TrainConfig(batch_size=90, epochs=1, lr=lr, seeds=(0,), drop_last=drop_last, **kw)
            alone = train(cfg, mnist, progress=False, verbose=False).history[cols].to_numpy(float)
            if drop_last:
                np.testing.assert_allclose(mine, alone, rtol=1e-4, atol=1e-5)
            else:  # the 70-image step changes the result
                assert not np.allclose(mine, alone, rtol=1e-4, atol=1e-5)
    assert Recipe().config((0,)).drop_last and REFERENCE_RECIPE.config((0,)).drop_last
    ref = REFERENCE_RECIPE
    assert (ref.batch_size, ref.epochs, ref.lr) == (90, 15, 0.1)
    assert (ref.momentum, ref.weight_decay, ref.schedule) == (0.0, 0.0, "constant")
    assert "ragged" in Recipe(drop_last=False).describe() and "ragged" not in Recipe().describe()


def test_translate_moves_whole_pixels() -> None:
    x = torch.full((2, 784), -1.0)
    x[:, 10 * 28 + 12] = 1.0
    # max_shift 1: shift id 8 = (dy, dx) = (+1, +1); id 4 = no move.
    out = translate(x, torch.tensor([8, 4]), 1)
    assert out[0].argmax().item() == 11 * 28 + 13 and out[1].argmax().item() == 10 * 28 + 12
    assert out.min() == -1.0 and (out == 1.0).sum() == 2
    with pytest.raises(ValueError, match="max_shift"):
        Recipe(max_shift=9)


# ---------------------------------------------------------------------------------------------
# The notebook, quick mode, through papermill


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
        cwd=str(NOTEBOOK.parent),
        progress_bar=False,
    )
    for name in ("science_lr_tuning", "science_steps_to_target", "science_noise_scale", "science_tuned"):
        png = tmp_path / "media" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 10_000, name
    nb = json.loads(out.read_text())
    text = "".join(
        "".join(o.get("text", ""))
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    )
    for claim in ("best lr", "steps to", "B_simple", "tuned recipe"):
        assert claim in text, claim
    summary = json.loads((tmp_path / "results" / "science_summary.json").read_text())
    assert {"best_lr", "steps_to_target", "noise_scale", "tuned"} <= set(summary)
