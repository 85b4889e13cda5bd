"""Each replica's batches: a fresh permutation per epoch from its own generator, cut into steps,
and the rows of those steps gathered as one [R, b, 784] tensor."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from . import data as mdata


def batch_order(gens: Sequence[torch.Generator], n: int) -> torch.Tensor:
    """One fresh permutation of range(n) per generator: [R, n] int64 (on the CPU)."""
    return torch.stack([torch.randperm(n, generator=g) for g in gens])


def batches(order: torch.Tensor, Yo: torch.Tensor, B: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(indices [R, b], labels [R, b]) per step: full batches, then the remainder if any."""
    R, n = order.shape
    full = n // B
    # One copy per epoch makes every full batch a contiguous [R, B] block.
    blocks = order[:, : full * B].view(R, full, B).transpose(0, 1).contiguous()
    labels = Yo[:, : full * B].view(R, full, B).transpose(0, 1).contiguous()
    for s in range(full):
        yield blocks[s], labels[s]
    if full * B < n:
        yield order[:, full * B :], Yo[:, full * B :]


def gather_batch(X: torch.Tensor, pixels: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` [R, b] of X as [R, b, features], read from uint8 pixels when exact."""
    flat = idx.reshape(-1)
    rows = X.index_select(0, flat) if pixels is None else mdata.scale(pixels.index_select(0, flat))
    return rows.view(*idx.shape, -1)
