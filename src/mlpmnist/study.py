"""The study that ``run.ipynb`` tells: its parameters checked and turned into a sweep.

The notebook's parameters cell is its signature; ``Study.from_parameters`` checks every value
before anything runs (an unknown ``TrainConfig`` field in ``config`` or ``grid``, or a
``model_batch_size`` that the sweep does not train, stops with a message naming it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import TrainConfig, check_names
from .sweep import SweepConfig


@dataclass(frozen=True)
class Study:
    """The sweep to run, whose models the model figures show, and where outputs go."""

    sweep: SweepConfig
    model_batch_size: int
    media_dir: Path

    @classmethod
    def from_parameters(
        cls,
        *,
        batch_sizes: Sequence[int],
        epochs: int,
        seeds: Sequence[int] | str,
        lr: float,
        model_batch_size: int,
        grid: Mapping[str, Sequence[Any]] | None = None,
        config: Mapping[str, Any] | None = None,
        workers: int = 2,
        results_dir: str | os.PathLike = "results",
        data_dir: str | os.PathLike | None = None,
        media_dir: str | os.PathLike = "media",
    ) -> Study:
        """The study of run.ipynb's parameters: ``batch_sizes`` x ``grid``'s other axes, each
        point trained with ``epochs``, ``seeds`` (a list or ``"0-9"``), ``lr`` and ``config``'s
        other ``TrainConfig`` fields. Raises ``ValueError`` naming a bad parameter."""
        grid, config = dict(grid or {}), dict(config or {})
        check_names(config, "config field")
        if "batch_size" in grid or "batch_size" in config:
            raise ValueError("set the batch sizes with batch_sizes, not in grid or config")
        if not isinstance(batch_sizes, (list, tuple)) or not batch_sizes:
            raise ValueError(f"batch_sizes must be a non-empty list of integers; got {batch_sizes!r}")
        base = TrainConfig.from_mapping({"epochs": epochs, "seeds": seeds, "lr": lr, **config})
        sweep = SweepConfig(
            base=base,
            grid={"batch_size": list(batch_sizes), **grid},
            results_dir=results_dir,
            data_dir=data_dir,
            workers=workers,
        )
        if model_batch_size not in sweep.grid["batch_size"]:
            raise ValueError(
                f"model_batch_size {model_batch_size!r} is not one of batch_sizes {list(batch_sizes)}; "
                "pick one of them (its models are shown in the prediction and t-SNE cells)"
            )
        return cls(sweep=sweep, model_batch_size=model_batch_size, media_dir=Path(media_dir))

    def model_keys(self) -> list[str]:
        """Keys of the experiments at ``model_batch_size`` (one per point of the other axes)."""
        return [e.key() for e in self.sweep.experiments() if e.batch_size == self.model_batch_size]

    def describe(self) -> str:
        """One line: how many experiments, which axes, how many seeds."""
        exps = self.sweep.experiments()
        axes = ", ".join(f"{k} {list(v)}" for k, v in self.sweep.grid.items())
        return (
            f"{len(exps)} experiments ({axes}), {len(self.sweep.base.seeds)} seeds each, "
            f"{self.sweep.base.epochs} epochs; results in {self.sweep.results_dir}"
        )
