"""What every engine is: the ``Engine`` protocol, the outputs of its steps, how a step's batch is
gathered, and the evaluation every engine shares (loss, accuracy and dead units per replica).

An engine's ``steps`` takes S steps on rows ``idx`` [S, R, B] of the training images with labels
``y`` [S, R, B] and learning rates ``lr`` [S, R] (already scheduled), and returns, from before each
update, the log-probability of the true class and the predicted class, each [S, R, B]; the caller
sums these once per evaluation, not once per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

StateDict = dict[str, torch.Tensor]
#: (log-probability of the true class, predicted class) of S steps, each [S, R, B].
Outputs = tuple[torch.Tensor, torch.Tensor]


class Engine(Protocol):
    """What ``train`` needs from an engine (see the module docstring)."""

    @property
    def n_replicas(self) -> int: ...

    def steps(
        self,
        X: torch.Tensor,
        idx: torch.Tensor,
        y: torch.Tensor,
        lr: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> Outputs: ...

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]: ...

    def head(self, h: torch.Tensor) -> torch.Tensor: ...

    def keep(self, mask: torch.Tensor) -> None: ...

    def state_dicts(self) -> list[StateDict]: ...

    def weight_norms(self) -> torch.Tensor: ...


def gather_batch(X: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rows ``idx`` [..., b] of ``X`` [N, features] as [..., b, features], written into ``out``
    when given (a contiguous buffer of that shape and X's dtype, reused from step to step).

    A buffer reused across steps saves a fresh allocation per step, whose page faults measured
    costlier on a CPU than the copy itself (12,288 rows: 61 ms fresh and scaled from uint8,
    8 ms into a reused buffer).
    """
    flat = idx.reshape(-1)
    if out is None:
        return X.index_select(0, flat).view(*idx.shape, -1)
    torch.index_select(X, 0, flat, out=out.view(len(flat), -1))
    return out


@torch.no_grad()
def evaluate(
    engine: Engine, x: torch.Tensor, y: torch.Tensor, chunk: int = 10_000
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per replica on (``x``, ``y``): mean cross-entropy (nats) [R], accuracy (fraction in
    [0, 1]) [R], and the fraction of dead units of each hidden layer [R, L]. A unit is dead when
    its output is <= 0 on every example of ``x``: for ReLU, zero everywhere; for leaky ReLU, a
    pre-activation <= 0 everywhere (its gradient then only the slope's)."""
    R = engine.n_replicas
    loss = torch.zeros(R, dtype=torch.float64, device=x.device)
    correct = torch.zeros(R, dtype=torch.int64, device=x.device)
    alive: list[torch.Tensor] | None = None
    for start in range(0, len(y), chunk):
        xs, ys = x[start : start + chunk], y[start : start + chunk]
        acts = engine.activations(xs)
        z = engine.head(acts[-1] if acts else xs)
        active = [a.amax(1) > 0 for a in acts]  # [R, h] per layer
        alive = active if alive is None else [p | q for p, q in zip(alive, active, strict=True)]
        target = ys.expand(z.shape[0], -1)
        loss += F.cross_entropy(z.transpose(1, 2), target, reduction="none").sum(1).double()
        correct += (z.argmax(2) == target).sum(1)
    assert alive is not None, "evaluate needs at least one example"
    dead = torch.stack([1.0 - a.float().mean(1) for a in alive], 1) if alive else x.new_zeros(R, 0)
    return (loss / len(y)).float(), correct.double().div(len(y)).float(), dead
