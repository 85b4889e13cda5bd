"""The data stage in a fresh process: loading imports nothing it does not need."""

import os
import subprocess
import sys

from mlpmnist.data import loader as mdata


def test_load_never_imports_torchvision(mnist):
    code = (
        "import sys, mlpmnist.data.loader as d; d.load(download=False); print('torchvision' in sys.modules)"
    )
    env = {**os.environ, mdata.ENV_VAR: str(mnist.root)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
