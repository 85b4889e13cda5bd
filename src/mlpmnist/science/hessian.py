"""The sharpness of the training loss: lambda_max, the top eigenvalue of its Hessian, by power
iteration on Hessian-vector products, at initialisation and during training.

Full-batch gradient descent on a quadratic is stable only for lr < 2 / lambda_max, so 2 / lambda_max
is the step size at which the loss surface itself starts to push back; the studies set it beside
the tuned lr and the lr at which runs collapse. Hessian-vector products are forward-over-reverse
(``torch.func.jvp`` of ``torch.func.grad``): one costs a few forward passes and never forms the
P x P Hessian (P = 55,050 for the reference MLP).

Units: eigenvalues are in loss units (nats of mean cross-entropy) per squared parameter step,
so 2 / lambda_max is a plain SGD step size, like ``lr``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

from mlpmnist.config import TrainConfig
from mlpmnist.data import loader as mdata
from mlpmnist.model import MLP
from mlpmnist.training.loop import input_transform, split_train

Params = dict[str, torch.Tensor]
#: ``loss_fn(params) -> scalar``: a loss as a function of named parameters.
LossFn = Callable[[Params], torch.Tensor]
#: ``matvec(v [P]) -> H v [P]``: a symmetric linear operator on flat parameter vectors.
MatVec = Callable[[torch.Tensor], torch.Tensor]

#: Examples per Hessian-vector product chunk: one chunk's activations and tangents take tens of MB.
CHUNK_SIZE = 4096


def hvp(loss_fn: LossFn, params: Params, v: Params) -> Params:
    """The Hessian-vector product H v of ``loss_fn`` at ``params``, forward-over-reverse: the
    directional derivative along ``v`` of the gradient. Returns a dict shaped like ``params``
    (loss units per squared parameter unit, times v's units)."""
    with warnings.catch_warnings():
        # torch's own jvp decompositions call the deprecated torch.jit.script on first use.
        warnings.filterwarnings(
            "ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning
        )
        return jvp(grad(loss_fn), (params,), (v,))[1]


def flatten(params: Params) -> torch.Tensor:
    """The tensors of ``params`` concatenated in their order into one vector [P]."""
    return torch.cat([t.reshape(-1) for t in params.values()])


def unflatten(vector: torch.Tensor, like: Params) -> Params:
    """``vector`` [P] cut into tensors shaped like ``like``'s, under the same names."""
    out, i = {}, 0
    for name, t in like.items():
        out[name] = vector[i : i + t.numel()].view_as(t)
        i += t.numel()
    if i != len(vector):
        raise ValueError(f"vector has {len(vector)} entries; the parameters have {i}")
    return out


def mlp_params(
    weights: MLP | dict[str, torch.Tensor], dtype: torch.dtype | None = None
) -> tuple[MLP, Params]:
    """(an ``MLP`` with the layer sizes of ``weights``, its parameters as detached tensors in
    ``dtype``; None: as stored). ``weights`` is an ``MLP`` or its state dict; the module only
    supplies the architecture to ``functional_call``, the returned tensors are the weights."""
    model = weights if isinstance(weights, MLP) else MLP.from_state_dict(weights)
    source = weights if isinstance(weights, dict) else dict(model.named_parameters())
    params = {k: source[k].detach().to(dtype or source[k].dtype) for k, _ in model.named_parameters()}
    return model, params


def mlp_loss(model: MLP, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of ``model``'s architecture with weights ``params`` on (x, y)."""
    return F.cross_entropy(functional_call(model, params, (x,)), y)


def mlp_hvp(
    weights: MLP | dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    chunk_size: int = CHUNK_SIZE,
    dtype: torch.dtype | None = None,
) -> tuple[MatVec, int]:
    """(H v operator, P) for the mean cross-entropy of the MLP ``weights`` over all of (x, y).

    ``x`` [N, n_in] are the inputs as the network sees them, ``y`` [N] the labels. The mean
    over N is the chunk means weighted by chunk size, so ``chunk_size`` bounds the memory (the
    activations of one chunk) without changing the result beyond rounding. ``dtype``: the
    precision of the weights, inputs and products (None: the weights'). Products run on the
    weights' device. The operator takes and returns flat vectors [P] in the parameters' order
    (``MLP.named_parameters``).
    """
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"x and y must hold the same number (> 0) of examples; got {len(x)}, {len(y)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    model, params = mlp_params(weights, dtype)
    first = next(iter(params.values()))
    dt, device = first.dtype, first.device
    x, y = x.to(device, dt), y.to(device)
    chunks = [
        (xc, yc, len(yc) / len(y)) for xc, yc in zip(x.split(chunk_size), y.split(chunk_size), strict=True)
    ]

    def matvec(v: torch.Tensor) -> torch.Tensor:
        tangent = unflatten(v.to(device, dt), params)
        out = torch.zeros(len(v), dtype=dt, device=device)
        for xc, yc, w in chunks:
            out += w * flatten(hvp(partial(mlp_loss, model, x=xc, y=yc), params, tangent))
        return out

    return matvec, sum(p.numel() for p in params.values())


@dataclass(frozen=True)
class EigenResult:
    """The largest algebraic eigenvalue of a symmetric operator, by power iteration.

    ``value``: the eigenvalue (for a Hessian: loss units per squared parameter step).
    ``iterations``: operator applications in all (both phases when shifted). ``converged``:
    the last relative change fell to the tolerance before the iteration cap. ``rel_change``:
    that last change, |Δ estimate| / |estimate|, of the operator iterated on last (H, or
    H - shift I). ``residual``: |A v - a v| / |a| for that operator A, its estimate a and unit
    vector v (0 for an exact eigenpair; a large value with a small ``rel_change`` warns of a
    false convergence, e.g. eigenvalues +c and -c of equal magnitude). ``shift``: 0, or the
    dominant negative eigenvalue when H - shift I was iterated on (see ``top_eigenvalue``).
    ``vector``: the unit eigenvector estimate [P].
    """

    value: float
    iterations: int
    converged: bool
    rel_change: float
    residual: float
    shift: float
    vector: torch.Tensor


def power_iteration(
    matvec: MatVec, start: torch.Tensor, *, tol: float = 1e-4, max_iter: int = 200
) -> EigenResult:
    """The eigenvalue of largest magnitude of the symmetric operator ``matvec``, with its sign.

    Iterates v <- A v / |A v| from ``start``; the estimate is the Rayleigh quotient v.A v of
    the current unit vector. Stops once |Δ estimate| <= ``tol`` |estimate| or after
    ``max_iter`` applications of A. The estimate's error shrinks like r^(2k), r = |a_2| / |a_1|
    (the two largest magnitudes), so when r is near 1 one step changes it little although it is
    still far off: the error is about ``rel_change`` r^2 / (1 - r^2). ``residual`` shows it.
    """
    if not (tol > 0 and max_iter >= 1):
        raise ValueError(f"need tol > 0 and max_iter >= 1; got {tol!r}, {max_iter!r}")
    v = start / start.norm()
    value, rel, residual, k = math.nan, math.inf, math.inf, 0
    with torch.no_grad():
        for k in range(1, max_iter + 1):
            w = matvec(v)
            new = float(v @ w)
            norm = float(w.norm())
            residual = float((w - new * v).norm()) / abs(new) if new else math.inf
            rel = abs(new - value) / abs(new) if new and math.isfinite(value) else math.inf
            value = new
            if norm == 0:  # v is in the null space: A v = 0 exactly
                return EigenResult(0.0, k, True, 0.0, 0.0, 0.0, v)
            v = w / norm
            if rel <= tol:
                break
    return EigenResult(value, k, rel <= tol, rel, residual, 0.0, v)


def top_eigenvalue(
    matvec: MatVec,
    dim: int,
    *,
    tol: float = 1e-4,
    max_iter: int = 200,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> EigenResult:
    """The largest algebraic eigenvalue of the symmetric operator ``matvec`` on R^``dim``.

    Power iteration finds the eigenvalue of largest magnitude, mu (``power_iteration`` from a
    standard normal start drawn from a generator seeded with ``seed``). If mu >= 0 it is the
    largest eigenvalue. If mu < 0, every eigenvalue lies in [mu, lambda_max], so the shifted
    operator H - mu I has eigenvalues in [0, lambda_max - mu] and its dominant one is
    lambda_max - mu: a second power iteration (from a fresh random start) on it, plus mu, gives
    lambda_max. Each phase runs at most ``max_iter`` times with tolerance ``tol``. The second
    phase converges with ratio (lambda_2 - mu) / (lambda_max - mu), slowly when |mu| is much
    larger than the gap lambda_max - lambda_2; at the MLP's measured points mu was positive.
    """
    gen = torch.Generator().manual_seed(seed)
    start = torch.randn(dim, generator=gen, dtype=torch.float64).to(device, dtype)
    first = power_iteration(matvec, start, tol=tol, max_iter=max_iter)
    if first.value >= 0:
        return first
    mu = first.value
    start = torch.randn(dim, generator=gen, dtype=torch.float64).to(device, dtype)
    second = power_iteration(lambda v: matvec(v) - mu * v, start, tol=tol, max_iter=max_iter)
    return EigenResult(
        value=second.value + mu,
        iterations=first.iterations + second.iterations,
        converged=first.converged and second.converged,
        rel_change=second.rel_change,
        residual=second.residual,
        shift=mu,
        vector=second.vector,
    )


def lambda_max(
    weights: MLP | dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    chunk_size: int = CHUNK_SIZE,
    tol: float = 1e-4,
    max_iter: int = 200,
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> EigenResult:
    """The top Hessian eigenvalue of the mean cross-entropy of the MLP ``weights`` (a model or
    its state dict) over all of (x, y), in nats per squared parameter step (``mlp_hvp``,
    ``top_eigenvalue``). The same arguments and ``seed`` give the same result."""
    matvec, dim = mlp_hvp(weights, x, y, chunk_size=chunk_size, dtype=dtype)
    first = next(iter(mlp_params(weights, dtype)[1].values()))
    return top_eigenvalue(
        matvec, dim, tol=tol, max_iter=max_iter, seed=seed, dtype=first.dtype, device=first.device
    )


def sample_split(split: mdata.Split, n: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of ``n`` examples of ``split`` drawn without replacement by a generator seeded
    with ``seed`` (all of it, in order, when ``n`` is None or at least its size)."""
    if n is None or n >= len(split):
        return split.x, split.y
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    return split.x[idx], split.y[idx]


def network_inputs(config: TrainConfig, data: mdata.Data) -> mdata.Split:
    """The training split as the network of ``config`` sees it: ``train_limit`` and ``holdout``
    applied, and the pixels as ``config.inputs`` presents them (scaled, centred, standardised)."""
    split, _ = split_train(data.train, config)
    change = input_transform(config, split.x)
    return split if change is None else mdata.Split(change(split.x), split.y)
