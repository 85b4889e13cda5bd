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

from mlpmnist.science.noise import NOISE_COLUMNS
from mlpmnist.science.presets import Preset
from mlpmnist.science.recipe import RecipeRun
from mlpmnist.science.steps import Scaling
from mlpmnist.store.results import atomic_write_text


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
    preset: Preset,
    ceiling: pd.DataFrame,
    scaling: dict[str, float],
    control: pd.DataFrame,
    lambda_init: float,
    headlines: pd.DataFrame,
    regimes: Scaling | None,
    noise: pd.DataFrame,
    chosen: RecipeRun,
    reference: RecipeRun,
    again: RecipeRun,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """The run's headline numbers as a JSON-ready dict (NaN as None): the preset's description
    and seed sets; ceiling (``ceiling_table``'s rows: tuned lr, its neighbours, the ceiling and
    2/lambda_max), lr_scaling (the first set's fit), lambda_init, control (``control_table``'s
    rows), headlines (``intervals.two_runs``'s rows: estimate, interval, second run, inside),
    steps_to_target (target and the fit's perfect_end, diminishing_end), noise_scale (median over
    seeds of ``NOISE_COLUMNS`` per epoch), tuned (the chosen recipe, its test accuracy per seed of
    both sets, the reference's), and seconds per section. Accuracies are fractions, B values
    examples, steps SGD steps, learning rates plain SGD step sizes."""
    cols = [c for c in NOISE_COLUMNS if c != "epoch"]
    record = {
        "quick": preset.quick,
        "preset": preset.describe(),
        "seeds": list(preset.seeds),
        "second_seeds": list(preset.second_seeds),
        "ceiling": ceiling.to_dict("records"),
        "lr_scaling": scaling,
        "lambda_init": lambda_init,
        "control": control.to_dict("records"),
        "headlines": headlines.to_dict("records"),
        "steps_to_target": {
            "target": preset.target,
            **{
                k: None if regimes is None else getattr(regimes, k)
                for k in ("perfect_end", "diminishing_end")
            },
        },
        "noise_scale": noise.groupby("epoch")[cols].median().reset_index().to_dict("records"),
        "tuned": {
            "recipe": chosen.recipe.describe(),
            "test_acc": chosen.last["test_acc"].tolist(),
            "second_test_acc": again.last["test_acc"].tolist(),
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
    """The record's headline numbers in a few lines: the tuned lr and the ceiling per batch
    size, lambda_max at initialisation, and every headline number with its interval and the
    second run's value."""

    def num(v: float | None, fmt: str = ".3g") -> str:
        return "n/a" if v is None else format(v, fmt)

    lines = [
        "tuned lr (ceiling) per batch size: "
        + ", ".join(
            f"{r['batch_size']}: {num(r['lr'])} ({num(r.get('max_ok_lr'))}..{num(r.get('collapse_lr'))})"
            for r in record["ceiling"]
        ),
        f"lambda_max at initialisation {num(record['lambda_init'])}, 2/lambda_max "
        f"{num(None if record['lambda_init'] is None else 2 / record['lambda_init'])}",
    ]
    for h in record["headlines"]:
        mark = {True: "inside", False: "outside"}.get(h["inside"], "n/a")
        lines.append(
            f"{h['quantity']}: {num(h['estimate'])} [{num(h['low'])}, {num(h['high'])}] {h['unit']}; "
            f"second run {num(h['second'])} ({mark})"
        )
    return "\n".join(lines)
