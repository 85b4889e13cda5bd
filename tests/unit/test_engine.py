"""The stacked engine's arithmetic against autograd and torch.optim (float64, to 1e-12), for ReLU
and leaky ReLU, and its bookkeeping (ragged batches, dropped replicas, snapshots, evaluation)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlpmnist.engine.base import evaluate, gather_batch
from mlpmnist.engine.reference import ReferenceEngine
from mlpmnist.engine.stacked import StackedEngine
from mlpmnist.model import LEAKY_SLOPE

from .replicas import SETTINGS, autograd_steps, batches, engine_steps, lr_tensor, max_diff, models, span

ACTIVATIONS = ["relu", "leaky_relu"]


@pytest.mark.parametrize("B", [1, 8, 33])
@pytest.mark.parametrize("per_replica_lr", [False, True], ids=["shared-lr", "per-replica-lr"])
@pytest.mark.parametrize("classes_major", [True, False], ids=["cpu-layout", "gpu-layout"])
def test_step_matches_autograd_float64(B, per_replica_lr, classes_major):
    R, steps = 3, 12
    data = batches(steps, R, B)
    lr = torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64) if per_replica_lr else 0.1
    lrs = [lr] * steps
    engine = StackedEngine(models(R), torch.device("cpu"))
    engine.classes_major = classes_major
    picked, preds = engine_steps(engine, data, lrs)
    ref, ref_picked, ref_preds = autograd_steps(models(R), data, lrs)
    assert max_diff(engine.state_dicts(), ref) < 1e-12
    for p, q in zip(picked, ref_picked, strict=True):
        assert (p - q).abs().max() < 1e-12
    for p, q in zip(preds, ref_preds, strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("per_replica_lr", [False, True], ids=["shared-lr", "per-replica-lr"])
def test_every_rule_and_activation_match_torch_float64(setting, activation, per_replica_lr):
    """SGD, SGD with momentum and weight decay, and Adam, each with ReLU and leaky ReLU hidden units,
    against autograd and torch.optim: weights and log-probabilities to 1e-12, the same predictions."""
    kw = SETTINGS[setting]
    R, steps = 2, 12
    data = batches(steps, R, 16)
    base = 2e-3 if setting == "adam" else 0.05
    lr = torch.tensor([base, 2 * base], dtype=torch.float64) if per_replica_lr else base
    engine = StackedEngine(models(R, activation=activation), "cpu", **kw)
    picked, preds = engine_steps(engine, data, [lr] * steps)
    ref, ref_picked, ref_preds = autograd_steps(models(R, activation=activation), data, [lr] * steps, **kw)
    assert max_diff(engine.state_dicts(), ref) < 1e-12
    assert all((p - q).abs().max() < 1e-12 for p, q in zip(picked, ref_picked, strict=True))
    assert all(torch.equal(p, q) for p, q in zip(preds, ref_preds, strict=True))


def test_leaky_units_pass_the_slope_of_the_gradient_where_they_are_off():
    """Leaky ReLU's backward where units are off: the same weights as autograd's, bit for bit, and
    different from ReLU's (the negative side does carry a gradient)."""
    R, B = 2, 8
    data = batches(3, R, B)
    leaky = StackedEngine(models(R, activation="leaky_relu"), "cpu")
    relu = StackedEngine(models(R), "cpu")
    engine_steps(leaky, data, [0.1] * 3)
    engine_steps(relu, data, [0.1] * 3)
    ref, _, _ = autograd_steps(models(R, activation="leaky_relu"), data, [0.1] * 3)
    assert max_diff(leaky.state_dicts(), ref) < 1e-12
    assert max_diff(leaky.state_dicts(), relu.state_dicts()) > 1e-6
    h = leaky.activations(data[0][0][0])[0]
    assert (h < 0).any() and torch.equal(
        h.clamp_max(0), F.leaky_relu(h.clamp_max(0) / LEAKY_SLOPE, LEAKY_SLOPE)
    )


def test_replicas_share_one_activation():
    mixed = models(1) + models(1, activation="leaky_relu")
    with pytest.raises(ValueError, match="share one activation"):
        StackedEngine(mixed, "cpu")


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_reference_engine_is_torch_optim(setting, activation):
    # The two engines agree through steps() (the loop's entry point), keep() included.
    kw = SETTINGS[setting]
    X, idx, y, lr = span(7, 3, 8)
    fast = StackedEngine(models(3, activation=activation), "cpu", **kw)
    ref = ReferenceEngine(models(3, activation=activation), "cpu", **kw)
    for engine in (fast, ref):
        engine.steps(X, idx[:4], y[:4], lr[:4])
        engine.keep(torch.tensor([True, False, True]))
        engine.steps(X, idx[4:, [0, 2]], y[4:, [0, 2]], lr[4:, [0, 2]])
    assert max_diff(fast.state_dicts(), ref.state_dicts()) < 1e-12
    x = X[:40]  # and so do their hidden activations (sums of 784 products: 1e-10)
    for a, b in zip(fast.activations(x), ref.activations(x), strict=True):
        assert (a - b).abs().max() < 1e-10


