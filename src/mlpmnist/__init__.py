"""mlpmnist: how batch size and epochs change what a small MLP learns on MNIST."""

from .data import MNIST, DataError, Split, load
from .model import MLP
from .train import TrainConfig, TrainResult, train

__all__ = ["MLP", "MNIST", "DataError", "Split", "TrainConfig", "TrainResult", "load", "train"]
__version__ = "0.1.0"
