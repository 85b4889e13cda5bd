"""What every engine is (``Engine``), how a step's batch is gathered, and the evaluation they share.

An engine's ``steps`` takes S steps on rows ``idx`` [S, R, B] of the training images ``X`` [N, 784]
with labels ``y`` [S, R, B] and learning rates ``lr`` [S, R] (already scheduled), and returns
``Outputs`` from before each update; the caller sums them once per evaluation, not once per step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from mlpmnist.model import MLP

StateDict = dict[str, Tensor]
#: (log-probability of the true class, predicted class) of S steps, each [S, R, B].
Outputs = tuple[Tensor, Tensor]
#: What changes each gathered batch [R, B, features] before a step (augmentation), or None.
Transform = Callable[[Tensor], Tensor] | None


class Engine(Protocol):
    """What ``train`` needs from an engine (see the module docstring)."""

    @property
    def n_replicas(self) -> int: ...
    def steps(
        self, X: Tensor, idx: Tensor, y: Tensor, lr: Tensor, transform: Transform = None
    ) -> Outputs: ...
    def activations(self, x: Tensor) -> list[Tensor]: ...
    def head(self, h: Tensor) -> Tensor: ...
    def keep(self, mask: Tensor) -> None: ...
    def state_dicts(self) -> list[StateDict]: ...
    def weight_norms(self) -> Tensor: ...


def stack_params(models: Sequence[MLP]) -> list[Tensor]:
    """``models``' parameters as the stacked engine and the fused kernel keep them, new tensors: W0
    [R, F, H1] and b0 [R, 1, H1] apart (the batch has no ones column), then per later layer a slab
    [R, in + 1, out], W (nn.Linear's, transposed) over the row b."""
    layers = list(zip(*(m.layers for m in models), strict=True))
    W = [torch.stack([lin.weight.detach().T for lin in ls]) for ls in layers]
    b = [torch.stack([lin.bias.detach() for lin in ls]).unsqueeze(1) for ls in layers]
    return [W[0].contiguous(), b[0], *(torch.cat(wb, 1) for wb in zip(W[1:], b[1:], strict=True))]


def gather_batch(X: Tensor, idx: Tensor, out: Tensor | None = None) -> Tensor:
    """Rows ``idx`` [..., b] of ``X`` [N, features] as [..., b, features], written into ``out``
    when given (a contiguous buffer of that shape, reused from step to step: on a CPU a fresh
    allocation's page faults measured costlier than the copy, 61 ms against 8 ms for 12,288 rows)."""
    flat = idx.reshape(-1)
    if out is None:
        return X.index_select(0, flat).view(*idx.shape, -1)
    torch.index_select(X, 0, flat, out=out.view(len(flat), -1))
    return out


@torch.no_grad()
def evaluate(engine: Engine, x: Tensor, y: Tensor, chunk: int = 10_000) -> tuple[Tensor, Tensor, Tensor]:
    """Per replica on (``x``, ``y``): mean cross-entropy (nats) [R], accuracy (fraction) [R], and
    the fraction of dead units of each hidden layer [R, L]: units whose output is <= 0 on every
    example (for leaky ReLU, a pre-activation <= 0 everywhere)."""
    loss = torch.zeros(engine.n_replicas, dtype=torch.float64, device=x.device)
    correct = torch.zeros(engine.n_replicas, dtype=torch.int64, device=x.device)
    alive: list[Tensor] | None = None
    for start in range(0, len(y), chunk):
        xs, ys = x[start : start + chunk], y[start : start + chunk]
        acts = engine.activations(xs)
        z = engine.head(acts[-1])
        active = [a.amax(1) > 0 for a in acts]  # [R, h] per layer
        alive = active if alive is None else [p | q for p, q in zip(alive, active, strict=True)]
        target = ys.expand(z.shape[0], -1)
        loss += F.cross_entropy(z.transpose(1, 2), target, reduction="none").sum(1).double()
        correct += (z.argmax(2) == target).sum(1)
    assert alive is not None, "evaluate needs at least one example"
    dead = torch.stack([1.0 - a.float().mean(1) for a in alive], 1)
    return (loss / len(y)).float(), correct.double().div(len(y)).float(), dead
