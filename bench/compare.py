"""The default study through the CLI, this checkout against another (an older commit), one after
the other in one run: wall seconds of ``python -m mlpmnist sweep --seeds SEEDS`` each.

    git worktree add /tmp/old d222abc
    MLPMNIST_DATA=../shared/data python bench/compare.py --other /tmp/old            # ~10 minutes

The machine may be shared: read the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def study_wall(checkout: Path, seeds: str) -> float:
    """Wall seconds of the default study by ``checkout``'s CLI (its ``src`` first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    if "MLPMNIST_DATA" in env:  # read from where this script started, not from the checkout
        env["MLPMNIST_DATA"] = os.path.abspath(env["MLPMNIST_DATA"])
    with tempfile.TemporaryDirectory(prefix="mlpmnist-compare-") as tmp:
        cmd = [sys.executable, "-m", "mlpmnist", "sweep", "--seeds", seeds, "--results", tmp, "--no-progress"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):  # 3: a collapsed seed; the sweep still finished
        raise SystemExit(f"{checkout}: sweep exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=Path, required=True, help="another checkout of mlpmnist")
    ap.add_argument("--seeds", default="0-9")
    args = ap.parse_args()
    this = study_wall(ROOT, args.seeds)
    print(f"this checkout: {this:.1f} s", flush=True)
    other = study_wall(args.other.resolve(), args.seeds)
    print(f"{args.other}: {other:.1f} s; ratio other / this {other / this:.2f}")


if __name__ == "__main__":
    main()