def test_ragged_batch_and_keep_reuse_buffers_correctly():
    # Batch 8, then 3 (an epoch's remainder), then 8 again; then drop replica 1 and go on.
    data = batches(2, 3, 8) + batches(1, 3, 3, seed=1) + batches(2, 3, 8, seed=2)
    engine = StackedEngine(models(3), torch.device("cpu"))
    engine_steps(engine, data[:3], [0.1] * 3)
    keep = torch.tensor([True, False, True])
    engine.keep(keep)
    engine_steps(engine, [(x[keep], y[keep]) for x, y in data[3:]], [0.1] * 2)
    ms = models(3)
    autograd_steps(ms, data[:3], [0.1] * 3)
    ref, _, _ = autograd_steps([ms[0], ms[2]], [(x[keep], y[keep]) for x, y in data[3:]], [0.1] * 2)
    assert engine.n_replicas == 2
    assert max_diff(engine.state_dicts(), ref) < 1e-12


def test_steps_equals_repeated_step_bitwise():
    R, B, S = 2, 8, 7
    X = torch.rand(500, 784, dtype=torch.float64) * 2 - 1
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(500, (S, R, B), generator=g)
    y = torch.randint(10, (S, R, B), generator=g)
    lr = torch.linspace(0.1, 0.05, S, dtype=torch.float64)  # [S]: one rate shared by the replicas
    one, many = StackedEngine(models(R), "cpu"), StackedEngine(models(R), "cpu")
    outs = [one.step_tensors(X[idx[k]], y[k], lr_tensor(lr[k], R)) for k in range(S)]
    p2, a2 = many.steps(X, idx, y, lr)
    assert torch.equal(torch.stack([p for p, _ in outs]), p2) and torch.equal(
        torch.stack([a for _, a in outs]), a2
    )
    assert max_diff(one.state_dicts(), many.state_dicts()) == 0.0


def test_gather_into_a_reused_buffer():
    X = torch.rand(100, 784, dtype=torch.float64)
    buf = torch.empty(3, 5, 784, dtype=torch.float64)
    for seed in (0, 1):  # the buffer is rewritten, not appended to
        idx = torch.randint(100, (3, 5), generator=torch.Generator().manual_seed(seed))
        assert gather_batch(X, idx, buf) is buf and torch.equal(buf, X[idx])
        assert torch.equal(gather_batch(X, idx), X[idx])


def test_state_dicts_are_snapshots_not_views():
    engine = StackedEngine(models(2), torch.device("cpu"))
    before = engine.state_dicts()
    copy = [{k: v.clone() for k, v in sd.items()} for sd in before]
    engine_steps(engine, batches(2, 2, 8), [0.1, 0.1])
    assert max_diff(before, copy) == 0.0
    assert all(v.is_contiguous() for sd in before for v in sd.values())


def test_weight_norms_match_state_dicts():
    engine = StackedEngine(models(3, torch.float32), torch.device("cpu"))
    expected = torch.tensor(
        [[sd[f"layers.{i}.weight"].norm().item() for i in range(3)] for sd in engine.state_dicts()]
    )
    assert torch.allclose(engine.weight_norms().double(), expected.double(), rtol=1e-6)
    reference = ReferenceEngine(models(3, torch.float32), "cpu")
    assert torch.allclose(reference.weight_norms().double(), expected.double(), rtol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_evaluate_counts_correct_and_dead_units(activation):
    """Loss and accuracy as F.cross_entropy and argmax give them; a unit is dead when its output is
    <= 0 on every example (for leaky ReLU: its pre-activation), here forced by a bias of -100."""
    ms = models(2, activation=activation)
    with torch.no_grad():
        ms[1].layers[0].bias[:5] = -100.0  # units 0..4 of replica 1's first layer: off everywhere
    engine = StackedEngine(ms, torch.device("cpu"))
    x = torch.rand(50, 784, dtype=torch.float64) * 2 - 1
    y = torch.randint(10, (50,))
    loss, acc, dead = evaluate(engine, x, y, chunk=16)
    z = engine.head(engine.activations(x)[-1])
    assert torch.allclose(acc.double(), (z.argmax(2) == y).double().mean(1), atol=1e-7)
    assert torch.allclose(loss.double(), torch.stack([F.cross_entropy(zr, y) for zr in z]), rtol=1e-6)
    pre = torch.stack([x @ m.layers[0].weight.T + m.layers[0].bias for m in ms])  # [R, N, 64]
    expected = (pre <= 0).all(1).double().mean(1)
    assert dead.shape == (2, 2) and torch.allclose(dead[:, 0].double(), expected)
    assert dead[1, 0] >= 5 / 64 and dead[1, 0] > dead[0, 0]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("hidden", [(), (32,), (16, 8, 12)], ids=["no-hidden", "one", "three"])
def test_other_depths_match_autograd(hidden, activation):
    R, steps = 2, 6
    data = batches(steps, R, 8)
    engine = StackedEngine(models(R, hidden=hidden, activation=activation), "cpu", momentum=0.5)
    engine_steps(engine, data, [0.1] * steps)
    ms = models(R, hidden=hidden, activation=activation)
    ref, _, _ = autograd_steps(ms, data, [0.1] * steps, momentum=0.5)
    assert max_diff(engine.state_dicts(), ref) < 1e-12
