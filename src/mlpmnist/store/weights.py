"""Weights files: ``models/<key>.pt`` holds every replica's final weights (None where it diverged
or stopped early), the snapshots its config asked for, and the experiment's key and config. They
are written with ``torch.save`` and read only with ``weights_only=True``."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from mlpmnist.errors import StoreError, printable
from mlpmnist.model import MLP
from mlpmnist.training.result import TrainResult


def models_bytes(result: TrainResult) -> bytes:
    """The weights file of ``result`` (see the module) as ``torch.save`` bytes."""
    payload = {
        "key": result.config.key(),
        "config": result.config.to_dict(),
        "seeds": list(result.config.seeds),
        "lrs": list(result.config.lrs),
        "state_dicts": result.state_dicts,
        "snapshots": {float(e): sds for e, sds in result.snapshots.items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def sha256(source: Path, limit: int) -> str:
    """The hex SHA-256 of ``source``; ``StoreError`` when it is larger than ``limit`` bytes."""
    size = source.stat().st_size
    if size > limit:
        raise StoreError(f"{source} is {size:,} bytes, far more than its experiment writes")
    h = hashlib.sha256()
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_payload(source: str | os.PathLike) -> dict[str, Any]:
    """The dict a weights file holds (``weights_only=True``); ``StoreError`` naming the file when
    it is not one."""
    source = Path(source)
    if not source.is_file():
        raise StoreError(f"no weights file {source}; run the sweep that trains it first")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
        if not (isinstance(payload, dict) and isinstance(payload.get("state_dicts"), list)):
            raise ValueError("no state_dicts")
    except Exception as e:  # torch raises many types for truncated or foreign files
        reason = printable(str(e).splitlines()[0][:120]) if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Weights only load failed" in str(e):
            # Never torch's advice to load it with weights_only=False: that would run its code.
            reason = "it holds objects other than weights, which are never loaded"
        raise StoreError(
            f"{source} is not a readable weights file ({reason}); delete it and rerun its sweep"
        ) from e
    return payload


def _models(payload: dict, state_dicts: list) -> dict[int, MLP]:
    activation = payload["config"].get("activation", "relu")  # files made before the field: relu
    return {
        seed: MLP.from_state_dict(sd, activation)
        for seed, sd in zip(payload["seeds"], state_dicts, strict=True)
        if sd is not None
    }


def load_models(source: str | os.PathLike, epoch: float | None = None) -> dict[int, MLP]:
    """Seed -> ``MLP`` (eval mode, CPU): the final weights, or the snapshot after ``epoch`` (0: the
    initialisation), less replicas without weights there. ``StoreError`` naming the file when it
    does not read or lacks that snapshot. Call it on a file the store trusts (``Stored.models``)."""
    payload = read_payload(source)
    if epoch is None:
        return _models(payload, payload["state_dicts"])
    snaps = {float(e): sds for e, sds in (payload.get("snapshots") or {}).items()}
    if float(epoch) not in snaps:
        raise StoreError(f"{source} holds no snapshot after epoch {epoch:g} (it has {sorted(snaps)})")
    return _models(payload, snaps[float(epoch)])
