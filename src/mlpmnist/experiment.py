"""One experiment as the experiment notebook runs it: its parameters in, record and weights out.

The notebook (``experiment.ipynb``, shipped inside the package) has one ``parameters`` cell:
``config`` (a dict of ``TrainConfig`` fields), ``data_dir``, ``results_dir`` and ``check_data``
(the sweep checks the MNIST files once, in its own process, and passes False). Any
``TrainConfig`` field may also be passed on its own (``papermill ... -p batch_size 32``); any
other name is refused with a message that lists the valid ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from . import data as mdata
from . import results
from .config import FIELDS, TrainConfig
from .train import train

PARAMETERS = ("config", "data_dir", "results_dir", "check_data")


def notebook_path() -> Path:
    """The experiment notebook shipped with the package."""
    return Path(str(resources.files("mlpmnist") / "experiment.ipynb"))


def default_results_dir(start: str | os.PathLike | None = None) -> Path:
    """``results/`` of the source checkout that ``start`` (default: the working directory) lies
    in, so a notebook run from ``notebooks/`` writes where the sweep does; else ``./results``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "src" / "mlpmnist").is_dir():
            return folder / "results"
    return here / "results"


@dataclass(frozen=True)
class Experiment:
    """What one notebook run computes (``config``) and where it reads and writes."""

    config: TrainConfig
    data_dir: str | None
    results_dir: Path
    check_data: bool = True

    @property
    def key(self) -> str:
        return self.config.key()


def from_parameters(names: Mapping[str, Any], before: set[str] | frozenset[str] = frozenset()) -> Experiment:
    """The experiment that the notebook's parameter variables describe: ``names`` (a notebook's
    ``globals()``) less those in ``before`` (defined before the parameters cell) and private ones.

    ``config`` may be a dict or its JSON text; top-level ``TrainConfig`` field names override it.
    Unknown names raise ``ValueError`` naming them and listing the valid ones.
    """
    names = {k: v for k, v in names.items() if k not in before and not k.startswith("_")}
    unknown = [n for n in names if n not in PARAMETERS and n not in FIELDS]
    if unknown:
        import difflib

        valid = [*PARAMETERS, *FIELDS]
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, valid, n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown experiment parameter {', '.join(hints)}; valid: {', '.join(PARAMETERS)}, "
            f"or any TrainConfig field: {', '.join(FIELDS)}"
        )
    config = names.get("config") or {}
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"config must be a dict of TrainConfig fields (or its JSON); got {config!r}"
            ) from e
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict of TrainConfig fields; got {config!r}")
    fields = {**config, **{k: v for k, v in names.items() if k in FIELDS}}
    results_dir = names.get("results_dir")
    return Experiment(
        config=TrainConfig.from_mapping(fields),
        data_dir=names.get("data_dir"),
        results_dir=Path(results_dir) if results_dir else default_results_dir(),
        check_data=bool(names.get("check_data", True)),
    )


def run(exp: Experiment, progress: bool = False) -> dict:
    """Train ``exp.config``, then atomically write its record and final weights under
    ``exp.results_dir``. Returns the record (see ``results.make_record``)."""
    result = train(exp.config, mdata.load(exp.data_dir, check=exp.check_data), progress=progress)
    record = results.make_record(result)
    results.save_models(result, results.path(exp.results_dir, "models", exp.key))
    results.write_record(record, results.path(exp.results_dir, "runs", exp.key))
    return record


def check(record: dict) -> None:
    """Raise ``RuntimeError`` with the record's error (diverged replicas), so the notebook and
    the sweep mark the experiment failed."""
    if record.get("error"):
        raise RuntimeError(record["error"])
