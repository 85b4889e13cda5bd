"""The fused Triton kernel (engine/cuda/fused.py) against torch.optim on MLP replicas, one at a
time, and the stacked engine running its spans through it, checked on its first span.

Without a GPU, Triton's interpreter runs the kernel on the CPU with numpy (float64 included), in
this process: tests/conftest.py sets TRITON_INTERPRET=1 before anything imports triton. With a
GPU the ``device`` tests run compiled on it instead.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from mlpmnist.engine.base import stack_params  # noqa: E402
from mlpmnist.engine.cuda import choice, fused, kernel  # noqa: E402 (only with triton)
from mlpmnist.engine.rules import rule  # noqa: E402
from mlpmnist.engine.stacked import StackedEngine  # noqa: E402
from mlpmnist.model import MLP  # noqa: E402

CUDA = torch.cuda.is_available()
INTERPRETED = kernel.interpreted()
STUDY = (784, 64, 64, 10)
# Unequal, unpadded widths catch a transposed or misaligned slab; F = 48 leaves a ragged W0 tile.
ODD = (48, 24, 20, 10)


@pytest.fixture(
    params=[
        pytest.param(
            "interpreter", marks=pytest.mark.skipif(not INTERPRETED, reason="TRITON_INTERPRET is not set")
        ),
        pytest.param("cuda", marks=pytest.mark.skipif(INTERPRETED or not CUDA, reason="needs a CUDA device")),
    ]
)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Where the kernel runs: Triton's interpreter on CPU tensors, or compiled on the GPU."""
    dev = torch.device("cpu" if request.param == "interpreter" else "cuda")
    assert fused.available(dev)
    return dev


