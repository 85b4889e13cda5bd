"""mlpmnist: how batch size and epochs change what a small MLP learns on MNIST.

The public names below load on first use, so that ``import mlpmnist.analysis`` (numbers only)
does not pay for torch: ``mlpmnist.TrainConfig``, ``mlpmnist.load`` (the data),
``mlpmnist.train`` (the one training loop), and the modules ``results`` (the store), ``stats``,
``tables`` and ``sweep``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlpmnist.paths import package_version

__version__ = package_version()

#: public name -> (module, attribute or None for the module itself)
_PUBLIC = {
    "TrainConfig": ("mlpmnist.config", "TrainConfig"),
    "DatasetSpec": ("mlpmnist.data.specs", "DatasetSpec"),
    "Data": ("mlpmnist.data.loader", "Data"),
    "Split": ("mlpmnist.data.loader", "Split"),
    "ensure": ("mlpmnist.data.loader", "ensure"),
    "load": ("mlpmnist.data.loader", "load"),
    "DataError": ("mlpmnist.errors", "DataError"),
    "StoreError": ("mlpmnist.errors", "StoreError"),
    "SweepError": ("mlpmnist.errors", "SweepError"),
    "MLP": ("mlpmnist.model", "MLP"),
    "TrainResult": ("mlpmnist.training.result", "TrainResult"),
    "train": ("mlpmnist.training.loop", "train"),
    "results": ("mlpmnist.store", None),
    "stats": ("mlpmnist.analysis.stats", None),
    "tables": ("mlpmnist.analysis.tables", None),
}
__all__ = [
    "MLP",
    "Data",
    "DataError",
    "DatasetSpec",
    "Split",
    "StoreError",
    "SweepError",
    "TrainConfig",
    "TrainResult",
    "ensure",
    "load",
    "results",
    "stats",
    "tables",
    "train",
]

if TYPE_CHECKING:
    from mlpmnist import store as results
    from mlpmnist.analysis import stats, tables
    from mlpmnist.config import TrainConfig
    from mlpmnist.data.loader import Data, Split, ensure, load
    from mlpmnist.data.specs import DatasetSpec
    from mlpmnist.errors import DataError, StoreError, SweepError
    from mlpmnist.model import MLP
    from mlpmnist.training.loop import train
    from mlpmnist.training.result import TrainResult


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mlpmnist' has no attribute {name!r}")
    module, attr = _PUBLIC[name]
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
