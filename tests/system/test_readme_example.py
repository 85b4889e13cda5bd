"""The README's Python example, saved as a script and run (smaller: one epoch on 2,000 images):
it works, and it prints every column in full (the issue's m8: pandas elided the median and CI
columns of a script's output)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(import mlpmnist\n.*?)```", text, re.DOTALL)
    return code


def test_the_readmes_python_example_runs_as_a_script_and_prints_in_full(tmp_path):
    code = example()
    small = {
        "mlpmnist.TrainConfig(batch_size=90, seeds=(0, 1, 2))": "mlpmnist.TrainConfig(batch_size=90, "
        "seeds=(0, 1, 2), epochs=1, train_limit=2000)",
        "mlpmnist.TrainConfig(epochs=5, seeds=(0, 1, 2, 3, 4))": "mlpmnist.TrainConfig(epochs=1, "
        "seeds=(0, 1, 2, 3, 4), train_limit=2000)",
    }
    for old, new in small.items():
        assert old in code, old  # the example as the README shows it
        code = code.replace(old, new)
    (tmp_path / "example.py").write_text(code)
    env = {**os.environ, "COLUMNS": "80"}  # a narrow terminal, where pandas elides first
    p = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "..." not in p.stdout and "…" not in p.stdout
    for words in ("median [q1, q3] (%)", "median 95% CI (%)", "mean ± 95% CI (%)", "failed seeds / n"):
        assert words in p.stdout, words
    assert "Holm-adjusted over the 6 pairs of configurations" in p.stdout
    assert "dead_1" in p.stdout and "wnorm_1" in p.stdout  # the history's every column
