"""The results store and the tidy frame.

Every experiment has one key (``TrainConfig.key()``: readable fields and a hash of every
result-changing field), and under a results directory its files are named by it::

    runs/<key>.json       the run record: config, per-replica history and status, versions
    notebooks/<key>.ipynb the executed experiment notebook
    models/<key>.pt       final weights of every replica
    logs/<key>.log        the experiment kernel's own stderr
    failed/<key>.json     why the last attempt failed (removed when it succeeds)
    locks/<key>.lock      held while the experiment runs, so it never runs twice at once

Experiments of different configs coexist in one directory. Every file is written atomically
(a temporary file in the same directory, then a rename).
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .config import FIELDS, TrainConfig, check_names, field_types
from .model import MLP
from .train import TrainResult, divergence_message

RECORD_VERSION = 2
KINDS = {
    "runs": ".json",
    "notebooks": ".ipynb",
    "models": ".pt",
    "logs": ".log",
    "failed": ".json",
    "locks": ".lock",
}
# Columns first in the frame; then the config's other fields, then the metrics.
LEAD = ["key", "batch_size", "seed", "lr", "epoch", "step"]


class StoreError(ValueError):
    """A results file or directory that cannot be used as one."""


def path(results_dir: str | os.PathLike, kind: str, key: str) -> Path:
    """Where the ``kind`` file (runs, notebooks, models, logs, failed, locks) of ``key`` lives."""
    return Path(results_dir) / kind / f"{key}{KINDS[kind]}"


def writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """``folder``, created if needed, checked by writing to it; ``ValueError`` naming ``what``
    (e.g. ``--media``) and the folder when it is a file or cannot be created or written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {folder} is a file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # a unique name, gone when closed
            pass
    except OSError as e:
        raise ValueError(
            f"{what} {folder} cannot be created or written ({e.strerror}); choose another path"
        ) from e
    return folder


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` via a temporary file in the same directory and a rename,
    so a reader never sees a half-written file. Returns the path."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make outputs private to their writer
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """``atomic_write_bytes`` for UTF-8 text."""
    return atomic_write_bytes(target, text.encode())


# ---------------------------------------------------------------------------- records


def _clean(v: object) -> object:
    # JSON has no NaN/inf; a diverged replica's metrics become null.
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers."""
    import numpy as np

    from . import __version__

    return {
        "mlpmnist": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def replica_status(history: list[dict]) -> str:
    """``diverged``, ``collapsed`` (its last evaluation at chance level) or ``ok``."""
    if not history:
        return "ok"
    last = history[-1]
    return "diverged" if last.get("diverged") else "collapsed" if last.get("collapsed") else "ok"


def make_record(result: TrainResult) -> dict:
    """The JSON-ready record of one training call: key, config, per-replica status and history,
    versions, device, total seconds, ``error`` (None, or what diverged) and ``collapsed`` (seeds)."""
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
    diverged = [r["history"][-1] for r in replicas if r["status"] == "diverged"]
    return {
        "version": RECORD_VERSION,
        "key": result.config.key(),
        "config": result.config.to_dict(),
        "replicas": replicas,
        "versions": versions(),
        "device": result.device,
        "seconds": result.seconds,
        "first_step_at": result.first_step_at,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "error": divergence_message(result.config, diverged) if diverged else None,
        "collapsed": [r["seed"] for r in replicas if r["status"] == "collapsed"],
    }


def write_record(record: dict, target: str | os.PathLike) -> Path:
    """Atomically write a run record as JSON; returns the path."""
    return atomic_write_text(target, json.dumps(record, indent=1, allow_nan=False) + "\n")


def read_record(source: str | os.PathLike) -> dict:
    """Read a run record; raise ``StoreError`` naming the file and what to do if it is not one."""
    source = Path(source)
    try:
        record = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{source} is not a readable run record ({e}); delete it and rerun") from e
    ok = (
        isinstance(record, dict)
        and isinstance(record.get("config"), dict)
        and "batch_size" in record["config"]
        and isinstance(record.get("replicas"), list)
        and all(isinstance(r, dict) and isinstance(r.get("history"), list) for r in record["replicas"])
    )
    if not ok:
        raise StoreError(
            f"{source} is not a run record (no config with batch_size, or no replicas); delete it"
        )
    return record


def record_key(record: dict) -> str:
    """The record's experiment key (computed from its config for records that predate keys)."""
    if "key" in record:
        return record["key"]
    known = {k: v for k, v in record["config"].items() if k in FIELDS}
    return TrainConfig.from_mapping(known).key()


def is_done(results_dir: str | os.PathLike, config: TrainConfig) -> bool:
    """True when ``config``'s record (finished, nothing diverged, same identity), executed notebook
    and weights all exist."""
    key = config.key()
    files = [path(results_dir, k, key) for k in ("runs", "notebooks", "models")]
    if not all(f.is_file() for f in files):
        return False
    try:
        record = read_record(files[0])
    except StoreError:
        return False
    same = {k: v for k, v in record["config"].items() if k in config.identity()} == config.identity()
    return same and not record.get("error")


# ---------------------------------------------------------------------------- the frame


def _cell(v: object) -> object:
    # Lists (hidden) become readable strings such as "64x64" so a column can be grouped by.
    return "x".join(str(x) for x in v) if isinstance(v, list) else v


def frame(records: Sequence[dict]) -> pd.DataFrame:
    """Tidy DataFrame: one row per experiment x replica x evaluation.

    Columns: key, every config field but seeds and lr (hidden as e.g. "64x64"), seed, lr, epoch,
    step, the history's metrics (see ``train``) and status (ok, collapsed, diverged: the
    replica's final status, on all its rows).
    """
    rows: list[dict[str, Any]] = []
    for rec in records:
        config = {k: _cell(v) for k, v in rec["config"].items() if k not in ("seeds", "lr")}
        key = record_key(rec)
        for rep in rec["replicas"]:
            status = rep.get("status") or replica_status(rep["history"])
            rows.extend({"key": key, **config, **h, "status": status} for h in rep["history"])
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=LEAD)
    num = [c for c in df.columns if c.endswith(("_loss", "_acc")) or c.startswith(("dead_", "wnorm_"))]
    df[num] = df[num].astype(float)
    for flag in ("diverged", "collapsed"):
        df[flag] = df[flag].fillna(False).astype(bool) if flag in df.columns else False
    lead = [c for c in LEAD if c in df.columns]
    df = df[lead + [c for c in df.columns if c not in lead]]
    return df.sort_values(["batch_size", "key", "lr", "seed", "step"], ignore_index=True)


def _options(name: str, want: Any) -> list:
    """The values ``where`` allows for field ``name``: one value, or a list of them."""
    many = isinstance(want, (list, tuple, set))
    if field_types()[name] == tuple[int, ...]:  # seeds, hidden: a list is one value unless nested
        many = many and all(isinstance(w, (list, tuple)) for w in want)
        return (
            [tuple(w) for w in want] if many else [tuple(want) if isinstance(want, (list, tuple)) else want]
        )
    return list(want) if many else [want]


def _matches(config: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    for name, want in where.items():
        have = config.get(name)
        if (tuple(have) if isinstance(have, list) else have) not in _options(name, want):
            return False
    return True


def load(
    results_dir: str | os.PathLike,
    *,
    keys: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The run records under ``results_dir/runs`` as one tidy frame (see ``frame``).

    ``keys`` keeps only those experiments (a sweep's own); ``where`` keeps those whose config
    field equals a value or one of a list of values, e.g. ``{"batch_size": [64, 128], "lr": 0.1}``.
    Raises ``StoreError`` when the directory holds no matching record.
    """
    runs = Path(results_dir) / "runs"
    if where:
        check_names(where)
    if not runs.is_dir():
        raise StoreError(
            f"no run records in {runs} (the folder does not exist); run a sweep or `mlpmnist train` first"
        )
    wanted = None if keys is None else set(keys)
    records = []
    for p in sorted(runs.glob("*.json")):
        if wanted is not None and p.stem not in wanted:
            continue
        rec = read_record(p)
        if where and not _matches(rec["config"], where):
            continue
        records.append(rec)
    if not records:
        what = "" if keys is None and not where else " matching the selection"
        raise StoreError(f"no run records{what} in {runs}; run a sweep or `mlpmnist train` first")
    return frame(records)


# ---------------------------------------------------------------------------- weights


def save_models(result: TrainResult, target: str | os.PathLike) -> Path:
    """Atomically save the final weights of every replica (None for diverged ones)."""
    payload = {
        "config": result.config.to_dict(),
        "seeds": list(result.config.seeds),
        "lrs": list(result.config.lrs),
        "state_dicts": result.state_dicts,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(target, buf.getvalue())


def load_models(source: str | os.PathLike) -> dict[int, MLP]:
    """Seed -> trained ``MLP`` (eval mode, CPU) from a file written by ``save_models``; diverged
    replicas are left out. Loaded with ``weights_only=True``; a file that is not such a weights
    file raises ``StoreError`` naming it."""
    source = Path(source)
    if not source.is_file():
        raise StoreError(f"no weights file {source}; run the sweep that trains it first")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
        return {
            seed: MLP.from_state_dict(sd)
            for seed, sd in zip(payload["seeds"], payload["state_dicts"], strict=True)
            if sd is not None
        }
    except Exception as e:  # torch raises many types for truncated or foreign files
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise StoreError(
            f"{source} is not a readable weights file ({reason}); delete it and rerun its sweep"
        ) from e
