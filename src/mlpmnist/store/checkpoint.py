"""Checkpoints: ``checkpoints/<key>.pt`` holds a group's training state (``training.loop``'s)
after its last finished epoch, under its engine's key, so an interrupted group resumes there.
Written atomically after every epoch, read only with ``weights_only=True``, removed once the
group is stored; never trusted as a result, only resumed from.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from mlpmnist.config import TrainConfig
from mlpmnist.errors import StoreError
from mlpmnist.store.files import atomic_write_bytes, path


class Checkpoints:
    """The checkpoint of the engine that trains ``config`` (a group's union config):
    ``training.loop.Checkpoint`` over the store."""

    def __init__(self, results_dir: str | os.PathLike, config: TrainConfig) -> None:
        self.config = config
        self.path = path(results_dir, "checkpoints", config.key())

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none or it does not read (then it is removed)."""
        try:
            with open(self.path, "rb") as f:
                state = torch.load(f, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except Exception:  # truncated, not a zip, refused by the unpickler: any reason is one too many
            self.remove()
            return None
        return state if isinstance(state, dict) and state.get("key") == self.config.key() else None

    def save(self, state: dict[str, Any]) -> Path | None:
        """Write ``state`` atomically; returns the path, or None when it cannot be written (a full
        disk: training goes on, and an earlier checkpoint stays)."""
        buf = io.BytesIO()
        torch.save(state, buf)
        try:
            return atomic_write_bytes(self.path, buf.getvalue())
        except (OSError, StoreError):
            return None

    def remove(self) -> None:
        """Delete the checkpoint, if any."""
        with contextlib.suppress(OSError):
            self.path.unlink()
