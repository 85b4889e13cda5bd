"""mlpmnist: how batch size and epochs change what a small MLP learns on MNIST."""

from .config import TrainConfig
from .data import MNIST, DataError, Split, ensure, load
from .model import MLP
from .train import TrainResult, train

__all__ = ["MLP", "MNIST", "DataError", "Split", "TrainConfig", "TrainResult", "ensure", "load", "train"]
__version__ = "0.1.0"
