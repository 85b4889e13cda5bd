"""The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, appendix A).

G is the full-batch gradient of the mean training loss and Sigma the covariance of one
example's gradient. A minibatch gradient of size B (examples drawn independently) has
E|G_B|^2 = |G|^2 + tr(Sigma) / B, so two batch sizes give unbiased estimates of both:

    |G|^2     ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

Each squared norm is averaged over many batches before the ratio is taken (the ratio of the
averages, not the average of ratios, which would be biased). Here every big batch is split
into B_big / B_small small batches, as the paper does with per-device gradients: one pass
gives one |G_big|^2 and B_big / B_small values of |G_small|^2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from mlpmnist import store
from mlpmnist.data.loader import Data
from mlpmnist.model import MLP
from mlpmnist.science.runs import Runner
from mlpmnist.store.derived import cached
from mlpmnist.training.loop import split_train

#: ``chunk_grads(x [k, b, ...], y [k, b]) -> [k, P]``: the gradient of the mean loss over
#: each of k chunks of b examples, flattened.
ChunkGrads = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class NoiseScale:
    """One estimate. ``g2_small``/``g2_big``: mean squared gradient norms at the two batch sizes;
    ``grad_sq``: |G|^2; ``trace``: tr(Sigma); ``b_simple``: trace / grad_sq (examples; inf or
    negative when the |G|^2 estimate is not positive, i.e. it drowned in noise)."""

    b_small: int
    b_big: int
    n_big: int
    g2_small: float
    g2_big: float
    grad_sq: float
    trace: float
    b_simple: float


def noise_scale_from_norms(
    g2_small: float, g2_big: float, b_small: int, b_big: int
) -> tuple[float, float, float]:
    """(tr(Sigma), |G|^2, B_simple) from mean squared gradient norms at two batch sizes."""
    if not 1 <= b_small < b_big:
        raise ValueError(f"need 1 <= b_small < b_big; got b_small={b_small}, b_big={b_big}")
    grad_sq = (b_big * g2_big - b_small * g2_small) / (b_big - b_small)
    trace = (g2_small - g2_big) / (1.0 / b_small - 1.0 / b_big)
    b_simple = trace / grad_sq if grad_sq != 0 else math.inf
    return trace, grad_sq, b_simple


@torch.no_grad()
def estimate_noise_scale(
    chunk_grads: ChunkGrads,
    x: torch.Tensor,
    y: torch.Tensor,
    b_small: int,
    b_big: int,
    n_big: int,
    generator: torch.Generator,
) -> NoiseScale:
    """Estimate B_simple from ``n_big`` big batches of ``b_big`` examples drawn with replacement.

    Each big batch is cut into ``b_big // b_small`` small batches; ``chunk_grads`` returns their
    gradients, whose mean is the big batch's gradient. Drawing with replacement makes every
    batch an independent sample of the training distribution (x, y), so the two-batch-size
    estimator is unbiased for |G|^2 and tr(Sigma) of that finite set.
    """
    if not (isinstance(b_small, int) and isinstance(b_big, int) and 1 <= b_small < b_big):
        raise ValueError(f"need integers 1 <= b_small < b_big; got {b_small!r}, {b_big!r}")
    if b_big % b_small:
        raise ValueError(f"b_big ({b_big}) must be a multiple of b_small ({b_small})")
    if not isinstance(n_big, int) or n_big < 1:
        raise ValueError(f"n_big must be an integer >= 1; got {n_big!r}")
    if len(x) != len(y) or len(y) < 2:
        raise ValueError(f"x and y must hold the same number (>= 2) of examples; got {len(x)}, {len(y)}")
    k = b_big // b_small
    small, big = 0.0, 0.0
    for _ in range(n_big):
        idx = torch.randint(len(y), (b_big,), generator=generator).to(y.device)
        g = chunk_grads(x[idx].reshape(k, b_small, *x.shape[1:]), y[idx].reshape(k, b_small)).double()
        small += g.pow(2).sum(1).mean().item()
        big += g.mean(0).pow(2).sum().item()
    g2_small, g2_big = small / n_big, big / n_big
    trace, grad_sq, b_simple = noise_scale_from_norms(g2_small, g2_big, b_small, b_big)
    return NoiseScale(b_small, b_big, n_big, g2_small, g2_big, grad_sq, trace, b_simple)


def mlp_chunk_grads(model: MLP) -> ChunkGrads:
    """``ChunkGrads`` of the mean cross-entropy of ``model`` at its current weights (CPU)."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (xb,)), yb)

    per_chunk = vmap(grad(loss), in_dims=(None, 0, 0))

    def chunk_grads(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            g = per_chunk(params, x, y)
        return torch.cat([g[k].reshape(len(x), -1) for k in params], 1)

    return chunk_grads


def noise_runs(
    runner: Runner,
    data: Data,
    runs: Sequence[tuple[Sequence[int], float]],
    *,
    batch_size: int,
    epochs: Sequence[int],
    b_small: int,
    b_big: int,
    n_big: int,
    what: str,
) -> pd.DataFrame:
    """B_simple of the training loss at ``epochs`` of plain-SGD runs at ``batch_size``, one per
    (seeds, lr) of ``runs`` (every seed a replica; one experiment each, keeping those snapshots;
    all in one sweep), each estimate on the training split with a generator of its seed's own,
    cached in the store. One row per run, seed and epoch: run (its index in ``runs``), lr, seed,
    epoch, step, val_acc (NaN at 0), train_loss_full (mean cross-entropy over the training split,
    nats) and the ``NoiseScale`` fields; ``b_simple`` is in examples."""
    configs = [
        runner.config(
            batch_size=batch_size,
            lr=lr,
            seeds=tuple(seeds),
            epochs=max(max(epochs), 1),
            snapshots=tuple(epochs),
        )
        for seeds, lr in runs
    ]
    history = runner.train(configs, what)
    train_split, _ = split_train(data.train, configs[0])
    rows = []
    for i, config in enumerate(configs):
        found = store.trusted(runner.results_dir, config)
        for e in epochs:
            for seed, model in found.models(e).items():

                def estimate(seed: int = seed, model: MLP = model) -> dict:
                    gen = torch.Generator().manual_seed(seed + 1)
                    grads = mlp_chunk_grads(model)
                    est = estimate_noise_scale(
                        grads, train_split.x, train_split.y, b_small, b_big, n_big, gen
                    )
                    with torch.no_grad():
                        full = F.cross_entropy(model(train_split.x), train_split.y).item()
                    return {"train_loss_full": full, **asdict(est)}

                inputs = {
                    "key": config.key(),
                    "sha": found.record.get("weights_sha256"),
                    "epoch": e,
                    "seed": seed,
                    "b_small": b_small,
                    "b_big": b_big,
                    "n_big": n_big,
                }
                h = history[
                    (history["key"] == config.key()) & (history["seed"] == seed) & (history["epoch"] == e)
                ]
                rows.append(
                    {
                        "run": i,
                        "lr": config.lrs[0],
                        "seed": seed,
                        "epoch": e,
                        "step": e * config.steps_per_epoch,
                        "val_acc": float(h["val_acc"].iloc[0]) if len(h) else math.nan,
                        **cached(runner.results_dir, "noise", inputs, estimate),
                    }
                )
    return pd.DataFrame(rows)


def noise_at_target(noise: pd.DataFrame, target: float) -> float:
    """B_simple (examples) at the first snapshot of one seed's ``noise_runs`` rows whose
    validation accuracy reached ``target``; NaN when none did."""
    reached = noise[noise["val_acc"] >= target].sort_values("epoch")
    return float(reached["b_simple"].iloc[0]) if len(reached) else math.nan
