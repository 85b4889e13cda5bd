import os

import pytest
import torch

import mlpmnist


@pytest.fixture(scope="session")
def mnist() -> mlpmnist.MNIST:
    """Real MNIST from $MLPMNIST_DATA (CI: ../shared/data)."""
    if not os.environ.get("MLPMNIST_DATA"):
        pytest.fail("set MLPMNIST_DATA to a directory holding MNIST/raw (CI: ../shared/data)")
    return mlpmnist.load(download=False)


@pytest.fixture(autouse=True)
def _one_thread():
    # Two cores, and tests compare numbers, not speed: one intra-op thread keeps them steady.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
