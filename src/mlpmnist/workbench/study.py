"""The study that ``run.ipynb`` tells: its parameters checked before anything runs
(``Study.from_parameters``) and turned into a sweep, where its outputs go, and whose models its model
cells show: unless the parameters pin it, the best median final test accuracy (``analysis.choice``), as
``python -m mlpmnist figures`` chooses. Relative paths are read from the repository root (``paths``);
figures and summary go to ``results_dir/studies/<sweep_key>/`` unless ``media_dir`` says otherwise
(``make study`` passes ``media_dir="media"``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlpmnist import paths
from mlpmnist.analysis import choice
from mlpmnist.analysis.columns import axis_label
from mlpmnist.analysis.words import count as _count
from mlpmnist.config import TrainConfig, check_names
from mlpmnist.figures import registry
from mlpmnist.model import MLP
from mlpmnist.parameters import check_mapping, output_folder
from mlpmnist.sweep.run import SweepConfig
from mlpmnist.values import plain

#: Under a results folder: one folder of figures and summary per study (``sweep_key``).
STUDIES = "studies"
#: What a study writes into its media folder: every study figure (PNG) and the summary CSV.
MEDIA_FILES = (*(f"{n}.png" for n in registry.names(*registry.STUDY_SOURCES)), "study_summary.csv")


@dataclass(frozen=True)
class ModelChoice:
    """The experiment whose models the model cells show: ``label`` its grid point in words
    ('batch 64, lr 0.1'), ``why`` one sentence saying why this one."""

    config: TrainConfig
    label: str
    why: str
    key: str  # the key its store holds it by (a legacy key in a store made before 16-digit keys)


@dataclass(frozen=True)
class Study:
    """The sweep to run; ``model_batch_size`` (None: any) and ``model_where`` (other grid axes'
    values) say among which experiments the model cells show the best median's models;
    ``unused_more_seeds``: batch sizes ``more_seeds`` named that the sweep does not train."""

    sweep: SweepConfig
    model_batch_size: int | None
    media_dir: Path
    model_where: Mapping[str, Any] = field(default_factory=dict)
    unused_more_seeds: tuple[int, ...] = ()

    @classmethod
    def from_parameters(
        cls,
        *,
        batch_sizes: Sequence[int],
        epochs: int,
        seeds: Sequence[int] | str,
        lr: float,
        model_batch_size: int | None = None,
        grid: Mapping[str, Sequence[Any]] | None = None,
        config: Mapping[str, Any] | None = None,
        model_where: Mapping[str, Any] | None = None,
        more_seeds: Mapping[int, Sequence[int] | str] | None = None,
        workers: int | None = 2,
        results_dir: str | os.PathLike = "results",
        data_dir: str | os.PathLike | None = None,
        media_dir: str | os.PathLike | None = None,
    ) -> Study:
        """The study of run.ipynb's parameters: ``batch_sizes`` x ``grid``'s other axes, each
        point trained with ``epochs``, ``seeds``, ``lr`` and ``config``'s other ``TrainConfig``
        fields; ``more_seeds`` (batch size -> seeds) adds those seeds at that batch size, at every
        point of the other axes. ``ValueError`` naming a bad parameter."""
        grid = check_mapping("grid", grid, "{'lr': [0.03, 0.1]}")
        config = check_mapping("config", config, "{'momentum': 0.9}")
        check_names(config, "config field")
        if "batch_size" in grid or "batch_size" in config:
            raise ValueError("set the batch sizes with batch_sizes, not in grid or config")
        if not isinstance(batch_sizes, (list, tuple)) or not batch_sizes:
            raise ValueError(f"batch_sizes must be a non-empty list of integers; got {batch_sizes!r}")
        base = TrainConfig.from_mapping({"epochs": epochs, "seeds": seeds, "lr": lr, **config})
        full = {"batch_size": list(batch_sizes), **grid}
        if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
            raise ValueError(f"data_dir must be None or a folder path (text); got {data_dir!r}")
        sweep = SweepConfig(
            base=base,
            grid=full,
            results_dir=output_folder("results_dir", results_dir),
            data_dir=None if data_dir is None else paths.resolve(data_dir),
            workers=workers,
            extra=_more_seeds(more_seeds, SweepConfig(base=base, grid=full).grid_experiments()),
        )
        unused = sorted(set(more_seeds or {}) - set(sweep.grid["batch_size"]))
        if model_batch_size is not None and model_batch_size not in sweep.grid["batch_size"]:
            raise ValueError(
                f"model_batch_size {model_batch_size!r} is not one of batch_sizes {list(batch_sizes)}; "
                "pick one of them, or None for the best median's (its models are shown in the prediction "
                "and t-SNE cells)"
            )
        where = _check_where(model_where, sweep)
        # Every folder and file the notebook writes, checked now, not after the sweep and figures.
        if media_dir is None:
            default = Path(sweep.results_dir) / STUDIES / sweep_key(sweep)
            media = output_folder("results_dir's study folder", default, MEDIA_FILES)
        else:
            media = output_folder("media_dir", media_dir, MEDIA_FILES)
        return cls(sweep, model_batch_size, media, where, tuple(unused))

    def _pinned(self) -> dict[str, Any]:
        """The grid axes the model point is pinned to: ``model_batch_size`` (when set), ``model_where``."""
        batch = {} if self.model_batch_size is None else {"batch_size": self.model_batch_size}
        return batch | dict(self.model_where)

    def model_candidates(self) -> list[TrainConfig]:
        """The grid's experiments at the values ``_pinned`` says."""
        pinned = self._pinned()
        grid = self.sweep.grid_experiments()
        return [e for e in grid if all(plain(getattr(e, k)) == plain(v) for k, v in pinned.items())]

    def label(self, config: TrainConfig) -> str:
        """``config``'s grid point in words: 'batch 64', or 'batch 64, lr 0.1' when the grid has
        more axes with several values."""
        axes = ["batch_size", *(k for k, v in self.sweep.grid.items() if k != "batch_size" and len(v) > 1)]
        return ", ".join(axis_label(k, getattr(config, k)) for k in axes)

    def choose_model(self, df: pd.DataFrame) -> ModelChoice:
        """Whose models the model cells show, from the sweep's results frame ``df``
        (``choice.choose_model``). ``ValueError`` when no candidate finished."""
        cands = self.model_candidates()
        done = set(df["key"]) if "key" in df.columns else set()
        # Each candidate by the key the frame holds it under: its own, or a store's legacy key.
        key = {c: c.key() if c.key() in done or c.legacy_key() not in done else c.legacy_key() for c in cands}
        fix = "see the sweep's table; rerun the sweep or choose model_batch_size and model_where"
        best, reason = choice.choose_model(df, list(key.values()), self._pinned(), "of the grid", fix)
        chosen = next(c for c in cands if key[c] == best)
        why = f"Models of {self.label(chosen)} ({best})"
        why += "." if len(cands) == 1 else f": {reason}; {self._hint(chosen)}."
        return ModelChoice(chosen, self.label(chosen), why, best)

    def _hint(self, chosen: TrainConfig) -> str:
        """How to show another point: a free parameter and another value of it (there is one, as
        ``choose_model`` asks only when there are several candidates)."""
        name = next(k for k, v in self.sweep.grid.items() if len(v) > 1 and k not in self._pinned())
        other = next(v for v in self.sweep.grid[name] if plain(v) != plain(getattr(chosen, name)))
        if name == "batch_size":
            return f"set model_batch_size (e.g. {other}) or model_where to show another"
        return f"set model_where (e.g. {{{name!r}: {other!r}}}) to show another"

    def networks(self) -> str:
        """Each network the sweep trains (one per architecture: dataset dims, ``hidden``, activation):
        its layer sizes, trainable parameter count and module, blocks separated by a blank line."""
        seen: dict[tuple, str] = {}
        for e in self.sweep.experiments():
            dims = (e.spec.n_features, *e.hidden, e.spec.n_classes)
            if (dims, e.activation) not in seen:
                net = MLP(e.hidden, e.spec.n_features, e.spec.n_classes, activation=e.activation)
                sizes = "-".join(map(str, dims))
                n = sum(p.numel() for p in net.parameters())
                kind = "leaky ReLU" if e.activation == "leaky_relu" else "ReLU"
                seen[dims, e.activation] = f"{sizes} {kind} MLP, {n:,} trainable parameters\n{net}"
        return "\n\n".join(seen.values())

    def describe(self) -> str:
        """Two lines: the experiments, axes, seeds and epochs; where results, figures and summary go."""
        axes = ", ".join(f"{k} {list(v)}" for k, v in self.sweep.grid.items())
        base, extra = self.sweep.base, self.sweep.extra
        seeds_at = {e.batch_size: len(e.seeds) for e in extra}
        more = "".join(f"; and {_count(n, 'more seed')} at batch {b}" for b, n in seeds_at.items())
        if self.unused_more_seeds:
            unused = ", ".join(map(str, self.unused_more_seeds))
            more += f" (more_seeds at batch {unused}: not in batch_sizes, unused)"
        return (
            f"{_count(len(self.sweep.grid_experiments()), 'experiment')} ({axes}), "
            f"{_count(len(base.seeds), 'seed')} each, {_count(base.epochs, 'epoch')}{more}\n"
            f"results in {paths.shown(self.sweep.results_dir)}; "
            f"figures and summary in {paths.shown(self.media_dir)}"
        )