class Replicas:
    """The ground truth: R ``MLP`` replicas, each with its own torch.optim optimizer, stepped one
    replica at a time with autograd and F.cross_entropy (mean)."""

    def __init__(self, sizes, R, dtype, optimizer="sgd", momentum=0.0, weight_decay=0.0) -> None:
        n_in, h1, h2, c = sizes
        gens = [torch.Generator().manual_seed(100 + r) for r in range(R)]
        self.models = [MLP((h1, h2), n_in=n_in, n_out=c, generator=g).to(dtype) for g in gens]
        self.opts = [rule(optimizer).oracle(m.parameters(), momentum, weight_decay) for m in self.models]
        self.kind = dict(optimizer=optimizer, activation="relu", momentum=momentum, weight_decay=weight_decay)

    def state(self, device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Fresh stacked params (on ``device``) and zero optimizer state for ``fused_steps``."""
        params = [p.to(device) for p in stack_params(self.models)]
        n = 8 if self.kind["optimizer"] == "adam" else 4 if self.kind["momentum"] else 0
        return params, [torch.zeros_like(params[i % 4]) for i in range(n)]

    def steps(self, X, idx, y, lr) -> tuple[torch.Tensor, torch.Tensor]:
        """S steps; (log-probability of the true class, argmax) [S, R, B] before each update."""
        picked, pred = [], []
        for s in range(len(idx)):
            for r, (model, opt) in enumerate(zip(self.models, self.opts, strict=True)):
                opt.param_groups[0]["lr"] = float(lr[s, r])
                z = model(X[idx[s, r]])
                opt.zero_grad()
                F.cross_entropy(z, y[s, r]).backward()
                opt.step()
                z = z.detach()
                picked.append(z.log_softmax(1).gather(1, y[s, r, :, None])[:, 0])
                pred.append(z.argmax(1))
        shape = idx.shape
        return torch.stack(picked).view(shape), torch.stack(pred).view(shape)


def batches(n_rows: int, S: int, R: int, B: int, classes: int = 10, seed: int = 0):
    """Row numbers [S, R, B] into n_rows examples, labels [S, R, B], per-step and per-replica lrs [S, R]."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(n_rows, (S, R, B), generator=g)
    y = torch.randint(classes, (S, R, B), generator=g)
    lr = 0.05 + 0.1 * torch.rand(S, R, generator=g, dtype=torch.float64)
    return idx, y, lr


def inputs(n_rows: int, n_in: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(n_rows, n_in, generator=torch.Generator().manual_seed(1), dtype=dtype) * 2 - 1


def run_both(ref: Replicas, params, state, X, idx, y, lr, t0: int = 0):
    """The same steps through fused_steps (on params' device) and through the reference replicas:
    ((picked, pred) of the kernel, on the CPU), (picked, pred) of the reference."""
    dev = params[0].device
    out = fused.fused_steps(params, state, X.to(dev), idx.to(dev), y.to(dev), lr.to(dev), t0=t0, **ref.kind)
    return tuple(t.cpu() for t in out), ref.steps(X, idx, y, lr)


def assert_close(params, ref: Replicas, got, want, tol: float) -> None:
    """Parameters, picked log-probabilities within ``tol``; predictions equal."""
    for i, (p, q) in enumerate(zip(params, stack_params(ref.models), strict=True)):
        err = (p.cpu() - q).abs().max().item()
        assert err < tol, f"params[{i}] differ by {err:.3g}"
    assert (got[0] - want[0]).abs().max().item() < tol
    assert torch.equal(got[1], want[1])


def test_sgd_per_replica_lrs_float64(device):
    R, S, B = 3, 4, 8
    ref = Replicas(ODD, R, torch.float64)
    params, state = ref.state(device)
    X = inputs(100, ODD[0], torch.float64)
    idx, y, lr = batches(100, S, R, B)
    got, want = run_both(ref, params, state, X, idx, y, lr)
    assert_close(params, ref, got, want, 1e-12)
    assert got[0].shape == (S, R, B) and got[0].dtype == torch.float64 and got[1].dtype == torch.int64


def test_momentum_weight_decay_two_calls_and_a_smaller_last_batch_float64(device):
    """B = 50 (not a power of two) for 3 steps, then the epoch's last batch of 13 in a second
    call that goes on from the momentum buffers the first one left."""
    R = 2
    ref = Replicas(ODD, R, torch.float64, momentum=0.9, weight_decay=1e-3)
    params, state = ref.state(device)
    X = inputs(200, ODD[0], torch.float64)
    for S, B, seed in [(3, 50, 0), (1, 13, 1)]:
        idx, y, lr = batches(200, S, R, B, seed=seed)
        got, want = run_both(ref, params, state, X, idx, y, lr)
        assert_close(params, ref, got, want, 1e-12)


def test_adam_weight_decay_continues_a_run_float64(device):
    """Two calls of 2 and 3 steps: the second starts at t0 = 2, so its bias corrections go on."""
    R, B = 2, 8
    ref = Replicas(ODD, R, torch.float64, optimizer="adam", weight_decay=1e-2)
    params, state = ref.state(device)
    X = inputs(100, ODD[0], torch.float64)
    t0 = 0
    for S, seed in [(2, 0), (3, 1)]:
        idx, y, lr = batches(100, S, R, B, seed=seed)
        got, want = run_both(ref, params, state, X, idx, y, lr * 0.1, t0=t0)
        assert_close(params, ref, got, want, 1e-12)
        t0 += S
    assert ref.opts[0].state[ref.models[0].layers[0].weight]["step"].item() == t0


def test_float32_momentum_study_sizes(device):
    """float32 against the same torch loop in float32: differences of a few ulps (summation order,
    and on a GPU fused multiply-adds and exp), grown by three steps."""
    R, S, B = 2, 3, 16
    ref = Replicas(STUDY, R, torch.float32, momentum=0.9, weight_decay=5e-4)
    params, state = ref.state(device)
    X = inputs(300, STUDY[0], torch.float32)
    idx, y, lr = batches(300, S, R, B)
    got, want = run_both(ref, params, state, X, idx, y, lr.float())
    assert_close(params, ref, got, want, 1e-5)


def test_tied_logits_predict_the_first_class(device):
    """All-zero last layer: every logit ties, so argmax is class 0 (torch's first maximum) and
    the log-probability is -log(C), C = 10 (padded classes 10..15 take no share)."""
    R, S, B = 2, 1, 5
    ref = Replicas(ODD, R, torch.float64)
    for p in ref.models[0].layers[-1].parameters():
        p.data.zero_()
    params, state = ref.state(device)
    X = inputs(50, ODD[0], torch.float64)
    idx, y, lr = batches(50, S, R, B)
    got, want = run_both(ref, params, state, X, idx, y, lr)
    assert_close(params, ref, got, want, 1e-12)
    assert (got[1][:, 0] == 0).all()
    assert torch.allclose(got[0][:, 0], torch.full((S, B), -math.log(10), dtype=torch.float64))


def test_no_steps_launch_nothing(device):
    ref = Replicas(ODD, 2, torch.float64)
    params, state = ref.state(device)
    before = [p.clone() for p in params]
    idx = torch.zeros((0, 2, 8), dtype=torch.int64, device=device)
    lr = torch.zeros((0, 2), dtype=torch.float64, device=device)
    X = inputs(10, ODD[0], torch.float64).to(device)
    picked, pred = fused.fused_steps(params, state, X, idx, idx, lr, **ref.kind)
    assert picked.shape == pred.shape == (0, 2, 8)
    assert all(torch.equal(p, q) for p, q in zip(params, before, strict=True))


def test_bad_arguments_are_refused():
    """Checked before anything runs (so this needs neither a GPU nor the interpreter)."""
    ref = Replicas(ODD, 2, torch.float64, momentum=0.9)
    params, state = ref.state(torch.device("cpu"))
    X = inputs(10, ODD[0], torch.float64)
    idx, y, lr = batches(10, 1, 2, 4)
    with pytest.raises(ValueError, match="4 tensors expected"):
        fused.fused_steps(params, [], X, idx, y, lr, **ref.kind)
    with pytest.raises(ValueError, match="contiguous"):
        fused.fused_steps(
            [params[0].transpose(1, 2).contiguous().transpose(1, 2), *params[1:]],
            state,
            X,
            idx,
            y,
            lr,
            **ref.kind,
        )
    with pytest.raises(ValueError, match="lr"):
        fused.fused_steps(params, state, X, idx, y, lr[:, 0], **ref.kind)
    with pytest.raises(ValueError, match="X"):
        fused.fused_steps(params, state, X.float(), idx, y, lr, **ref.kind)
    with pytest.raises(ValueError, match="does not support"):
        fused.fused_steps(
            [p.half() for p in params], [t.half() for t in state], X.half(), idx, y, lr, **ref.kind
        )
    # What the kernel does not declare: refused, not trained as something else.
    with pytest.raises(ValueError, match="runs optimizers sgd and adam with activation relu; got 'rmsprop'"):
        fused.fused_steps(params, state, X, idx, y, lr, **{**ref.kind, "optimizer": "rmsprop"})
    with pytest.raises(ValueError, match="with activation relu; got 'sgd' with 'leaky_relu'"):
        fused.fused_steps(params, state, X, idx, y, lr, **{**ref.kind, "activation": "leaky_relu"})


def test_available_on_a_cpu_only_in_the_interpreter():
    assert fused.available(torch.device("cpu")) is INTERPRETED


def test_supports():
    def ok(sizes=STUDY, dtype=torch.float32, optimizer="sgd", activation="relu", batch_size=8):
        return fused.supports(sizes, dtype, optimizer, activation, batch_size)

    assert ok() and ok(dtype=torch.float64, optimizer="adam") and ok([784, 128, 128, 10])
    assert not ok([784, 64, 10])  # one hidden layer
    assert not ok([784, 64, 64, 64, 10])  # three
    assert not ok([784, 256, 64, 10])  # too wide for registers
    assert not ok(dtype=torch.float16)
    assert not ok(optimizer="rmsprop") and not ok(activation="leaky_relu")  # not declared
    assert ok(batch_size=128)
    assert not ok(batch_size=150)  # past max_batch
    assert not ok(dtype=torch.float64, batch_size=128)


def odd_models(R: int, dtype: torch.dtype = torch.float64, activation: str = "relu") -> list[MLP]:
    gens = [torch.Generator().manual_seed(s) for s in range(R)]
    return [
        MLP(ODD[1:3], n_in=ODD[0], n_out=ODD[3], generator=g, activation=activation).to(dtype) for g in gens
    ]


SETTINGS = {"sgd": {}, "momentum": {"momentum": 0.9, "weight_decay": 1e-3}, "adam": {"optimizer": "adam"}}


@pytest.mark.parametrize("optimizer", list(SETTINGS))
def test_the_engine_runs_its_spans_through_the_kernel(device, optimizer, monkeypatch):
    """``StackedEngine.steps`` with the fused path (unchecked): the same weights as its eager
    steps, through a smaller last batch, a replica dropped mid-run (``keep``) and Adam's step count."""
    kw, R = SETTINGS[optimizer], 3
    launches = count_launches(monkeypatch)
    fast = StackedEngine(odd_models(R), device, use_fused=True, cuda_graphs=False, check_steps=0, **kw)
    eager = StackedEngine(odd_models(R), device, use_fused=False, cuda_graphs=False, **kw)
    X = inputs(200, ODD[0], torch.float64).to(device)
    for S, B, seed in ((4, 8, 0), (1, 5, 1)):
        idx, y, _ = batches(200, S, R, B, seed=seed)
        lr = torch.full((S, R), 0.01 if optimizer == "adam" else 0.1, dtype=torch.float64)
        p1, a1 = fast.steps(X, idx.to(device), y.to(device), lr.to(device))
        p2, a2 = eager.steps(X, idx.to(device), y.to(device), lr.to(device))
        assert torch.equal(a1, a2) and (p1 - p2).abs().max() < 1e-12
    keep = torch.tensor([True, False, True], device=device)
    fast.keep(keep)
    eager.keep(keep)
    idx, y, _ = batches(200, 3, 2, 8, seed=2)
    lr = torch.full((3, 2), 0.01, dtype=torch.float64, device=device)
    fast.steps(X, idx.to(device), y.to(device), lr)
    eager.steps(X, idx.to(device), y.to(device), lr)
    for a, b in zip(fast.state_dicts(), eager.state_dicts(), strict=True):
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-12
    assert launches == [4, 1, 3]


def count_launches(monkeypatch, fault: float = 0.0) -> list[int]:
    """Wraps ``fused.fused_steps``: the steps of each launch go into the list returned; ``fault``
    is added to one weight after each launch (a faulty kernel)."""
    launches: list[int] = []
    real = fused.fused_steps

    def wrapped(params, state, X, idx, *args, **kw):
        out = real(params, state, X, idx, *args, **kw)
        params[0].view(-1)[0] += fault
        launches.append(len(idx))
        return out

    monkeypatch.setattr(fused, "fused_steps", wrapped)
    return launches


@pytest.mark.parametrize("dtype,lr", [(torch.float64, 0.1), (torch.float32, 0.1)], ids=["float64", "float32"])
def test_a_kernel_that_agrees_passes_its_check_and_runs_the_later_spans(device, dtype, lr, monkeypatch):
    """The first span's first steps run through the kernel and eagerly, chunk by chunk, the eager
    result kept (so the weights are an eager engine's, bit for bit); the later spans run through
    the kernel alone."""
    R, C = 2, choice.CHECK_CHUNK
    launches = count_launches(monkeypatch)
    fast = StackedEngine(odd_models(R, dtype), device, use_fused=True, check_steps=2 * C)
    eager = StackedEngine(odd_models(R, dtype), device, use_fused=False)
    X = inputs(300, ODD[0], dtype).to(device)
    idx, y, _ = batches(300, 2 * C + 3, R, 8)
    lr = torch.full((len(idx), R), lr, dtype=dtype, device=device)
    p1, a1 = fast.steps(X, idx[: 2 * C].to(device), y[: 2 * C].to(device), lr[: 2 * C])
    p2, a2 = eager.steps(X, idx[: 2 * C].to(device), y[: 2 * C].to(device), lr[: 2 * C])
    assert fast.checked.keys() == {"fused"} and launches == [C, C]
    assert max(fast.checked["fused"]) < (1e-12 if dtype == torch.float64 else 1e-5)
    assert torch.equal(p1, p2) and torch.equal(a1, a2)
    assert all(torch.equal(a, b) for a, b in zip(fast.state(), eager.state(), strict=True))
    fast.steps(X, idx[2 * C :].to(device), y[2 * C :].to(device), lr[2 * C :])
    assert launches == [C, C, 3]


@pytest.mark.parametrize(
    "dtype,fault", [(torch.float64, 1e-6), (torch.float32, 1e-2)], ids=["float64", "float32"]
)
def test_a_kernel_that_disagrees_warns_once_and_the_engine_steps_eagerly(device, dtype, fault, monkeypatch):
    """A fault of 1e4 (float64) or 100 (float32) times the tolerance in every launch."""
    R, C = 2, choice.CHECK_CHUNK
    launches = count_launches(monkeypatch, fault=fault)
    fast = StackedEngine(odd_models(R, dtype), device, use_fused=True, check_steps=C + 2)
    eager = StackedEngine(odd_models(R, dtype), device, use_fused=False)
    X = inputs(300, ODD[0], dtype).to(device)
    idx, y, lr = (t.to(device) for t in batches(300, C + 10, R, 8))
    lr = lr.to(dtype)
    with pytest.warns(
        RuntimeWarning, match=r"fused Triton kernel disagreed .* in the median, .* over 2 chunks"
    ) as w:
        p1, a1 = fast.steps(X, idx[: C + 5], y[: C + 5], lr[: C + 5])
    fast.steps(X, idx[C + 5 :], y[C + 5 :], lr[C + 5 :])  # no second warning, no launch
    assert len(w) == 1 and "training goes on with eager steps" in str(w[0].message)
    assert launches == [C, 2] and not fast.use_fused and fast.path(8) == "eager"
    assert len(fast.checked["fused"]) == 2 and min(fast.checked["fused"]) > 0.99 * fault
    p2, a2 = eager.steps(X, idx[: C + 5], y[: C + 5], lr[: C + 5])
    eager.steps(X, idx[C + 5 :], y[C + 5 :], lr[C + 5 :])
    assert torch.equal(p1, p2) and torch.equal(a1, a2)
    assert all(torch.equal(a, b) for a, b in zip(fast.state(), eager.state(), strict=True))


def test_leaky_relu_never_reaches_the_kernel(monkeypatch):
    """The kernel does not declare leaky ReLU: an engine of leaky units steps eagerly (on a CPU:
    no graphs) even where the kernel may run."""
    launches = count_launches(monkeypatch)
    engine = StackedEngine(odd_models(2, activation="leaky_relu"), "cpu", use_fused=True)
    X = inputs(100, ODD[0], torch.float64)
    idx, y, lr = batches(100, 3, 2, 8)
    assert engine.path(8) == "eager"
    engine.steps(X, idx, y, lr)
    assert launches == [] and engine.checked == {}


def test_a_kernel_that_does_not_fit_falls_back_with_a_warning(monkeypatch):
    """Triton refuses a kernel before launching it (too much shared memory on some GPU): the engine
    warns once, turns the fused path off and takes the same steps another way."""
    from triton.runtime.errors import OutOfResources

    calls = []

    def too_big(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise OutOfResources(300_000, 232_448, "shared memory")

    fast = StackedEngine(odd_models(2, torch.float32), "cpu", use_fused=True, cuda_graphs=False)
    eager = StackedEngine(odd_models(2, torch.float32), "cpu", use_fused=False, cuda_graphs=False)
    monkeypatch.setattr(fused, "fused_steps", too_big)
    X = inputs(200, ODD[0], torch.float32)
    idx, y, _ = batches(200, 4, 2, 8, seed=0)
    lr = torch.full((4, 2), 0.1)
    with pytest.warns(RuntimeWarning, match="OutOfResources.*training goes on without it"):
        p1, a1 = fast.steps(X, idx, y, lr)
    p2, a2 = eager.steps(X, idx, y, lr)
    assert torch.equal(p1, p2) and torch.equal(a1, a2) and not fast.use_fused
    fast.steps(X, idx, y, lr)  # off from now on: no second try
    assert len(calls) == 1
