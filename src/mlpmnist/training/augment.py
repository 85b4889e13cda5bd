"""Batch transforms for ``train``'s ``transform`` hook: random whole-pixel translations of images
of any (height, width), the dataset spec's ``image_shape``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def shift_index(max_shift: int, shape: tuple[int, int], device: torch.device | str = "cpu") -> Tensor:
    """[(2m+1)^2, height * width] indices into an image of ``shape`` (height, width) padded by
    m on each side, one row per shift."""
    m, (height, width) = max_shift, shape
    padded_width = width + 2 * m
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pixels = ((rows + m) * padded_width + cols + m).reshape(1, -1)  # each pixel in the padded image
    d = torch.arange(-m, m + 1)
    moves = (d[:, None] * padded_width + d[None, :]).reshape(-1, 1)  # (dy, dx), dy-major
    return (pixels - moves).to(device)


def translate(
    x: Tensor, shifts: Tensor, max_shift: int, shape: tuple[int, int], index: Tensor | None = None
) -> Tensor:
    """Images ``x`` [..., height * width] of ``shape`` moved by whole pixels, as a new tensor (the
    uncovered border background, -1): ``shifts`` (x's leading shape, int64 in [0, (2m+1)^2)) picks
    (dy, dx) = divmod(shift, 2m+1) - m for each image."""
    m, (height, width) = max_shift, shape
    if x.shape[-1] != height * width:
        raise ValueError(f"images of {x.shape[-1]} pixels are not {height}x{width}")
    index = shift_index(m, shape, x.device) if index is None else index
    imgs = x.reshape(-1, height, width)
    padded = torch.nn.functional.pad(imgs, (m, m, m, m), value=-1.0).reshape(len(imgs), -1)
    return padded.gather(1, index[shifts.reshape(-1)]).reshape(x.shape)


class ReplicaShifts:
    """Moves every image of a batch [R, b, height * width] by a random (dy, dx) in [-max_shift,
    max_shift], drawn afresh for every use of an image. Each replica draws from a generator of its
    own, seeded from its seed + 2**63 (never meeting an init-and-order stream), so its shifts depend
    on its seed alone, not on which replicas train beside it or stopped."""

    def __init__(
        self, max_shift: int, seeds: Sequence[int], shape: tuple[int, int], device: torch.device | str = "cpu"
    ) -> None:
        self.max_shift, self.shape = max_shift, shape
        self.gens = [torch.Generator().manual_seed(s + 2**63) for s in seeds]
        self.index = shift_index(max_shift, shape, device)  # one row per shift

    def __call__(self, x: Tensor, alive: Sequence[int]) -> Tensor:
        """``x`` [R_alive, b, height * width] moved; ``alive[j]`` is row j's replica (index into seeds)."""
        b = x.shape[1]
        shifts = torch.stack([torch.randint(len(self.index), (b,), generator=self.gens[r]) for r in alive])
        return translate(x, shifts.to(x.device), self.max_shift, self.shape, self.index)
