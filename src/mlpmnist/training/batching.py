"""Each replica's batches: a fresh permutation per epoch from its own generator, cut into steps,
and the rows of those steps gathered as one [R, b, 784] tensor."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch


def batch_order(gens: Sequence[torch.Generator], n: int) -> torch.Tensor:
    """One fresh permutation of range(n) per generator: [R, n] int64 (on the CPU)."""
    return torch.stack([torch.randperm(n, generator=g) for g in gens])


def spans(
    order: torch.Tensor, Yo: torch.Tensor, B: int, cuts: Iterable[int] = ()
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's steps as runs of consecutive steps, each (indices [S, R, b], labels [S, R, b]):
    the full batches of ``B`` in runs that end at each of ``cuts`` (step counts into the epoch,
    where the caller evaluates), then the remainder of ``order`` [R, n] as a step of its own."""
    R, n = order.shape
    full = n // B
    # One copy per epoch makes every full batch a contiguous [R, B] block.
    blocks = order[:, : full * B].view(R, full, B).transpose(0, 1).contiguous()
    labels = Yo[:, : full * B].view(R, full, B).transpose(0, 1).contiguous()
    start = 0
    for end in sorted({c for c in cuts if 0 < c < full} | {full}):
        yield blocks[start:end], labels[start:end]
        start = end
    if full * B < n:
        yield order[None, :, full * B :], Yo[None, :, full * B :]
