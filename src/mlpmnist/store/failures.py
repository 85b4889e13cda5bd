"""Why an experiment's last attempt failed (it could not be trained or stored): ``failed/<key>.json``,
one schema, written only here and removed when the experiment is run again. Its fields: key, error
(one line), job (the sweep job that tried, or None), config (``TrainConfig.to_dict()``, or None),
start_seconds (None: it never trained; kept for the schema's readers) and time (ISO 8601).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from mlpmnist.errors import StoreError, printable
from mlpmnist.store.files import atomic_write_text, path, read_json, remove


def write_failure(
    results_dir: str | os.PathLike,
    key: str,
    error: str,
    *,
    job: str | None = None,
    config: dict[str, Any] | None = None,
) -> str:
    """Write ``failed/<key>.json``; returns ``error``, with a clause added when the file cannot be
    written (a full disk)."""
    failure = {
        "key": key,
        "error": error,
        "job": job,
        "config": config,
        "start_seconds": None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    target = Path(results_dir) / "failed" / f"{key}.json"
    try:
        atomic_write_text(path(results_dir, "failed", key), json.dumps(failure, indent=1, allow_nan=False))
    except (OSError, StoreError) as e:
        return (
            f"{error}; {target} could not be written either ({e.strerror if isinstance(e, OSError) else e})"
        )
    return error


def read_failure(results_dir: str | os.PathLike, key: str) -> dict[str, Any] | None:
    """``key``'s failure (its ``error`` escaped, ``errors.printable``), or None when none reads."""
    with contextlib.suppress(OSError, ValueError):  # a StoreError is a ValueError
        failure = read_json(path(results_dir, "failed", key))
        if isinstance(failure, dict) and isinstance(failure.get("error"), str):
            # Its text is shown in messages: escaped, so it cannot fake a line of its own.
            return {**failure, "error": printable(failure["error"])}
    return None


def clear_failure(results_dir: str | os.PathLike, key: str) -> None:
    """Remove ``key``'s failure file, if any."""
    remove(results_dir, path(results_dir, "failed", key))
