"""Placeholder until the fused Triton kernel lands: no fused path is available."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def available(device: torch.device) -> bool:
    """Whether a fused kernel can run on ``device``."""
    return False


def supports(sizes: Sequence[int], dtype: torch.dtype, optimizer: str) -> bool:
    """Whether the kernel handles these layer sizes, dtype and optimizer."""
    return False


def fused_steps(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    raise NotImplementedError("no fused kernel in this build")
