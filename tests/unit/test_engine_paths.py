"""Which path runs a span (``choice.choose_path``), the CUDA-graph plumbing, and the check a faster
path passes on its first span (``StackedEngine._check``).

The graph plumbing (static inputs, copied outputs, chunks of steps, recapture after ``keep``)
and the check run on the CPU too, with a stand-in for CUDA graph capture that replays the
recorded Python function; the real capture is checked on a GPU when there is one.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from mlpmnist.engine.cuda import choice, graphs
from mlpmnist.engine.stacked import StackedEngine

from .replicas import SETTINGS, batches, engine_steps, max_diff, models, span

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
STUDY = (784, 64, 64, 10)


def test_choose_path():
    def pick(fused_here=True, graphs_here=True, sizes=STUDY, dtype=torch.float32, optimizer="sgd", **kw):
        return choice.choose_path(
            fused_here, graphs_here, sizes, dtype, optimizer, kw.get("activation", "relu"), kw.get("B", 8)
        )

    assert pick() == "fused" and pick(optimizer="adam", dtype=torch.float64) == "fused"
    assert pick(fused_here=False) == "graphs"  # no triton, or the kernel failed here
    assert pick(activation="leaky_relu") == "graphs"  # the kernel does not declare it
    assert pick(B=129) == "graphs" and pick(B=65, dtype=torch.float64) == "graphs"  # past max_batch
    assert pick(sizes=(784, 64, 10)) == "graphs" and pick(sizes=(784, 256, 64, 10)) == "graphs"
    assert pick(dtype=torch.float16) == "graphs"
    assert pick(fused_here=False, graphs_here=False) == "eager"  # a CPU
    assert pick(graphs_here=False, activation="leaky_relu") == "eager"
    with pytest.raises(ValueError, match="optimizer must be one of"):
        pick(fused_here=False, optimizer="lbfgs")


def test_an_engine_on_a_cpu_steps_eagerly():
    engine = StackedEngine(models(2), "cpu")
    assert not engine.use_fused and engine.graphs is None and engine.path(8) == "eager"


def test_cuda_graphs_need_cuda():
    with pytest.raises(ValueError, match="CUDA"):
        StackedEngine(models(1), torch.device("cpu"), cuda_graphs=True)


def test_disagreement_counts_replicas_that_diverged_both_ways_as_agreeing():
    a = torch.tensor([1.0, float("nan"), float("inf"), 2.0])
    assert choice.disagreement([a], [a.clone()]) == 0.0
    assert choice.disagreement([a], [torch.tensor([1.5, float("nan"), float("inf"), 2.0])]) == 0.5
    assert choice.disagreement([a], [torch.tensor([1.0, 0.0, float("inf"), 2.0])]) == float("inf")
    assert choice.disagreement([a], [torch.tensor([1.0, float("nan"), 3.0, 2.0])]) == float("inf")


# --- the graph plumbing on the CPU: a stand-in capture that replays the recorded Python function


class _ReplayFn:
    """Stands in for a CUDA graph: replay() reruns the function into the same output tensors."""

    def __init__(self, fn, outputs, state, fault: float):
        self.fn, self.outputs, self.replays = fn, outputs, 0
        self.state, self.fault = state, fault

    def replay(self) -> None:
        for static, new in zip(self.outputs, self.fn(), strict=True):
            static.copy_(new)
        self.state[0].view(-1)[0] += self.fault  # a faulty graph: one weight off
        self.replays += 1


def _capture(fault: float = 0.0):
    def capture(state, fn):
        saved = [t.clone() for t in state]
        outputs = fn()  # a dry run, like capture's warm-up: the state is put back
        for t, v in zip(state, saved, strict=True):
            t.copy_(v)
        return _ReplayFn(fn, outputs, state, fault), outputs

    return capture


@pytest.fixture
def fake_graphs(monkeypatch):
    """make(models, chunk_steps, fault=0.0, **engine keywords): an engine on the CPU whose spans go
    through graphs recorded by the stand-in (each replay adding ``fault`` to one weight)."""

    def make(ms, chunk_steps: int = 32, fault: float = 0.0, **kw) -> StackedEngine:
        monkeypatch.setattr(graphs, "capture", _capture(fault))
        engine = StackedEngine(ms, torch.device("cpu"), **kw)
        engine.graphs = graphs.GraphRunner(engine, chunk_steps)
        assert engine.path(8) == "graphs"
        return engine

    return make


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_graph_plumbing_chunks_remainders_and_keep(fake_graphs, setting):
    # Chunks of 4 (two launches) and 3 one-step graphs; a smaller batch; recapture after keep.
    kw = SETTINGS[setting]
    R = 3
    graphed = fake_graphs(models(R), chunk_steps=4, check_steps=0, **kw)
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

    monkeypatch.setattr(graphs, "capture", broken)
    graphed = StackedEngine(models(2), torch.device("cpu"))
    graphed.graphs = graphs.GraphRunner(graphed, 4)
    eager = StackedEngine(models(2), torch.device("cpu"))
    X, idx, y, lr = span(9, 2, 8)
    with pytest.warns(UserWarning, match="capture failed"):
        graphed.steps(X, idx, y, lr)
    eager.steps(X, idx, y, lr)
    assert graphed.graphs.failed and graphed.path(8) == "eager"
    assert max_diff(graphed.state_dicts(), eager.state_dicts()) == 0.0


# --- the check of a faster path's first span --------------------------------------------------


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_graphs_that_agree_pass_their_check_and_run_the_later_spans(fake_graphs, setting):
    """The first span's first 40 steps run through the graphs and eagerly (the eager result kept),
    the rest of it and the next span through the graphs alone; the weights are the eager engine's."""
    kw = SETTINGS[setting]
    R = 2
    graphed = fake_graphs(models(R), chunk_steps=4, check_steps=40, **kw)
    eager = StackedEngine(models(R), "cpu", **kw)
    X, idx, y, lr = span(60, R, 8, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for part in (slice(0, 50), slice(50, 60)):
            p1, a1 = graphed.steps(X, idx[part], y[part], lr[part])
            p2, a2 = eager.steps(X, idx[part], y[part], lr[part])
            assert torch.equal(p1, p2) and torch.equal(a1, a2)
    assert graphed.checked == {"graphs": [0.0] * 10} and graphed.graphs is not None  # the same arithmetic
    chunk = graphed.graphs.graphs[(4, R, 8, X.data_ptr())].graph
    assert chunk.replays == 40 // 4 + 10 // 4 + 10 // 4  # the check's chunks, then the rest of the spans
    assert max_diff(graphed.state_dicts(), eager.state_dicts()) == 0.0


def test_graphs_that_disagree_warn_once_and_the_engine_steps_eagerly(fake_graphs):
    graphed = fake_graphs(models(2), chunk_steps=4, check_steps=24, fault=1e-3)
    eager = StackedEngine(models(2), "cpu")
    X, idx, y, lr = span(40, 2, 8, seed=4)
    with pytest.warns(RuntimeWarning, match=r"CUDA graphs disagreed .* on cpu: .* over 6 chunks") as caught:
        p1, a1 = graphed.steps(X, idx[:30], y[:30], lr[:30])
    graphed.steps(X, idx[30:], y[30:], lr[30:])  # no second warning: the graphs are off
    p2, a2 = eager.steps(X, idx[:30], y[:30], lr[:30])
    eager.steps(X, idx[30:], y[30:], lr[30:])
    assert len(caught) == 1 and graphed.graphs is None and graphed.path(8) == "eager"
    assert len(graphed.checked["graphs"]) == 6 and min(graphed.checked["graphs"]) > 0.99e-3
    assert "training goes on with eager steps" in str(caught[0].message)
    assert torch.equal(p1, p2) and torch.equal(a1, a2)
    assert max_diff(graphed.state_dicts(), eager.state_dicts()) == 0.0


def test_a_check_that_ends_with_the_span_and_a_transform_stay_eager(fake_graphs):
    """A span shorter than check_steps is all check; a transformed batch never takes a faster path."""
    graphed = fake_graphs(models(2), chunk_steps=4, check_steps=100)
    eager = StackedEngine(models(2), "cpu")
    X, idx, y, lr = span(12, 2, 8)
    flip = torch.neg
    for engine in (graphed, eager):
        engine.steps(X, idx[:6], y[:6], lr[:6], transform=flip)
    assert graphed.checked == {}
    for engine in (graphed, eager):
        engine.steps(X, idx[6:], y[6:], lr[6:])
    assert graphed.checked.keys() == {"graphs"}
    assert max_diff(graphed.state_dicts(), eager.state_dicts()) == 0.0


# --- real CUDA graphs ------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_cuda_graph_steps_equal_eager(momentum):
    dev = torch.device("cuda")
    kw = {"momentum": momentum, "weight_decay": 5e-4 if momentum else 0.0, "use_fused": False}
    graphed = StackedEngine(models(3, torch.float32), dev, cuda_graphs=True, check_steps=8, **kw)
    eager = StackedEngine(models(3, torch.float32), dev, cuda_graphs=False, **kw)
    for S, B, seed in ((40, 8, 0), (2, 5, 1)):
        X, idx, y, lr = (t.to(dev) for t in span(S, 3, B, seed=seed, dtype=torch.float32))
        pg, ag = graphed.steps(X, idx, y, lr)
        pe, ae = eager.steps(X, idx, y, lr)
        assert (pg - pe).abs().max() < 1e-4
    assert graphed.checked.keys() == {"graphs"}, "capture fell back to eager or failed its check"
    assert max_diff(graphed.state_dicts(), eager.state_dicts()) < 1e-5


@needs_cuda
def test_cuda_graph_chunks_match_cpu_float64():
    dev = torch.device("cuda")
    R, B, S = 2, 16, 45
    X, idx, y, lr = span(S, R, B, n=2000, seed=7)
    graphed = StackedEngine(models(R), dev, cuda_graphs=True, use_fused=False, chunk_steps=8, check_steps=16)
    graphed.steps(X.to(dev), idx.to(dev), y.to(dev), lr.to(dev))
    cpu = StackedEngine(models(R), torch.device("cpu"))
    cpu.steps(X, idx, y, lr)
    assert graphed.checked.keys() == {"graphs"}
    assert max_diff(graphed.state_dicts(), cpu.state_dicts()) < 1e-9


def test_engine_steps_helper_is_the_eager_step():
    """``step_tensors`` (what the graphs record) and ``steps`` take the same step."""
    data = batches(3, 2, 8)
    one, many = StackedEngine(models(2), "cpu"), StackedEngine(models(2), "cpu")
    engine_steps(one, data, [0.1] * 3)
    X = torch.cat([x.reshape(-1, 784) for x, _ in data])
    idx = torch.arange(len(X)).view(3, 2, 8)
    many.steps(X, idx, torch.stack([y for _, y in data]), torch.full((3, 2), 0.1, dtype=torch.float64))
    assert max_diff(one.state_dicts(), many.state_dicts()) == 0.0
