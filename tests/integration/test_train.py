"""Training on real MNIST: the fast engine against the reference, seeds and replicas independent,
per-replica lrs, the history's columns, snapshots, failed seeds kept and named, evaluation steps,
targets and shifts."""

import dataclasses
import math

import pytest
import torch

from mlpmnist import TrainConfig, train
from mlpmnist.training.augment import translate
from mlpmnist.training.health import chance_loss

QUIET = {"progress": False, "verbose": False}


def max_param_diff(a: list[dict], b: list[dict]) -> float:
    return max((x[k] - y[k]).abs().max().item() for x, y in zip(a, b, strict=True) for k in x)


def metrics(history):
    return history.drop(columns=["seconds", "eval_seconds"]).reset_index(drop=True)


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine", "lr": 0.05},
    ],
    ids=["plain-sgd", "momentum-wd-cosine"],
)
@pytest.mark.parametrize("dtype,steps,tol", [("float64", 300, 1e-9), ("float32", 40, 1e-5)])
def test_fast_engine_matches_reference(mnist, opts, dtype, steps, tol):
    # Same initialisation and batch order. In float32 a ReLU that sits on its kink in one
    # engine and not the other makes SGD's chaos visible after ~100 steps, so the long
    # comparison runs in float64.
    cfg = dict(batch_size=32, epochs=1, seeds=(0, 1), train_limit=32 * steps, dtype=dtype, **opts)
    fast = train(TrainConfig(engine="fast", **cfg), mnist, **QUIET)
    ref = train(TrainConfig(engine="reference", **cfg), mnist, **QUIET)
    init = train(TrainConfig(**{**cfg, "train_limit": 32, "snapshots": (0,)}), mnist, **QUIET)
    assert max_param_diff(fast.state_dicts, ref.state_dicts) < tol
    assert max_param_diff(ref.state_dicts, init.snapshots[0]) > 1000 * tol  # they did move
    f, r = metrics(fast.history), metrics(ref.history)
    assert (f["test_acc"] - r["test_acc"]).abs().max() <= 1e-4  # at most 1 of 10,000 images
    assert (f["train_loss"] - r["train_loss"]).abs().max() < 10 * tol


def test_same_seeds_same_history_and_replicas_independent(mnist):
    cfg = TrainConfig(batch_size=64, epochs=2, seeds=(0, 1), train_limit=4000)
    a, b = train(cfg, mnist, **QUIET), train(cfg, mnist, **QUIET)
    assert metrics(a.history).equals(metrics(b.history))
    assert max_param_diff(a.state_dicts, b.state_dicts) == 0.0
    # Alone or beside another replica: the same run, up to rounding in batched GEMMs (float64,
    # because in float32 SGD amplifies the last bit, on a GPU to ~1e-2 in two epochs).
    pair = train(TrainConfig(**{**dataclasses.asdict(cfg), "dtype": "float64"}), mnist, **QUIET)
    alone = train(
        TrainConfig(batch_size=64, epochs=2, seeds=(1,), train_limit=4000, dtype="float64"), mnist, **QUIET
    )
    assert max_param_diff(alone.state_dicts, pair.state_dicts[1:]) < 1e-8
    other = train(
        TrainConfig(batch_size=64, epochs=2, seeds=(2,), train_limit=4000, dtype="float64"), mnist, **QUIET
    )
    assert max_param_diff(other.state_dicts, pair.state_dicts[1:]) > 1e-2


def test_per_replica_lr_equals_separate_runs(mnist):
    base = dict(batch_size=50, epochs=1, train_limit=3000)
    grid = train(TrainConfig(seeds=(0, 0), lr=(0.02, 0.3), **base), mnist, **QUIET)
    for i, lr in enumerate((0.02, 0.3)):
        single = train(TrainConfig(seeds=(0,), lr=lr, **base), mnist, **QUIET)
        # Both scale the top gradient by each replica's lr (the same arithmetic); only batched
        # GEMMs over 2 replicas against 1 could round differently (here they do not).
        assert max_param_diff(single.state_dicts, grid.state_dicts[i : i + 1]) < 1e-6
    assert max_param_diff(grid.state_dicts[:1], grid.state_dicts[1:]) > 1e-2


