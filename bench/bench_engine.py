"""The original notebook loop against the fast engine, side by side: ``run.py``'s target-1 part.

    MLPMNIST_DATA=../shared/data python bench/bench_engine.py [--repeats 3]

The full benchmark (per batch size, threads, replicas, fixed cost) is ``python bench/run.py``.
"""

from __future__ import annotations

import sys

import run

if __name__ == "__main__":
    sys.argv += ["--skip", "batches", "threads", "replicas", "fixed"]
    run.main()
