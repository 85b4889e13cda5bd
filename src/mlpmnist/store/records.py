"""Run records: ``runs/<key>.json`` holds an experiment's config, each replica's history and how
it ended, and what made it. Written last, after the weights, a record marks its experiment
finished; it is read only through ``read_record`` and trusted only through ``store.trust``.

Why an experiment's last attempt failed (it could not be trained or stored) is in
``failed/<key>.json``, one schema, written only here and removed when the experiment is run
again. Its fields: key, error (one line), job (the sweep job that tried, or None), config
(``TrainConfig.to_dict()``, or None), start_seconds (None: it never trained; kept for the
schema's readers) and time (ISO 8601).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mlpmnist import paths
from mlpmnist.config import TrainConfig, baseline, field_names
from mlpmnist.errors import StoreError, printable
from mlpmnist.store.files import atomic_write_bytes, atomic_write_text, path, read_json, remove
from mlpmnist.store.weights import models_bytes
from mlpmnist.training.result import TrainResult
from mlpmnist.values import is_number

RECORD_VERSION = 3
#: How a replica ended: finished its epochs (ok), stopped at its validation target (reached),
#: ended at chance level (collapsed) or diverged.
STATUSES = ("ok", "reached", "collapsed", "diverged")


def _clean(v: object) -> object:
    # JSON has no NaN/inf; a diverged replica's metrics become null.
    if hasattr(v, "item"):
        v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: str, threads: int | None) -> dict[str, Any]:
    """What made a run, as far as bitwise results depend on it: git commit and whether the tree
    had changes (None outside a checkout), CPU, torch's threads, torch build, device."""
    root = paths.project_root(Path(__file__).parent)
    commit = _git(root, "rev-parse", "HEAD") if root else None
    status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit and root else None
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else None
    return {
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "cpu": _cpu(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "device": device,
        "device_name": name,
    }


def replica_status(history: list[dict]) -> str:
    """How a replica ended (``STATUSES``): by its last history row's flags, else ok."""
    last = history[-1] if history else {}
    return next((s for s in ("diverged", "collapsed", "reached") if last.get(s)), "ok")


def make_record(result: TrainResult, **extra: Any) -> dict:
    """The JSON-ready record of one training call, with ``note`` (what went wrong with its
    diverged and collapsed seeds, one line, or None) and ``extra`` (e.g. ``job``, ``weights_sha256``)."""
    import numpy as np

    from mlpmnist.training.health import outcome_message

    history: dict[tuple, list[dict[str, Any]]] = {}
    for row in result.history.to_dict("records"):
        history.setdefault((row["seed"], row["lr"]), []).append({k: _clean(v) for k, v in row.items()})
    replicas: list[dict[str, Any]] = [
        {
            "seed": s,
            "lr": lr,
            "status": replica_status(history.get((s, lr), [])),
            "history": history.get((s, lr), []),
        }
        for s, lr in zip(result.config.seeds, result.config.lrs, strict=True)
    ]
    last = [r["history"][-1] for r in replicas if r["history"]]
    return {
        "version": RECORD_VERSION,
        "key": result.config.key(),
        "config": result.config.to_dict(),
        "replicas": replicas,
        "versions": {  # of the libraries that shape the numbers
            "mlpmnist": paths.package_version(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
        "provenance": provenance(result.device, result.config.threads),
        "device": result.device,
        "seconds": result.seconds,
        "first_step_at": result.first_step_at,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "diverged": [r["seed"] for r in replicas if r["status"] == "diverged"],
        "collapsed": [r["seed"] for r in replicas if r["status"] == "collapsed"],
        "note": outcome_message(result.config, last),
        **extra,
    }


def record_text(record: dict) -> str:
    """A run record as the JSON text of its file (no NaN: JSON has none)."""
    return json.dumps(record, indent=1, allow_nan=False) + "\n"


def read_record(source: str | os.PathLike) -> dict:
    """A run record; ``StoreError`` naming the file, what is wrong and what to do when it is not
    one (``files.read_json``, ``record_problem``)."""
    try:
        record = read_json(source)  # not a FIFO, which would block the read for ever
    except (OSError, ValueError) as e:
        why = printable(str(e) or type(e).__name__)[:200]
        raise StoreError(f"{source} is not a readable run record ({why}); delete it and rerun") from e
    problem = record_problem(record)
    if problem:
        raise StoreError(f"{source} is not a run record ({printable(problem)}); delete it and rerun")
    return record


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record_problem(record: object) -> str | None:
    """What makes ``record`` (parsed JSON) not a run record, or None: a config with a batch size,
    replicas each with a known status and a history whose rows have a numeric epoch and, at every
    epoch end, a numeric test accuracy (null once it diverged)."""
    if not (isinstance(record, dict) and isinstance(record.get("config"), dict)):
        return "no config"
    if "batch_size" not in record["config"]:
        return "no config with batch_size"
    for field in ("error", "note"):
        if not isinstance(record.get(field), (str, type(None))):
            return f"{field} {record[field]!r} is neither text nor null"
    for field in ("collapsed", "diverged"):
        seeds = record.get(field, [])
        if not (isinstance(seeds, list) and all(_number(s) for s in seeds)):
            return f"{field} {seeds!r} is not a list of seeds"
    if not is_number(record.get("seconds", 0)):
        return f"seconds {record['seconds']!r} is not a finite number"
    reps = record.get("replicas")
    if not isinstance(reps, list) or not reps:
        return "no replicas"
    for r in reps:
        if not isinstance(r, dict) or not isinstance(r.get("history"), list):
            return "a replica without a history"
        if r.get("status") not in STATUSES:
            return (
                f"replica {r.get('seed')!r} has status {r.get('status')!r}, not one of {', '.join(STATUSES)}"
            )
        for row in r["history"]:
            if not (isinstance(row, dict) and is_number(row.get("epoch"))):
                return f"replica {r.get('seed')!r} has a history row without a numeric epoch"
            acc, end = row.get("test_acc"), float(row["epoch"]).is_integer()
            if end and not (_number(acc) or (acc is None and row.get("diverged"))):
                return f"replica {r.get('seed')!r} has a history row without a numeric epoch and test_acc"
            # Its writer stores a diverged replica's non-finite metrics as null, and only there.
            bad = [k for k, v in row.items() if _number(v) and not math.isfinite(v)]
            if bad and not row.get("diverged"):
                return (
                    f"replica {r.get('seed')!r} has {bad[0]} {row[bad[0]]!r} at epoch {row['epoch']:g}, "
                    "a non-finite value in a row that did not diverge"
                )
    return None


def median_final(record: dict) -> float:
    """The median last test accuracy of the record's replicas that did not diverge, in percent
    (NaN when there is none)."""
    finals = [
        row["test_acc"]
        for r in record.get("replicas", [])
        if r.get("status") != "diverged"
        for row in r.get("history", [])[-1:]
        if isinstance(row.get("test_acc"), (int, float))
    ]
    return 100 * float(statistics.median(finals)) if finals else math.nan


def failed_seeds(record: dict) -> list[int]:
    """The seeds of the record's replicas that diverged or collapsed."""
    return [r["seed"] for r in record.get("replicas", []) if r.get("status") in ("diverged", "collapsed")]


def stored_config(record: dict, cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """The config (a ``cls``) a record was made with; fields it predates take their baseline, so
    a record made before a field existed reads as the computation it was."""
    names = field_names(cls)
    known = {k: v for k, v in record["config"].items() if k in names}
    return cls.from_mapping({**{k: baseline(k, cls) for k in names if k not in known}, **known})


def output_bytes(config: TrainConfig) -> dict[str, int]:
    """Bytes that ``config``'s experiment writes, estimated from above: ``record``, ``weights``
    (at the end and per snapshot) and ``notebook``."""
    layers = [config.spec.n_features, *config.hidden, config.spec.n_classes]
    params = sum((a + 1) * b for a, b in zip(layers, layers[1:], strict=False))
    itemsize = 8 if config.dtype == "float64" else 4
    n, copies = len(config.seeds), 1 + len(config.snapshots)
    # Measured: a record takes about 500 bytes per replica and epoch, a notebook 15-60 kB.
    return {
        "record": 4_000 + n * (config.epochs * 700 + 100),
        "weights": 8_000 + n * copies * (params * itemsize + 2_000),
        "notebook": 60_000,
    }


def save_result(result: TrainResult, results_dir: str | os.PathLike, **extra: Any) -> dict:
    """Store ``result``: its weights, then (marking it finished) its record with the weights'
    SHA-256 and ``extra``, each atomically. Returns the record."""
    key = result.config.key()
    weights = models_bytes(result)
    atomic_write_bytes(path(results_dir, "models", key), weights)
    record = make_record(result, weights_sha256=hashlib.sha256(weights).hexdigest(), **extra)
    atomic_write_text(path(results_dir, "runs", key), record_text(record))
    return record


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
        why = e.strerror if isinstance(e, OSError) else e
        return f"{error}; {target} could not be written either ({why})"
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
