"""Which path runs a stacked engine's span of steps, and the check a faster path passes first.

Paths, fastest first: "fused" (one Triton kernel, ``fused``), "graphs" (the eager steps recorded as
CUDA graphs, ``graphs``) and "eager"; a faster path runs only what it declares (``choose_path``).
Its first ``CHECK_STEPS`` steps run chunk by chunk, each on the faster path and then eagerly from
the same state; it stays on where the median chunk's ``disagreement`` is within ``TOLERANCE``.
Chunks and a median, because float32 training can be chaotic: the 1e-7 rounding differences of two
honest implementations grew unrestarted to 4e-2 in 256 steps (batch 64, lr 0.1), but restarted
every 8 steps stayed within 5e-7 in the median chunk (the largest chunk 1.4e-3; float64: 3e-15).
A faulty kernel or graph fails most chunks, which the median sees; one chaotic chunk cannot.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from mlpmnist.engine import rules
from mlpmnist.engine.cuda import fused

#: Steps of a faster path's first span that are also run eagerly and compared.
CHECK_STEPS = 256
#: Steps per compared chunk of the fused kernel (one launch): each starts from the eager state.
CHECK_CHUNK = 8
#: The largest median over the chunks of their disagreement (``disagreement``) that passes.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


def choose_path(
    fused_here: bool,
    graphs_here: bool,
    sizes: Sequence[int],
    dtype: torch.dtype,
    optimizer: str,
    activation: str,
    batch_size: int,
) -> str:
    """The fastest path for a span at ``batch_size`` of an MLP of layer ``sizes`` in ``dtype``: "fused",
    "graphs" (each where it can run here and takes the configuration) or "eager"."""
    if fused_here and fused.supports(sizes, dtype, optimizer, activation, batch_size):
        return "fused"
    if graphs_here and rules.rule(optimizer).recordable:
        return "graphs"
    return "eager"


def disagreement(fast: Sequence[torch.Tensor], eager: Sequence[torch.Tensor]) -> float:
    """The largest |fast - eager| over the parameters: 0 where both are NaN or the same infinity
    (a replica that diverged both ways), infinity where only one is finite."""
    worst, inf = 0.0, float("inf")
    for a, b in zip(fast, eager, strict=True):
        d = (a - b).abs().masked_fill_((a == b) | (a.isnan() & b.isnan()), 0.0)
        worst = max(worst, d.nan_to_num(nan=inf, posinf=inf).max().item() if d.numel() else 0.0)
    return worst


def tolerance(dtype: torch.dtype) -> float:
    """The largest median disagreement that passes in ``dtype`` (``TOLERANCE``; float32's for others)."""
    return TOLERANCE.get(dtype, TOLERANCE[torch.float32])


def verdict(path: str, device: torch.device, dtype: torch.dtype, chunks: Sequence[float]) -> bool:
    """Whether ``path`` passed its check: the ``disagreement`` of its chunks has a median within
    ``tolerance`` and none is infinite. Warns in one line when it did not."""
    median, tol = sorted(chunks)[len(chunks) // 2], tolerance(dtype)
    if median <= tol and max(chunks) < float("inf"):
        return True
    what = {"fused": "the fused Triton kernel", "graphs": "CUDA graphs"}[path]
    warnings.warn(
        f"{what} disagreed with the eager steps on {device}: max |w_fast - w_eager| over a chunk "
        f"{median:.3g} in the median, {max(chunks):.3g} at most, over {len(chunks)} chunks "
        f"({str(dtype)[6:]} tolerance {tol:g}); training goes on with eager steps",
        RuntimeWarning,
        stacklevel=4,
    )
    return False
