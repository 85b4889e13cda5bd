"""The fast engine's arithmetic against autograd, its CUDA-graph plumbing, and its bookkeeping.

The graph plumbing (static inputs, copied outputs, chunks of steps, recapture after ``keep``)
runs on the CPU too, with a stand-in for CUDA graph capture that replays the recorded Python
function; the real capture is checked on a GPU when there is one.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from mlpmnist.engine.base import evaluate
from mlpmnist.engine.cuda import graphs
from mlpmnist.engine.reference import ReferenceEngine
from mlpmnist.engine.rules import torch_optimizer
from mlpmnist.engine.stacked import StackedEngine
from mlpmnist.model import MLP

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def models(n: int, dtype: torch.dtype = torch.float64, hidden: tuple[int, ...] = (64, 64)) -> list[MLP]:
    return [MLP(hidden, generator=torch.Generator().manual_seed(s)).to(dtype) for s in range(n)]


def batches(steps: int, R: int, B: int, dtype: torch.dtype = torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(R, B, 784, generator=g, dtype=dtype) * 2 - 1, torch.randint(10, (R, B), generator=g))
        for _ in range(steps)
    ]


OPTIMIZERS = {
    "sgd": {},
    "momentum": {"momentum": 0.9, "weight_decay": 5e-4},
    "adam": {"optimizer": "adam", "weight_decay": 1e-3},
}


def autograd_steps(ms: list[MLP], data, lrs, momentum=0.0, weight_decay=0.0, optimizer="sgd"):
    """The textbook loop per replica: (weights after the steps, per-step picked log-probs, preds)."""
    opts = [torch_optimizer(optimizer, m.parameters(), momentum, weight_decay) for m in ms]
    picked, preds = [], []
    for (x, y), lr in zip(data, lrs, strict=True):
        step_p, step_a = [], []
        for r, (m, opt) in enumerate(zip(ms, opts, strict=True)):
            opt.param_groups[0]["lr"] = float(lr[r]) if isinstance(lr, torch.Tensor) else lr
            z = m(x[r])
            opt.zero_grad()
            F.cross_entropy(z, y[r]).backward()
            opt.step()
            step_p.append(z.detach().log_softmax(1).gather(1, y[r, :, None])[:, 0])
            step_a.append(z.detach().argmax(1))
        picked.append(torch.stack(step_p))
        preds.append(torch.stack(step_a))
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in ms], picked, preds


def max_diff(a: list[dict], b: list[dict]) -> float:
    return max((x[k] - y[k]).abs().max().item() for x, y in zip(a, b, strict=True) for k in x)


def engine_steps(engine, data, lrs):
    out = [engine.step(x, y, lr) for (x, y), lr in zip(data, lrs, strict=True)]
    return [p for p, _ in out], [a for _, a in out]


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


@pytest.mark.parametrize("per_replica_lr", [False, True], ids=["shared-lr", "per-replica-lr"])
def test_momentum_and_weight_decay_match_torch_sgd(per_replica_lr):
    R, steps = 2, 10
    data = batches(steps, R, 16)
    lr = torch.tensor([0.03, 0.07], dtype=torch.float64) if per_replica_lr else 0.05
    engine = StackedEngine(models(R), torch.device("cpu"), momentum=0.9, weight_decay=5e-4)
    engine_steps(engine, data, [lr] * steps)
    ref, _, _ = autograd_steps(models(R), data, [lr] * steps, momentum=0.9, weight_decay=5e-4)
    assert max_diff(engine.state_dicts(), ref) < 1e-12


@pytest.mark.parametrize("per_replica_lr", [False, True], ids=["shared-lr", "per-replica-lr"])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_adam_matches_torch_adam_float64(per_replica_lr, weight_decay):
    R, steps = 2, 12
    data = batches(steps, R, 16)
    lr = torch.tensor([1e-3, 3e-3], dtype=torch.float64) if per_replica_lr else 2e-3
    engine = StackedEngine(models(R), torch.device("cpu"), optimizer="adam", weight_decay=weight_decay)
    picked, _ = engine_steps(engine, data, [lr] * steps)
    ref, ref_picked, _ = autograd_steps(
        models(R), data, [lr] * steps, optimizer="adam", weight_decay=weight_decay
    )
    assert max_diff(engine.state_dicts(), ref) < 1e-12
    assert all((p - q).abs().max() < 1e-12 for p, q in zip(picked, ref_picked, strict=True))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_reference_engine_is_torch_optim(optimizer):
    # The two engines agree through steps() (the loop's entry point), keep() included.
    kw = OPTIMIZERS[optimizer]
    X, idx, y, lr = span(7, 3, 8)
    fast = StackedEngine(models(3), "cpu", **kw)
    ref = ReferenceEngine(models(3), "cpu", **kw)
    for engine in (fast, ref):
        engine.steps(X, idx[:4], y[:4], lr[:4])
        engine.keep(torch.tensor([True, False, True]))
        engine.steps(X, idx[4:, [0, 2]], y[4:, [0, 2]], lr[4:, [0, 2]])
    assert max_diff(fast.state_dicts(), ref.state_dicts()) < 1e-12


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
    lr = torch.linspace(0.1, 0.05, S, dtype=torch.float64)
    one, many = StackedEngine(models(R), "cpu"), StackedEngine(models(R), "cpu")
    picked, pred = zip(*(one.step(X[idx[k]], y[k], float(lr[k])) for k in range(S)), strict=True)
    p2, a2 = many.steps(X, idx, y, lr)
    assert torch.equal(torch.stack(picked), p2) and torch.equal(torch.stack(pred), a2)
    assert max_diff(one.state_dicts(), many.state_dicts()) == 0.0


def test_gather_into_a_reused_buffer():
    from mlpmnist.engine.base import gather_batch

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


def test_evaluate_counts_correct_and_dead_units():
    engine = StackedEngine(models(2), torch.device("cpu"))
    x = torch.rand(50, 784, dtype=torch.float64) * 2 - 1
    y = torch.randint(10, (50,))
    loss, acc, dead = evaluate(engine, x, y, chunk=16)
    z = engine.head(engine.activations(x)[-1])
    assert torch.allclose(acc.double(), (z.argmax(2) == y).double().mean(1), atol=1e-7)
    assert torch.allclose(loss.double(), torch.stack([F.cross_entropy(zr, y) for zr in z]), rtol=1e-6)
    assert dead.shape == (2, 2) and ((dead >= 0) & (dead <= 1)).all()


def test_cuda_graphs_need_cuda():
    with pytest.raises(ValueError, match="CUDA"):
        StackedEngine(models(1), torch.device("cpu"), cuda_graphs=True)


# --- the graph plumbing on the CPU: a stand-in capture that replays the recorded Python function


class _ReplayFn:
    """Stands in for a CUDA graph: replay() reruns the function into the same output tensors."""

    def __init__(self, fn, outputs):
        self.fn, self.outputs, self.replays = fn, outputs, 0

    def replay(self) -> None:
        for static, new in zip(self.outputs, self.fn(), strict=True):
            static.copy_(new)
        self.replays += 1


def _fake_capture(state, fn):
    saved = [t.clone() for t in state]
    outputs = fn()  # a dry run, like capture's warm-up: the state is put back
    for t, v in zip(state, saved, strict=True):
        t.copy_(v)
    return _ReplayFn(fn, outputs), outputs


@pytest.fixture
def fake_graphs(monkeypatch):
    monkeypatch.setattr(graphs.GraphRunner, "capture", staticmethod(_fake_capture))

    def make(ms: list[MLP], chunk_steps: int = 32, **kw) -> StackedEngine:
        engine = StackedEngine(ms, torch.device("cpu"), **kw)
        engine.graphs = graphs.GraphRunner(engine, chunk_steps)
        return engine

    return make


def span(S: int, R: int, B: int, n: int = 300, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 784, generator=g, dtype=torch.float64) * 2 - 1
    idx, y = torch.randint(n, (S, R, B), generator=g), torch.randint(10, (S, R, B), generator=g)
    return X, idx, y, torch.rand(S, R, generator=g, dtype=torch.float64) * 0.1


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_graph_plumbing_chunks_remainders_and_keep(fake_graphs, optimizer):
    # Chunks of 4 (two launches) and 3 one-step graphs; a smaller batch; recapture after keep.
    kw = OPTIMIZERS[optimizer]
    R = 3
    graphed = fake_graphs(models(R), chunk_steps=4, **kw)
    eager = StackedEngine(models(R), torch.device("cpu"), **kw)
    for S, B, seed in ((11, 8, 5), (2, 5, 6)):
        X, idx, y, lr = span(S, R, B, seed=seed)
        p1, a1 = graphed.steps(X, idx, y, lr)
        p2, a2 = eager.steps(X, idx, y, lr)
        assert torch.equal(p1, p2) and torch.equal(a1, a2)
    assert max_diff(graphed.state_dicts(), eager.state_dicts()) == 0.0
    assert graphed.graphs is not None
    chunk = [gr for k, gr in graphed.graphs.graphs.items() if k[:3] == (4, R, 8)]
    assert len(chunk) == 1 and chunk[0].graph.replays == 2
    assert {k[:3] for k in graphed.graphs.graphs} == {(4, R, 8), (1, R, 8), (1, R, 5)}
    keep = torch.tensor([True, False, True])
    graphed.keep(keep)
    eager.keep(keep)
    X, idx, y, lr = span(6, 2, 8, seed=7)
    graphed.steps(X, idx, y, lr)
    eager.steps(X, idx, y, lr)
    assert max_diff(graphed.state_dicts(), eager.state_dicts()) == 0.0


def test_failed_capture_falls_back_to_eager(monkeypatch):
    def broken(state, fn):
        raise RuntimeError("no capture here")

    monkeypatch.setattr(graphs.GraphRunner, "capture", staticmethod(broken))
    graphed = StackedEngine(models(2), torch.device("cpu"))
    graphed.graphs = graphs.GraphRunner(graphed, 4)
    eager = StackedEngine(models(2), torch.device("cpu"))
    X, idx, y, lr = span(9, 2, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graphed.steps(X, idx, y, lr)
    eager.steps(X, idx, y, lr)
    assert any("capture failed" in str(w.message) for w in caught)
    assert graphed.graphs.failed
    assert max_diff(graphed.state_dicts(), eager.state_dicts()) == 0.0


# --- real CUDA graphs ------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_cuda_graph_step_equals_eager(momentum):
    dev = torch.device("cuda")
    data = [(x.to(dev), y.to(dev)) for x, y in batches(20, 3, 8, torch.float32)] + [
        (x.to(dev), y.to(dev)) for x, y in batches(2, 3, 5, torch.float32, seed=1)
    ]
    lr = torch.full((3,), 0.1, device=dev)
    kw = {"momentum": momentum, "weight_decay": 5e-4 if momentum else 0.0}
    graphed = StackedEngine(models(3, torch.float32), dev, cuda_graphs=True, **kw)
    eager = StackedEngine(models(3, torch.float32), dev, cuda_graphs=False, **kw)
    pg, ag = engine_steps(graphed, data, [lr] * len(data))
    pe, ae = engine_steps(eager, data, [lr] * len(data))
    assert graphed.cuda_graphs, "capture fell back to eager"
    assert max_diff(graphed.state_dicts(), eager.state_dicts()) < 1e-5
    assert all((p - q).abs().max() < 1e-4 for p, q in zip(pg, pe, strict=True))


@needs_cuda
def test_cuda_graph_chunks_equal_eager_and_match_cpu_float64():
    dev = torch.device("cuda")
    R, B, S = 2, 16, 45
    X = torch.rand(2000, 784, dtype=torch.float64) * 2 - 1
    g = torch.Generator().manual_seed(7)
    idx, y = torch.randint(2000, (S, R, B), generator=g), torch.randint(10, (S, R, B), generator=g)
    lr = [0.1] * S
    graphed = StackedEngine(models(R), dev, cuda_graphs=True, chunk_steps=8)
    graphed.steps(X.to(dev), None, idx.to(dev), y.to(dev), lr)
    cpu = StackedEngine(models(R), torch.device("cpu"))
    cpu.steps(X, idx, y, lr)
    assert graphed.cuda_graphs
    assert max_diff(graphed.state_dicts(), cpu.state_dicts()) < 1e-9


@pytest.mark.parametrize("hidden", [(), (32,), (16, 8, 12)], ids=["no-hidden", "one", "three"])
def test_other_depths_match_autograd(hidden):
    R, steps = 2, 6
    data = batches(steps, R, 8)
    engine = StackedEngine(models(R, hidden=hidden), torch.device("cpu"), momentum=0.5)
    engine_steps(engine, data, [0.1] * steps)
    ms = [MLP(hidden, generator=torch.Generator().manual_seed(s)).double() for s in range(R)]
    ref, _, _ = autograd_steps(ms, data, [0.1] * steps, momentum=0.5)
    assert max_diff(engine.state_dicts(), ref) < 1e-12