def sweep_key(sweep: SweepConfig) -> str:
    """A name for a sweep's set of experiments, e.g. ``8exp-e15-s10-3fa2c1d9``: how many,
    epochs, seeds, then a hash of the experiments' keys (the same experiments, the same key)."""
    exps = sweep.experiments()
    digest = hashlib.sha256("\n".join(sorted(e.key() for e in exps)).encode()).hexdigest()[:8]
    return f"{len(exps)}exp-e{sweep.base.epochs}-s{len(sweep.base.seeds)}-{digest}"


def _more_seeds(more: Mapping[int, Sequence[int] | str] | None, grid: list[TrainConfig]) -> list[TrainConfig]:
    """The experiments ``more_seeds`` adds: each grid experiment at one of its batch sizes again,
    with those seeds."""
    more = {} if more is None else more
    if not isinstance(more, Mapping) or not all(isinstance(b, int) for b in more):
        raise ValueError(
            f"more_seeds must be a dict of batch size -> seeds, e.g. {{8: '10-59'}}; got {more!r}"
        )
    return [
        TrainConfig.from_mapping({"seeds": more[e.batch_size]}, base=e) for e in grid if e.batch_size in more
    ]


def _check_where(where: Mapping[str, Any] | None, sweep: SweepConfig) -> dict[str, Any]:
    """``model_where`` checked as a dict of grid axes (not batch_size) to one of their values."""
    out = {}
    for name, value in check_mapping("model_where", where, "{'lr': 0.1}").items():
        if name == "batch_size":
            raise ValueError("set the models' batch size with model_batch_size, not in model_where")
        values = sweep.grid.get(name)
        if values is None:
            axes = [k for k in sweep.grid if k != "batch_size"]
            raise ValueError(
                f"model_where names {name!r}, which is not a grid axis; "
                + (f"the grid's other axes are {axes}" if axes else "the grid has no other axis: use {}")
            )
        if plain(value) not in values:
            raise ValueError(f"model_where {name}={value!r} is not one of the grid's values {list(values)}")
        out[name] = plain(value)
    return out
