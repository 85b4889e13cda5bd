"""Notebook parameters checked before any work, the same way for run.ipynb and the science
notebook; each fault is a ``ValueError`` in one line that names the parameter and what it allows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlpmnist import paths
from mlpmnist.config import parse_value
from mlpmnist.store import check_folder
from mlpmnist.values import MAX_SEEDS


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
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        span = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name} must be {'None or ' if none else ''}{span}; got {value!r}")
    return value


def read_seeds(name: str, value: object, none: bool = False) -> tuple[int, ...] | None:
    """Seeds as a list of integers or text such as ``"0-9"`` (``TrainConfig``'s reading); None
    where ``none``."""
    if value is None and none:
        return None
    shape = f"a list of integers in [0, 2**63) or text such as '0-9' (at most {MAX_SEEDS:,})"
    if isinstance(value, str):
        try:
            seeds = parse_value("seeds", value)
        except ValueError:
            raise ValueError(f"{name} must be {shape}; got {value!r}") from None
    elif isinstance(value, (list, tuple)):
        seeds = tuple(value)
    else:
        raise ValueError(f"{name} must be {shape}; got {value!r}")
    ok = all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seeds)
    if not seeds or not ok or len(seeds) > MAX_SEEDS or len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} must be {shape}, without repeats; got {value!r}")
    return seeds


def output_folder(name: str, value: object, files: tuple[str, ...] = ()) -> Path:
    """The folder parameter ``name`` (relative paths from the repository root) checked as a place
    to write ``files`` (``store.check_folder``: nothing is created)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"{name} must be a folder path (text); got {value!r}")
    return check_folder(paths.resolve(value), name, files)
