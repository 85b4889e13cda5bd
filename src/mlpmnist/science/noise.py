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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from mlpmnist.data import loader as mdata
from mlpmnist.model import MLP
from mlpmnist.science.common import science_config
from mlpmnist.training.loop import split_train, torch_threads, train

#: The columns of ``noise_scale_during_training`` that the report and the summary show.
NOISE_COLUMNS = ("epoch", "step", "val_acc", "train_loss_full", "grad_sq", "trace", "b_simple")

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


def mlp_chunk_grads(state_dict: dict[str, torch.Tensor]) -> ChunkGrads:
    """``ChunkGrads`` of the mean cross-entropy of the ``MLP`` with these weights (CPU)."""
    model = MLP.from_state_dict(state_dict)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (xb,)), yb)

    per_chunk = vmap(grad(loss), in_dims=(None, 0, 0))

    def chunk_grads(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            g = per_chunk(params, x, y)
        return torch.cat([g[k].reshape(len(x), -1) for k in params], 1)

    return chunk_grads


def noise_scale_during_training(
    batch_size: int,
    lr: float,
    data: mdata.Data | None = None,
    *,
    seeds: Sequence[int] = (0,),
    epochs: Iterable[int] = (0, 1, 2, 4, 8),
    b_small: int = 64,
    b_big: int = 4096,
    n_big: int = 32,
    **fields: Any,
) -> pd.DataFrame:
    """B_simple of the training loss at several epochs of plain-SGD runs, one per seed.

    Trains with ``train`` (batch ``batch_size``, constant ``lr``, the seeds as replicas of one
    engine; ``fields`` are further ``TrainConfig`` fields over the science defaults: 5,000
    validation images, full batches only) keeping snapshots after each epoch in ``epochs`` (0 =
    at initialisation), then estimates the noise scale on the training split at each snapshot,
    on the CPU, with a generator of the seed's own. Returns one row per seed and epoch: seed,
    epoch, step (SGD steps so far), val_acc, val_loss (NaN at 0), train_loss_full (mean CE in
    nats over the training split) and the ``NoiseScale`` fields; ``b_simple`` is in examples.
    """
    epochs = sorted(set(epochs))
    if not epochs or epochs[0] < 0:
        raise ValueError(f"epochs must be a non-empty list of integers >= 0; got {epochs!r}")
    config = science_config(
        batch_size=batch_size, epochs=max(epochs[-1], 1), lr=lr, seeds=tuple(seeds), **fields
    )
    data = data if data is not None else mdata.load(dataset=config.dataset)
    result = train(config, data, progress=False, verbose=False, snapshot_epochs=epochs)
    train_split, _ = split_train(data.train, config)
    rows = []
    with torch_threads(config.threads):
        for i, seed in enumerate(config.seeds):
            h = result.history[result.history["seed"] == seed].set_index("epoch")
            gen = torch.Generator().manual_seed(seed + 1)
            for e in epochs:
                sd = result.snapshots[e][i]
                if sd is None:  # diverged before this epoch
                    continue
                with torch.no_grad():
                    full = F.cross_entropy(MLP.from_state_dict(sd)(train_split.x), train_split.y).item()
                grads = mlp_chunk_grads(sd)
                est = estimate_noise_scale(grads, train_split.x, train_split.y, b_small, b_big, n_big, gen)
                rows.append(
                    {
                        "seed": seed,
                        "epoch": e,
                        "step": e * config.steps_per_epoch,
                        "val_acc": float(h.loc[e, "val_acc"]) if e in h.index else float("nan"),
                        "val_loss": float(h.loc[e, "val_loss"]) if e in h.index else float("nan"),
                        "train_loss_full": full,
                        **asdict(est),
                    }
                )
    return pd.DataFrame(rows)


def exact_noise_scale(per_example_grads: torch.Tensor) -> tuple[float, float, float]:
    """(tr(Sigma), |G|^2, B_simple) exactly from all per-example gradients [N, P].

    Sigma is the population covariance (1/N), matching batches drawn with replacement.
    """
    g = per_example_grads.double()
    mean = g.mean(0)
    trace = float((g - mean).pow(2).sum(1).mean())
    grad_sq = float(mean.pow(2).sum())
    return trace, grad_sq, trace / grad_sq if grad_sq else math.inf


def noise_at_target(noise: pd.DataFrame, target: float) -> float:
    """B_simple (examples) at the first snapshot of ``noise_scale_during_training`` whose
    validation accuracy reached ``target``; NaN when none did."""
    reached = noise[noise["val_acc"] >= target]
    return float(reached["b_simple"].iloc[0]) if len(reached) else float("nan")


def noise_report(noise: pd.DataFrame, b_crit: float | None, target: float) -> str:
    """The numbers behind the noise-scale claims as text: per epoch the median over seeds of
    ``NOISE_COLUMNS``, and per seed B_simple at its first snapshot at or above ``target``
    beside ``b_crit`` (from steps to target; None or NaN when there was no fit)."""
    b_crit = math.nan if b_crit is None else b_crit
    cols = [c for c in NOISE_COLUMNS if c != "epoch"]
    per_epoch = noise.groupby("epoch")[cols].median().reset_index()
    at = {int(s): noise_at_target(g, target) for s, g in noise.groupby("seed")}
    return "\n".join(
        [
            f"median over {noise['seed'].nunique()} seed(s) per epoch:",
            per_epoch.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
            f"B_simple at each seed's first snapshot with val_acc >= {target:.0%}: "
            + ", ".join(f"seed {s}: {v:.0f}" for s, v in at.items()),
            f"critical batch from steps to target: {b_crit:.0f}",
        ]
    )
