"""Batch transforms for ``train``'s ``transform`` hook: random whole-pixel translations."""

from __future__ import annotations

from collections.abc import Sequence

import torch

SIDE = 28  # MNIST images are 28 x 28


def shift_index(max_shift: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[(2m+1)^2, 784] indices into a 28x28 image padded by m on each side, one row per shift."""
    m, side = max_shift, SIDE + 2 * max_shift
    rows, cols = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")
    out = [
        ((rows + m - dy) * side + (cols + m - dx)).reshape(-1)
        for dy in range(-m, m + 1)
        for dx in range(-m, m + 1)
    ]
    return torch.stack(out).to(device)


def translate(
    x: torch.Tensor, shifts: torch.Tensor, max_shift: int, index: torch.Tensor | None = None
) -> torch.Tensor:
    """Images ``x`` [..., 784] moved by whole pixels; the uncovered border is background (-1).

    ``shifts`` (same leading shape as x, int64 in [0, (2m+1)^2)) picks (dy, dx) =
    divmod(shift, 2m+1) - m for each image. Returns a new tensor shaped like ``x``.
    """
    m = max_shift
    index = shift_index(m, x.device) if index is None else index
    lead = x.shape[:-1]
    imgs = x.reshape(-1, SIDE, SIDE)
    padded = torch.nn.functional.pad(imgs, (m, m, m, m), value=-1.0).reshape(len(imgs), -1)
    return padded.gather(1, index[shifts.reshape(-1)]).reshape(*lead, SIDE * SIDE)


class ReplicaShifts:
    """Moves every image of a batch [R, b, 784] by a random (dy, dx), each in
    [-max_shift, max_shift], drawn afresh for every use of an image.

    Each replica draws from a generator of its own, seeded from its seed (offset by 2**63 so it
    never meets a replica's init-and-order stream), so a replica's shifts depend on its seed
    alone: not on which replicas train beside it, nor on which of them stopped.
    """

    def __init__(self, max_shift: int, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.max_shift = max_shift
        self.gens = [torch.Generator().manual_seed(s + 2**63) for s in seeds]
        self.index = shift_index(max_shift, device)
        self.n_shifts = (2 * max_shift + 1) ** 2

    def __call__(self, x: torch.Tensor, alive: Sequence[int]) -> torch.Tensor:
        """``x`` [R_alive, b, 784] moved; ``alive[j]`` is row j's replica (index into seeds)."""
        b = x.shape[1]
        shifts = torch.stack([torch.randint(self.n_shifts, (b,), generator=self.gens[r]) for r in alive])
        return translate(x, shifts.to(x.device), self.max_shift, self.index)
