"""What the science studies share: the batch sizes, the reference lr, the validation split,
the science's ``TrainConfig`` defaults, argument checks and each replica's last row."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from mlpmnist.config import TrainConfig

#: Powers of two from 8 to 4096 plus the reference study's 48, 90 and 150.
BATCH_SIZES: tuple[int, ...] = (8, 16, 32, 48, 64, 90, 128, 150, 256, 512, 1024, 2048, 4096)
#: The reference study's fixed learning rate.
REFERENCE_LR = 0.1
#: The last 5,000 training images are the validation split.
HOLDOUT = 5000
#: Every science run: choices on the validation split, on the CPU unless told otherwise, and only
#: full batches (n // B steps an epoch), so every step has the batch size it claims.
SCIENCE_DEFAULTS: dict[str, Any] = {"holdout": HOLDOUT, "device": "cpu", "drop_last": True}


def science_config(**fields: Any) -> TrainConfig:
    """A validated ``TrainConfig`` of ``fields`` over ``SCIENCE_DEFAULTS``."""
    return TrainConfig(**{**SCIENCE_DEFAULTS, **fields})


def check_positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    """``values`` as a tuple; ``ValueError`` unless a non-empty list of positive integers."""
    values = tuple(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive integers; got {values!r}")
    return values


def check_lrs(lrs: Sequence[float]) -> tuple[float, ...]:
    """``lrs`` as a tuple of floats; ``ValueError`` unless distinct, finite and positive."""
    lrs = tuple(float(v) for v in lrs)
    if not lrs or not all(math.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"lrs must be a non-empty list of finite positive numbers; got {lrs!r}")
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"lrs must be distinct; got {lrs!r}")
    return lrs


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """``seeds`` as a tuple; ``ValueError`` unless distinct integers >= 0."""
    seeds = tuple(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers >= 0; got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct; got {seeds!r}")
    return seeds


def grid_config(batch_size: int, lrs: Sequence[float], seeds: Sequence[int], **fields: Any) -> TrainConfig:
    """A ``science_config`` whose replicas are every (seed, lr) pair: seed-major, lr-minor."""
    lrs, seeds = check_lrs(lrs), check_seeds(seeds)
    return science_config(
        batch_size=batch_size,
        seeds=tuple(s for s in seeds for _ in lrs),
        lr=tuple(lr for _ in seeds for lr in lrs),
        **fields,
    )


def final_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The last row of every replica (batch_size, seed, lr): its final evaluation, or where it
    diverged or stopped."""
    keys = [k for k in ("batch_size", "seed", "lr") if k in history.columns]
    last = history.loc[history.groupby(keys)["step" if "step" in history else "epoch"].idxmax()]
    return last.reset_index(drop=True)
