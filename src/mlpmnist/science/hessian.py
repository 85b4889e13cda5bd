"""The sharpness of the training loss: lambda_max, the top eigenvalue of its Hessian, by power
iteration on Hessian-vector products, at initialisation and during training.

Full-batch gradient descent on a quadratic is stable only for lr < 2 / lambda_max, so 2 / lambda_max
is the step size at which the loss surface itself starts to push back; the studies set it beside
the tuned lr and the lr at which runs collapse. Hessian-vector products are forward-over-reverse
(``torch.func.jvp`` of ``torch.func.grad``): one costs a few forward passes and never forms the
P x P Hessian (P = 50,890 for the reference MLP).

Units: eigenvalues are in loss units (nats of mean cross-entropy) per squared parameter step,
so 2 / lambda_max is a plain SGD step size, like ``lr``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

from mlpmnist.config import TrainConfig
from mlpmnist.data import loader as mdata
from mlpmnist.model import MLP
from mlpmnist.science.common import check_lrs, check_positive_ints, check_seeds, grid_config
from mlpmnist.training.loop import TrainResult, input_transform, split_train, torch_threads
from mlpmnist.training.many import train_many

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


def flat_hvp(loss_fn: LossFn, params: Params) -> MatVec:
    """``hvp`` of ``loss_fn`` at ``params`` as an operator on flat vectors [P] -> [P]."""
    params = {k: p.detach() for k, p in params.items()}
    return lambda v: flatten(hvp(loss_fn, params, unflatten(v, params)))


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


#: The columns of ``lambda_max_table``.
SHARPNESS_COLUMNS = (
    "batch_size",
    "lr",
    "seed",
    "epoch",
    "step",
    "lambda_max",
    "two_over_lambda",
    "lr_times_lambda",
    "iterations",
    "converged",
    "rel_change",
    "residual",
    "n_examples",
)


def lambda_max_table(
    result: TrainResult,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    chunk_size: int = CHUNK_SIZE,
    tol: float = 1e-4,
    max_iter: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """lambda_max of every snapshot of a ``train`` run (``snapshot_epochs``; epoch 0 = at
    initialisation) on (x, y): the training inputs as the network sees them, and labels.

    One row per snapshot epoch and replica that had not diverged by then (columns
    ``SHARPNESS_COLUMNS``): batch_size, lr and seed of the replica, epoch, step (SGD steps so
    far), lambda_max (nats per squared step), two_over_lambda (2 / lambda_max: the largest
    stable step size of full-batch gradient descent on the local quadratic, an lr; inf when
    lambda_max <= 0), lr_times_lambda (lr * lambda_max: above 2, full-batch GD at this lr
    would be unstable here), the ``EigenResult`` diagnostics, and n_examples (len(y)). Every
    power iteration starts from the same ``seed``, so identical weights (the replicas of one
    seed at epoch 0, whatever their lr) are measured once.
    """
    config = result.config
    rows = []
    seen: list[tuple[dict, EigenResult]] = []  # replicas of one seed share their initialisation
    for epoch in sorted(result.snapshots):
        for i, sd in enumerate(result.snapshots[epoch]):
            if sd is None:  # diverged before this epoch
                continue
            eig = next((e for s, e in seen if _same_weights(s, sd)), None)
            if eig is None:
                eig = lambda_max(sd, x, y, chunk_size=chunk_size, tol=tol, max_iter=max_iter, seed=seed)
                if epoch == 0:
                    seen.append((sd, eig))
            lr = float(config.lrs[i])
            rows.append(
                {
                    "batch_size": config.batch_size,
                    "lr": lr,
                    "seed": int(config.seeds[i]),
                    "epoch": int(epoch),
                    "step": int(epoch * config.steps_per_epoch),
                    "lambda_max": eig.value,
                    "two_over_lambda": 2.0 / eig.value if eig.value > 0 else math.inf,
                    "lr_times_lambda": lr * eig.value,
                    "iterations": eig.iterations,
                    "converged": eig.converged,
                    "rel_change": eig.rel_change,
                    "residual": eig.residual,
                    "n_examples": len(y),
                }
            )
    return pd.DataFrame(rows, columns=list(SHARPNESS_COLUMNS))


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def sample_split(split: mdata.Split, n: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of ``n`` examples of ``split`` drawn without replacement by a generator seeded
    with ``seed`` (all of it, in order, when ``n`` is None or at least its size)."""
    if n is None or n >= len(split):
        return split.x, split.y
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    return split.x[idx], split.y[idx]


