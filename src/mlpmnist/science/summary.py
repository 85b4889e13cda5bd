"""The science run's summary record (what ``science_summary.json`` holds and the README quotes)
and the stopwatch that times its sections."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..results import atomic_write_text
from .noise import NOISE_COLUMNS, noise_at_target
from .recipe import RecipeRun
from .steps import Scaling


@dataclass
class Stopwatch:
    """Wall time of consecutive sections: ``lap(name)`` ends one. ``laps``: name -> seconds."""

    start: float = field(default_factory=time.perf_counter)
    last: float | None = None
    laps: dict[str, float] = field(default_factory=dict)

    def lap(self, name: str) -> float:
        """Seconds since the previous lap (or the start), recorded under ``name``."""
        now = time.perf_counter()
        self.laps[name] = now - (self.start if self.last is None else self.last)
        self.last = now
        return self.laps[name]

    def total(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start


def _clean(v: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, NaN/inf as None, containers recursively."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def summary_record(
    *,
    quick: bool,
    best: pd.DataFrame,
    scaling: dict[str, float],
    target: float,
    steps: pd.DataFrame,
    regimes: Scaling | None,
    noise: pd.DataFrame,
    chosen: RecipeRun,
    reference: RecipeRun,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """The run's headline numbers as a JSON-ready dict (NaN as None): best_lr (``best_lr``'s
    rows), lr_scaling, steps_to_target (target, table, b_crit, s_min, perfect_end,
    diminishing_end; the fit's values None without a fit), noise_scale (``NOISE_COLUMNS`` per
    snapshot, b_simple_at_target), tuned (chosen recipe, seeds, final test/val accuracy per
    seed, the reference recipe and its test accuracy) and seconds per section. Accuracies are
    fractions, B values examples, steps SGD steps."""
    fit = ("b_crit", "s_min", "perfect_end", "diminishing_end")
    record = {
        "quick": quick,
        "best_lr": best.to_dict("records"),
        "lr_scaling": scaling,
        "steps_to_target": {
            "target": target,
            "table": steps.to_dict("records"),
            **{k: None if regimes is None else getattr(regimes, k) for k in fit},
        },
        "noise_scale": noise[list(NOISE_COLUMNS)].to_dict("records"),
        "b_simple_at_target": noise_at_target(noise, target),
        "tuned": {
            "recipe": chosen.recipe.describe(),
            "seeds": chosen.last["seed"].tolist(),
            "test_acc": chosen.last["test_acc"].tolist(),
            "val_acc": chosen.last["val_acc"].tolist(),
            "reference_recipe": reference.recipe.describe(),
            "reference_test_acc": reference.last["test_acc"].tolist(),
        },
        "seconds": seconds,
    }
    return _clean(record)


def write_summary(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``record`` as indented JSON to ``path`` atomically; returns the path."""
    return atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def headline(record: dict[str, Any]) -> str:
    """The record's headline numbers in a few lines: best lr per batch size, the lr-scaling
    slope, steps to target per batch size, B_crit, B_simple at the target, and the tuned and
    reference recipes' test accuracy (%) per seed."""
    st, tuned = record["steps_to_target"], record["tuned"]

    def num(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    def pct(values: list[float | None]) -> str:
        return ", ".join(num(None if v is None else 100 * v, ".2f") for v in values)

    return "\n".join(
        [
            "best lr: " + ", ".join(f"{r['batch_size']}: {r['lr']:g}" for r in record["best_lr"]),
            f"lr-scaling slope: {record['lr_scaling']['slope']:.2f}",
            f"steps to {st['target']:.0%}: "
            + ", ".join(f"{r['batch_size']}: {num(r['steps'], '.0f')}" for r in st["table"]),
            f"B_crit {num(st['b_crit'], '.0f')}, S_min {num(st['s_min'], '.0f')}, perfect scaling ends "
            f"{num(st['perfect_end'], '.0f')}, diminishing returns end {num(st['diminishing_end'], '.0f')}",
            f"B_simple at the target: {num(record['b_simple_at_target'], '.0f')}",
            f"tuned recipe test (%): {pct(tuned['test_acc'])}",
            f"reference recipe test (%): {pct(tuned['reference_test_acc'])}",
        ]
    )
