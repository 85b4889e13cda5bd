"""Which path runs a stacked engine's span of steps, and the check a faster path passes first.

Paths, fastest first: "fused" (the whole span as one Triton kernel, ``fused``), "graphs" (the
eager steps recorded as CUDA graphs, ``graphs``) and "eager" (one step after another, everywhere).
A faster path runs only what it declares; the rest goes to the next path (``choose_path``).

The first span an engine runs on a faster path is checked: its first ``CHECK_STEPS`` steps run
chunk by chunk, each chunk on the faster path and then eagerly from the same state, the eager
result kept; the path stays on where the median chunk disagrees (``disagreement``) by at most
``TOLERANCE``. Chunks and a median, because float32 training can be chaotic: with Triton's
interpreter against the eager engine (784-64-64-10 on MNIST, 4 replicas), the 1e-7 rounding
differences of two honest implementations grew, without restarts, to 3e-6 in 256 steps at batch
8 (lr 0.1), to 4e-2 at batch 64 (lr 0.1) and to 1 at batch 128 (lr 0.2: 1.5e-2 after 16 steps).
Restarted every 8 steps (32 chunks) they stayed within 5e-7 in the median chunk for SGD at batch
64 and 128 and Adam at batch 8, the largest chunk 1.4e-3 (batch 128, lr 0.2; the next 2e-5);
float64 agreed to 3e-15. A fault of a kernel or graph (wrong code on this device) recurs in most
chunks, which the median sees, while one chaotic chunk cannot fail an honest path.
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
    """The largest median disagreement that passes in ``dtype`` (``TOLERANCE``; float32's for others)."""
    return TOLERANCE.get(dtype, TOLERANCE[torch.float32])


def verdict(path: str, device: torch.device, dtype: torch.dtype, chunks: Sequence[float]) -> bool:
    """Whether ``path`` passed its check on ``device``: the disagreements of its chunks
    (``disagreement`` of each) have a median within ``tolerance`` and none is infinite (a replica
    finite one way and not the other). Warns in one line when it did not."""
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