def lambda_max_during_training(
    batch_sizes: Sequence[int],
    lrs: Sequence[float],
    data: mdata.Data | None = None,
    *,
    seeds: Sequence[int] = (0,),
    epochs: Iterable[int] = (0, 1, 2),
    n_examples: int | None = 10_000,
    chunk_size: int = CHUNK_SIZE,
    tol: float = 1e-4,
    max_iter: int = 200,
    concurrency: int | None = None,
    **fields: Any,
) -> pd.DataFrame:
    """lambda_max per batch size, lr, seed and epoch of plain-SGD runs.

    Per batch size, one ``train`` call runs every (seed, lr) replica (``grid_config``; ``fields``
    are further ``TrainConfig`` fields over the science defaults) keeping snapshots at
    ``epochs`` (0 = initialisation); each snapshot's lambda_max is that of the mean training
    loss over ``n_examples`` training-split images drawn once with generator seed 0 (None: the
    whole split), the same images for every snapshot, as the network saw them (``inputs``:
    ``network_inputs``). The batch sizes train at the same time where the device allows
    (``trainer.train_many``). Returns ``lambda_max_table``'s rows for every batch size.
    """
    batch_sizes, lrs, seeds = (
        check_positive_ints("batch_sizes", batch_sizes),
        check_lrs(lrs),
        check_seeds(seeds),
    )
    epochs = sorted(set(epochs))
    if not epochs or epochs[0] < 0:
        raise ValueError(f"epochs must be a non-empty list of integers >= 0; got {epochs!r}")
    configs = [grid_config(b, lrs, seeds, epochs=max(epochs[-1], 1), **fields) for b in batch_sizes]
    data = data if data is not None else mdata.load(dataset=configs[0].dataset)
    snapshots = [{"snapshot_epochs": epochs}] * len(configs)
    frames = []
    for config, result in zip(
        configs, train_many(configs, data, hooks=snapshots, concurrency=concurrency), strict=True
    ):
        x, y = sample_split(network_inputs(config, data), n_examples)
        with torch_threads(config.threads):
            frames.append(lambda_max_table(result, x, y, chunk_size=chunk_size, tol=tol, max_iter=max_iter))
    return pd.concat(frames, ignore_index=True)


def network_inputs(config: TrainConfig, data: mdata.Data) -> mdata.Split:
    """The training split as the network of ``config`` sees it: ``train_limit`` and ``holdout``
    applied, and the pixels as ``config.inputs`` presents them (scaled, centred, standardised)."""
    split, _ = split_train(data.train, config)
    change = input_transform(config, split.x)
    return split if change is None else mdata.Split(change(split.x), split.y)


def sharpness_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per batch size, lr and epoch of ``lambda_max_table`` rows: lambda_max's median, min and
    max over seeds (nats per squared step), 2 / median (an lr), n_seeds and n_converged."""
    g = table.groupby(["batch_size", "lr", "epoch"])
    out = g.agg(
        step=("step", "first"),
        lambda_max=("lambda_max", "median"),
        lambda_min_seed=("lambda_max", "min"),
        lambda_max_seed=("lambda_max", "max"),
        n_seeds=("seed", "nunique"),
        n_converged=("converged", "sum"),
    ).reset_index()
    out.insert(out.columns.get_loc("lambda_max") + 1, "two_over_lambda", 2.0 / out["lambda_max"])
    return out
