"""Notebook parameters checked before any work, the same way for run.ipynb and the science
notebook; each fault is a ``ValueError`` in one line that names the parameter and what it allows."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlpmnist import paths
from mlpmnist.config import TrainConfig
from mlpmnist.store import check_folder
from mlpmnist.values import MAX_SEEDS, is_int


def check_bool(name: str, value: object) -> bool:
    """``value`` when it is True or False (the text ``"false"`` is truthy, so text is refused)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value


def check_mapping(name: str, value: object, example: str) -> dict[str, Any]:
    """``value`` as a dict when it is a mapping (None: empty), else ``example`` is shown."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict such as {example}; got {value!r}")
    return dict(value)


def check_int(name: str, value: object, low: int, high: int | None = None, none: bool = False) -> int | None:
    """``value`` when it is an integer in [``low``, ``high``] (or None where ``none``)."""
    if value is None and none:
        return None
    if not is_int(value) or value < low or (high is not None and value > high):
        span = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name} must be {'None or ' if none else ''}{span}; got {value!r}")
    return value


def read_seeds(name: str, value: object, none: bool = False) -> tuple[int, ...] | None:
    """Seeds as ``TrainConfig`` reads them, a list of integers or text such as ``"0-9"``; None
    where ``none``."""
    if value is None and none:
        return None
    try:
        return TrainConfig.from_mapping({"seeds": value}).seeds
    except ValueError:
        raise ValueError(
            f"{name} must be a list of integers in [0, 2**63) or text such as '0-9' (at most "
            f"{MAX_SEEDS:,}) without repeats; got {value!r}"
        ) from None


def output_folder(name: str, value: object, files: tuple[str, ...] = ()) -> Path:
    """The folder parameter ``name`` (relative paths from the repository root) checked as a place
    to write ``files`` (``store.check_folder``: nothing is created)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"{name} must be a folder path (text); got {value!r}")
    return check_folder(paths.resolve(value), name, files)