def test_one_epoch_batch_128_learns(mnist):
    res = train(TrainConfig(batch_size=128, epochs=1, seeds=(0, 1, 2)), mnist, **QUIET)
    h = res.history
    assert len(h) == 3 and (h["epoch"] == 1).all() and not h["diverged"].any()
    assert h["test_acc"].mean() > 0.90
    assert h["train_loss"].between(0, math.log(10)).all()


def test_history_columns_and_last_partial_batch(mnist):
    # 1000 examples at batch 300: three full batches and one of 100, all used.
    res = train(
        TrainConfig(batch_size=300, epochs=2, seeds=(0,), train_limit=1000, holdout=0), mnist, **QUIET
    )
    h = res.history
    expected = {
        "seed",
        "lr",
        "epoch",
        "step",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "dead_1",
        "dead_2",
        "wnorm_1",
        "wnorm_2",
        "wnorm_3",
        "seconds",
        "eval_seconds",
        "diverged",
        "collapsed",
        "reached",
    }
    assert expected == set(h.columns)
    assert h["step"].tolist() == [4, 8] and h["epoch"].tolist() == [1, 2]
    assert h[["dead_1", "dead_2"]].stack().between(0, 1).all() and (h["wnorm_1"] > 0).all()
    acc = h["train_acc"] * 1000
    assert torch.allclose(torch.tensor(acc.to_numpy()), torch.tensor(acc.round().to_numpy()))


def test_holdout_adds_validation_metrics(mnist):
    cfg = TrainConfig(batch_size=20, epochs=1, seeds=(0,), train_limit=3000, holdout=1000)
    res = train(cfg, mnist, **QUIET)
    assert {"val_loss", "val_acc"} <= set(res.history.columns)
    row = res.history.iloc[0]
    assert row["val_acc"] > 0.7 and abs(row["val_acc"] - row["test_acc"]) < 0.1
    # 2000 training examples at batch 20: accuracy counts are multiples of 1/2000.
    assert round(row["train_acc"] * 2000, 6).is_integer()


def test_diverging_replica_stops_and_others_go_on(mnist):
    cfg = TrainConfig(batch_size=100, epochs=3, seeds=(0, 0), lr=(0.1, 1e4), train_limit=2000)
    res = train(cfg, mnist, **QUIET)
    h = res.history
    bad = h[h["lr"] == 1e4]
    good = h[h["lr"] == 0.1]
    assert len(bad) == 1 and bad["diverged"].all()
    assert len(good) == 3 and not good["diverged"].any()
    assert res.state_dicts[1] is None and res.state_dicts[0] is not None
    assert res.diverged == [0]


def test_snapshots_at_whole_and_fractional_epochs(mnist):
    cfg = TrainConfig(batch_size=500, epochs=2, seeds=(0,), train_limit=2000, snapshots=(0, 0.5, 2))
    res = train(cfg, mnist, **QUIET)
    assert sorted(res.snapshots) == [0.0, 0.5, 2.0]
    assert max_param_diff(res.snapshots[2.0], res.state_dicts) == 0.0
    assert max_param_diff(res.snapshots[0.0], res.state_dicts) > 0
    # After half an epoch (2 of 4 steps): neither the start nor the end; snapshots change nothing.
    assert min(max_param_diff(res.snapshots[0.5], res.snapshots[e]) for e in (0.0, 2.0)) > 0
    plain = train(TrainConfig(batch_size=500, epochs=2, seeds=(0,), train_limit=2000), mnist, **QUIET)
    assert metrics(plain.history).equals(metrics(res.history))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda(mnist):
    config = TrainConfig(device="cuda", epochs=1, seeds=(0,), train_limit=500)  # valid anywhere
    with pytest.raises(ValueError, match="device must be 'cpu' or 'auto' here"):
        train(config, mnist, **QUIET)  # checked when training starts, on this machine


def test_drop_last_uses_only_full_batches(mnist):
    cfg = dict(batch_size=300, epochs=1, seeds=(0,), train_limit=1000)
    keep = train(TrainConfig(**cfg), mnist, **QUIET)
    drop = train(TrainConfig(drop_last=True, **cfg), mnist, **QUIET)
    # 900 of 1000 examples in three steps: accuracy counts are multiples of 1/900, and the
    # first three steps are the same as with the remainder kept, so only the 4th step differs.
    assert round(drop.history["train_acc"].iloc[0] * 900, 6).is_integer()
    assert max_param_diff(keep.state_dicts, drop.state_dicts) > 0
    with pytest.raises(ValueError, match="drop_last must be"):
        TrainConfig(drop_last="yes")


