"""How the science trains: every run is an experiment with a key, trained by the sweep and read
back from the store, so an interrupted science run resumes and a repeat trains nothing.

A ``Runner`` holds where the experiments go (``results_dir``: the study's store by default, so an
experiment both need, such as batch 8 at lr 0.1, is trained once), the jobs that train them and
the ``TrainConfig`` fields every science run shares (``SCIENCE_DEFAULTS``: choices on a fixed
validation split, only full batches).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlpmnist.config import TrainConfig
from mlpmnist.errors import SweepError
from mlpmnist.parameters import check_int, output_folder
from mlpmnist.sweep import SweepConfig, run_sweep
from mlpmnist.sweep.run import MAX_WORKERS

#: The last 5,000 training images are the validation split.
HOLDOUT = 5000
#: Every science run: choices on the validation split, and only full batches (n // B steps an
#: epoch), so every step has the batch size it claims.
SCIENCE_DEFAULTS: dict[str, Any] = {"holdout": HOLDOUT, "drop_last": True}


@dataclass(frozen=True)
class Runner:
    """Trains lists of experiments through the store. ``common``: ``TrainConfig`` fields every
    run shares (over ``SCIENCE_DEFAULTS``: a data limit, the validation split, threads, device);
    ``workers``: the sweep's jobs (None: one per CPU core, up to 2, or one per GPU)."""

    results_dir: Path  # given as text too; relative: from the repository root (paths.resolve)
    data_dir: str | os.PathLike | None = None
    workers: int | None = None
    common: dict[str, Any] = field(default_factory=dict)
    quiet: bool = True

    def __post_init__(self) -> None:
        # Checked before any training: a bad value here would otherwise fail at the first sweep.
        check_int("workers", self.workers, 1, MAX_WORKERS, none=True)
        if self.data_dir is not None and not (
            isinstance(self.data_dir, (str, os.PathLike)) and str(self.data_dir)
        ):
            raise ValueError(f"data_dir must be None or a folder path (text); got {self.data_dir!r}")
        # Checked, not created: the first sweep makes the store (and checks its folders).
        object.__setattr__(self, "results_dir", output_folder("results_dir", self.results_dir).resolve())
        self.config()  # the common fields, validated

    def config(self, **fields: Any) -> TrainConfig:
        """A validated ``TrainConfig`` of ``fields`` over ``common`` and ``SCIENCE_DEFAULTS``."""
        return TrainConfig(**{**SCIENCE_DEFAULTS, **self.common, **fields})

    def train(self, configs: Sequence[TrainConfig], what: str) -> pd.DataFrame:
        """Train every experiment of ``configs`` that the store does not hold yet (one sweep: its
        jobs share the cores), print one line on stderr (``what``, how many were trained and how
        long it took), and return the tidy frame of exactly these experiments (``store.load``): one row
        per experiment, replica and evaluation, under each config's ``key()`` (also where the store
        holds it by its legacy key). ``SweepError`` naming the experiments that failed."""
        configs = list(dict.fromkeys(configs))
        t0 = time.perf_counter()
        sweep = SweepConfig(
            base=configs[0],
            grid={},
            extra=tuple(configs),
            results_dir=self.results_dir,
            data_dir=self.data_dir,
            workers=self.workers,
        )
        # Progress on stderr, as the study's: seen while it runs, left out when a notebook is published.
        log = functools.partial(print, file=sys.stderr)
        outcome = run_sweep(sweep, progress=False, log=(lambda _line: None) if self.quiet else log)
        if outcome.failed:
            lines = "; ".join(f"{k}: {e}" for k, e in outcome.failed.items())
            raise SweepError(f"{what}: {len(outcome.failed)} experiment(s) failed ({lines}); rerun to resume")
        trained = int((outcome.table["status"] == "done").sum())
        log(f"{what}: {len(configs)} experiments, {trained} trained now, {time.perf_counter() - t0:.0f} s")
        frame = outcome.frame()
        legacy = {c.legacy_key(): c.key() for c in configs}
        return frame.assign(key=frame["key"].map(lambda k: legacy.get(k, k)))


def final_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The last row of every replica (experiment key, seed and lr; batch size, seed and lr
    without keys): its final evaluation, or where it diverged or stopped."""
    keys = [k for k in ("key", "batch_size", "seed", "lr") if k in history.columns]
    return history.loc[history.groupby(keys)["step"].idxmax()].reset_index(drop=True)
