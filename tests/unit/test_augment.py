"""Random whole-pixel shifts of images of any shape (the dataset spec's ``image_shape``)."""

from __future__ import annotations

import pytest
import torch

from mlpmnist.training.augment import ReplicaShifts, shift_index, translate


def test_translate_moves_a_non_square_image_by_whole_pixels():
    shape = (3, 5)  # height 3, width 5: rows and columns cannot be swapped unnoticed
    img = torch.arange(15, dtype=torch.float32).reshape(1, 15)
    m = 1
    for shift in range((2 * m + 1) ** 2):
        dy, dx = divmod(shift, 2 * m + 1)
        dy, dx = dy - m, dx - m
        moved = translate(img, torch.tensor([shift]), m, shape).reshape(shape)
        want = torch.full(shape, -1.0)  # the uncovered border is background
        src = img.reshape(shape)
        for r in range(3):
            for c in range(5):
                if 0 <= r - dy < 3 and 0 <= c - dx < 5:
                    want[r, c] = src[r - dy, c - dx]
        assert torch.equal(moved, want), (dy, dx)
    assert torch.equal(translate(img, torch.tensor([4]), m, shape), img)  # (0, 0): unchanged


def test_shift_index_and_replica_shifts_follow_the_shape():
    assert shift_index(2, (8, 6)).shape == (25, 48)
    shifts = ReplicaShifts(1, seeds=(0, 1), shape=(8, 8))
    x = torch.rand(2, 5, 64) * 2 - 1
    out = shifts(x, alive=[0, 1])
    assert out.shape == x.shape and not torch.equal(out, x)
    with pytest.raises(ValueError, match="images of 63 pixels are not 8x8"):
        translate(torch.zeros(1, 63), torch.tensor([0]), 1, (8, 8))
