"""mlpmnist: how batch size and epochs change what a small MLP learns on MNIST."""

from .config import TrainConfig
from .data import MNIST, Data, DataError, Split, ensure, load
from .datasets import DatasetSpec
from .model import MLP
from .train import TrainResult, train

__all__ = [
    "MLP",
    "MNIST",
    "Data",
    "DataError",
    "DatasetSpec",
    "Split",
    "TrainConfig",
    "TrainResult",
    "ensure",
    "load",
    "train",
]
__version__ = "0.1.0"