def test_diverged_message_says_what_happened(mnist):
    cfg = TrainConfig(batch_size=100, epochs=1, seeds=(0,), lr=1e4, train_limit=1000)
    res = train(cfg, mnist, **QUIET)
    from mlpmnist.training.health import outcome_message

    row = res.history.iloc[-1].to_dict()
    msg = outcome_message(cfg, [row])
    assert "seed 0" in msg and "lower the learning rate" in msg
    finite = "its loss became NaN/inf" not in msg
    assert ("nats, above 1000" in msg) == finite


def test_collapsed_replicas_are_flagged_not_dropped(mnist):
    # Batch 500 at lr 1: every seed ends at chance (about 10%) without a non-finite loss.
    res = train(
        TrainConfig(batch_size=500, epochs=2, seeds=(0, 1), lr=1.0, train_limit=10_000), mnist, **QUIET
    )
    h = res.history
    assert len(h) == 4 and not h["diverged"].any() and h["collapsed"].all()
    assert (h["test_acc"] < 0.2).all() and res.collapsed == [0, 1] and res.diverged == []
    assert all(sd is not None for sd in res.state_dicts)
    ok = train(TrainConfig(batch_size=100, epochs=1, seeds=(0,), train_limit=3000), mnist, **QUIET)
    assert not ok.history["collapsed"].any() and ok.history["train_loss"].iloc[0] < chance_loss(10)


def test_eval_ratio_and_target(mnist):
    # 40 steps an epoch; validation after geometrically spaced steps from 200 images (step 4) on.
    cfg = TrainConfig(
        batch_size=50,
        epochs=3,
        seeds=(0, 1, 2),
        train_limit=3000,
        holdout=1000,
        eval_ratio=2.0,
        eval_from=200,
    )
    from mlpmnist.training.loop import eval_steps

    assert eval_steps(cfg) == [4, 8, 16, 32, 40, 64, 80, 120]
    res = train(cfg, mnist, **QUIET)
    h = res.history
    assert sorted(h["step"].unique()) == eval_steps(cfg)
    between = h[h["step"].isin([4, 8, 16, 32, 64])]  # not epoch ends: validation only
    assert between["test_acc"].isna().all() and between["val_acc"].notna().all()
    assert h.loc[h["step"] == 64, "epoch"].iloc[0] == pytest.approx(64 / 40)
    # A target stops each replica where its validation accuracy first reaches it.
    target = float(h.loc[h["step"] == 40, "val_acc"].median())
    res = train(dataclasses.replace(cfg, target=target), mnist, **QUIET)
    last = res.history.groupby("seed").tail(1)
    assert last["reached"].any() and (last.loc[last["reached"], "val_acc"] >= target).all()
    reached = last.loc[last["reached"], "seed"].tolist()
    assert all(res.state_dicts[s] is None for s in reached)
    # Each replica runs alone and unchanged: those that did not reach it match a run without target.
    same = h.merge(res.history[["seed", "step", "val_acc"]], on=["seed", "step"], suffixes=("", "_t"))
    assert (same["val_acc"] == same["val_acc_t"]).all()


def test_max_shift(mnist):
    cfg = TrainConfig(batch_size=100, epochs=1, seeds=(0,), train_limit=1000)
    plain = train(cfg, mnist, **QUIET)
    shifted = train(dataclasses.replace(cfg, max_shift=1), mnist, **QUIET)
    assert max_param_diff(plain.state_dicts, shifted.state_dicts) > 1e-3
    # A replica's shifts come from its own seed: training beside another seed changes nothing.
    f64 = dict(max_shift=1, dtype="float64")
    alone = train(dataclasses.replace(cfg, **f64), mnist, **QUIET)
    pair = train(dataclasses.replace(cfg, seeds=(0, 5), **f64), mnist, **QUIET)
    assert max_param_diff(alone.state_dicts, pair.state_dicts[:1]) < 1e-12
    # translate moves an image by whole pixels and fills with background.
    img = torch.full((1, 784), -1.0)
    img[0, 14 * 28 + 14] = 1.0
    moved = translate(img, torch.tensor([8]), 1, (28, 28))  # shift index 8: (dy, dx) = (+1, +1)
    assert moved[0, 15 * 28 + 15] == 1.0 and moved.sum() == img.sum()
