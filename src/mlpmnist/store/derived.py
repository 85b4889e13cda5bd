"""Measurements computed from stored experiments (a snapshot's λ_max, a gradient noise scale):
``derived/<name>-<digest>.json``, keyed by everything they were computed from (the experiments'
keys and weights' checksums among it), so a rerun reads them instead of computing them again."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from mlpmnist.store.files import atomic_write_text, path, read_json


def cached(
    results_dir: str | os.PathLike, name: str, inputs: dict[str, Any], compute: Callable[[], Any]
) -> Any:
    """``compute()``'s JSON-ready value for ``inputs``: read from the store when a file of
    ``name`` holds exactly these inputs, else computed and written there (atomically)."""
    text = json.dumps(inputs, sort_keys=True, default=str)
    target = path(results_dir, "derived", f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}")
    try:
        held = read_json(target)
        if json.dumps(held["inputs"], sort_keys=True, default=str) == text:
            return held["value"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not there yet, or not readable: compute it again
    value = compute()
    atomic_write_text(
        target, json.dumps({"name": name, "inputs": inputs, "value": value}, default=float) + "\n"
    )
    return value
