"""Which path runs a stacked engine's span of steps, and the check a faster path passes first.

Paths, fastest first: "fused" (the whole span as one Triton kernel, ``fused``), "graphs" (the
eager steps recorded as CUDA graphs, ``graphs``) and "eager" (one step after another, everywhere).
A faster path runs only what it declares; the rest goes to the next path (``choose_path``).

The first span an engine runs on a faster path is checked: its first ``CHECK_STEPS`` steps run in
chunks of ``CHECK_CHUNK``, each chunk on the faster path and then eagerly from the same state,
the eager result kept. The chunks restart from a common state because float32 training is
chaotic: rounding differences of 1e-7 between two honest implementations grew to 1e-2 within 16
steps, and to 1 within 256, at batch 128 and lr 0.2 (Triton's interpreter against the eager
engine on MNIST; ``TOLERANCE`` gives the numbers for each dtype). Where a chunk disagrees by more
than the tolerance, the engine warns once and steps eagerly from then on.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from mlpmnist.engine import rules
from mlpmnist.engine.cuda import fused

#: Steps of a faster path's first span that are also run eagerly and compared.
CHECK_STEPS = 256
#: Steps per compared chunk: each starts from the eager state (see the module docstring).
CHECK_CHUNK = 16
#: The largest disagreement of a chunk (``disagreement``) that passes, per dtype.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-3}


def choose_path(
    fused_here: bool,
    graphs_here: bool,
    sizes: Sequence[int],
    dtype: torch.dtype,
    optimizer: str,
    activation: str,
    batch_size: int,
) -> str:
    """The fastest path for a span at ``batch_size`` of an MLP of layer ``sizes`` in ``dtype``:
    "fused" where the kernel can run (``fused_here``: triton on a CUDA device, or its
    interpreter) and declares the configuration (``fused.supports``); else "graphs" where CUDA
    graphs can be recorded (``graphs_here``: a CUDA device) and the optimizer's steps can be
    (``rules.Optimizer.recordable``); else "eager"."""
    if fused_here and fused.supports(sizes, dtype, optimizer, activation, batch_size):
        return "fused"
    if graphs_here and rules.rule(optimizer).recordable:
        return "graphs"
    return "eager"


def disagreement(fast: Sequence[torch.Tensor], eager: Sequence[torch.Tensor]) -> float:
    """The largest |fast - eager| over the parameters; where both are NaN or the same infinity
    (a replica that diverged both ways) 0, where only one is finite infinity."""
    worst, inf = 0.0, float("inf")
    for a, b in zip(fast, eager, strict=True):
        d = (a - b).abs().masked_fill_((a == b) | (a.isnan() & b.isnan()), 0.0)
        worst = max(worst, d.nan_to_num(nan=inf, posinf=inf).max().item() if d.numel() else 0.0)
    return worst


def tolerance(dtype: torch.dtype) -> float:
    """The largest disagreement that passes in ``dtype`` (``TOLERANCE``; float32's for others)."""
    return TOLERANCE.get(dtype, TOLERANCE[torch.float32])


def verdict(path: str, device: torch.device, dtype: torch.dtype, worst: float, steps: int) -> bool:
    """Whether ``path`` passed its check on ``device`` (largest disagreement ``worst`` over
    ``steps`` steps within ``tolerance``); warns in one line when it did not."""
    tol = tolerance(dtype)
    if worst <= tol:
        return True
    what = {"fused": "the fused Triton kernel", "graphs": "CUDA graphs"}[path]
    warnings.warn(
        f"{what} disagreed with the eager steps on {device}: max |w_fast - w_eager| {worst:.3g} over "
        f"{steps} steps ({str(dtype)[6:]} tolerance {tol:g}); training goes on with eager steps",
        RuntimeWarning,
        stacklevel=4,
    )
    return False
