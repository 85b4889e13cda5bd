"""Every GPU target of the throughput issue, measured where users run it, in one run (< 6 minutes).

    PYTHONPATH=src MLPMNIST_DATA=<dir> python3 bench/gpu.py              # on the GPU machine
    PYTHONPATH=src MLPMNIST_DATA=../shared/data python bench/gpu.py --quick --device cpu   # a smoke test

In order (a part that fails prints its traceback and the run goes on; ``--budget-s`` skips the
later parts once the run has taken that long):

0. the check each faster path passes on a stacked engine's first span (``engine/cuda/choice.py``):
   the fused kernel and CUDA graphs on this device against its eager steps, float32, 10 replicas
   at batch 8 on MNIST; its verdict and the disagreement it measured;
1. the fused kernel (``engine/cuda/fused.py``): float64 against torch.optim, a race detector (the same
   2,000 steps twice give bitwise the same weights), and microseconds per batch-8 step for 10
   replicas, a whole epoch per launch, beside the CUDA-graph path (target <= 15 us);
2. the default study, 10 seeds, ``python -m mlpmnist sweep`` through papermill (target <= 15 s
   wall), and its medians against the committed study's 95% intervals (``media/study_summary.csv``):
   a rerun on other hardware, which repeats the numbers in distribution, not digit for digit;
3. a grid of 8 batch sizes x 8 learning rates x 10 seeds, 15 epochs (640 runs), by the CLI
   (target <= 60 s wall);
4. ``notebooks/batch_science.ipynb``, the full run, through papermill (target <= 120 s wall).

papermill and Jupyter must be importable (on the device machine: carried as wheels). The machine
may be shared: read the numbers with the load it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
STUDY_BATCHES = (8, 16, 32, 48, 64, 90, 128, 150)
GRID_LRS = (0.0125, 0.025, 0.035, 0.05, 0.07, 0.1, 0.14, 0.2)
TARGETS = {"step_us": 15.0, "study_s": 15.0, "grid_s": 60.0, "science_s": 120.0}
T0 = time.perf_counter()
VERDICTS: list[str] = []


def part(name: str, budget: float, fn: Callable[[], object]) -> object:
    """Run one part unless the run is over ``budget`` seconds; on failure print and go on."""
    spent = time.perf_counter() - T0
    print(f"\n== {name} ({spent:.0f} s in)", flush=True)
    if spent > budget:
        VERDICTS.append(f"SKIPPED {name}: over the {budget:.0f} s budget")
        return None
    try:
        return fn()
    except Exception:
        traceback.print_exc()
        VERDICTS.append(f"FAILED  {name} (traceback above)")
        return None


def verdict(what: str, value: float, target: float, unit: str) -> None:
    ok = value <= target
    VERDICTS.append(
        f"{'MET   ' if ok else 'MISSED'}  {what}: {value:.1f} {unit} (target <= {target:g} {unit})"
    )
    print(VERDICTS[-1], flush=True)


def env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def timed_cli(args: list[str], log: Path) -> float:
    """Wall seconds of ``python -m mlpmnist <args>``, its output to ``log``; raises on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "mlpmnist", *args], stdout=out, stderr=subprocess.STDOUT,
                              env=env(), cwd=ROOT)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):  # 3: some seed collapsed, still a finished sweep
        raise RuntimeError(f"mlpmnist {' '.join(args[:3])}... exited {proc.returncode}; see {log}")
    print(log.read_text()[-3000:])
    return wall


# --- 0. the faster paths' check ----------------------------------------------------------------


def self_check(device: torch.device, quick: bool) -> None:
    """Each faster path's check on this device, as an engine runs it on its first span."""
    sys.path.insert(0, str(ROOT / "bench"))
    import fused_gpu as fg

    from mlpmnist.engine.cuda import choice
    from mlpmnist.engine.stacked import StackedEngine

    X, Y, _, _ = fg.load_x(device)
    R, B = (2, 8) if quick else (10, 8)
    idx = fg.epoch_batches(len(X), R, B, device)[: choice.CHECK_STEPS]
    lr = torch.full((len(idx), R), 0.1, device=device)
    for path, use_fused in (("fused", None), ("graphs", False)):  # None: where triton can run it
        engine = StackedEngine(fg.models(R, torch.float32), device, use_fused=use_fused)
        if engine.path(B) != path:
            VERDICTS.append(f"INFO    the {path} path does not run on {device}: nothing to check")
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine.steps(X, idx, Y[idx], lr)
        for w in caught:
            print(f"  warning: {w.message}")
        chunks, tol = engine.checked.get(path, [float("nan")]), choice.tolerance(torch.float32)
        ok = engine.path(B) == path  # a path that failed its check is off
        VERDICTS.append(
            f"{'PASSED' if ok else 'FAILED'}  the {path} path's check on {device}: max |w_fast - w_eager| "
            f"over a chunk {sorted(chunks)[len(chunks) // 2]:.2e} in the median (float32 tolerance {tol:g}), "
            f"{max(chunks):.2e} at most, over {len(chunks)} chunks; "
            + ("it runs the later spans" if ok else "the engine steps eagerly")
        )
        print(VERDICTS[-1], flush=True)


# --- 1. the fused kernel ---------------------------------------------------------------------


def kernel(device: torch.device, quick: bool) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import fused_gpu as fg

    from mlpmnist.engine.cuda import fused

    if not (fused.available(device) and device.type == "cuda"):
        print("no fused kernel here (needs a CUDA device and triton): skipped")
        return
    X, Y, _, _ = fg.load_x(device)
    if quick:
        X, Y = X[:2000], Y[:2000]
    fg.check_against_torch(X, Y, device, torch.float64)
    fg.check_deterministic(X, Y, device, 10)
    us = fg.time_fused(X, Y, device, 8)
    graphs = fg.time_engine(X, Y, device, 8)
    print(f"batch 8, 10 replicas: fused {us:.1f} us a step, CUDA graphs {graphs:.1f} us a step")
    verdict("batch-8 step, 10 replicas (fused kernel)", us, TARGETS["step_us"], "us")


# --- 2. the study ------------------------------------------------------------------------------


def study(tmp: Path, quick: bool) -> None:
    args = ["sweep", "--seeds", "0-9", "--results", str(tmp / "study"), "--no-progress"]
    if quick:
        args += ["--batch-sizes", "64", "128", "--epochs", "1", "--train-limit", "3000", "--seeds", "0-1"]
    wall = timed_cli(args, tmp / "study.log")
    verdict("the default study, 10 seeds, python -m mlpmnist sweep", wall, TARGETS["study_s"], "s")
    if not quick:
        compare_with_committed(tmp / "study")


def compare_with_committed(results: Path) -> None:
    """Each batch size's median final test accuracy here against the committed study's 95%
    interval of the median (``media/study_summary.csv``)."""
    import pandas as pd

    from mlpmnist import results as store
    from mlpmnist import stats

    committed = pd.read_csv(ROOT / "media" / "study_summary.csv").set_index("batch_size")
    here = stats.summary(store.load(results)).set_index("batch_size")
    inside = 0
    for b, r in here.iterrows():
        c = committed.loc[b]
        ok = c["median_lo"] <= r["median"] <= c["median_hi"]
        inside += ok
        where = "inside" if ok else "OUTSIDE"
        ci = f"[{100 * c['median_lo']:.2f}, {100 * c['median_hi']:.2f}]"
        print(
            f"  batch {b:>3}: median {100 * r['median']:.2f}% here; "
            f"committed {100 * c['median']:.2f}% {ci} -> {where}"
        )
    VERDICTS.append(f"INFO    study medians inside the committed intervals: {inside} of {len(here)}")


# --- 3. the grid ---------------------------------------------------------------------------------


def grid(tmp: Path, quick: bool) -> None:
    bs = "64,128" if quick else ",".join(map(str, STUDY_BATCHES))
    lrs = "0.05,0.1" if quick else ",".join(map(str, GRID_LRS))
    args = [
        "sweep",
        "--grid",
        f"batch_size={bs}",
        f"lr={lrs}",
        "--results",
        str(tmp / "grid"),
        "--no-progress",
    ]
    args += ["--epochs", "1", "--train-limit", "3000", "--seeds", "0-1"] if quick else ["--seeds", "0-9"]
    wall = timed_cli(args, tmp / "grid.log")
    verdict("grid 8 batch sizes x 8 lrs x 10 seeds, 15 epochs (640 runs)", wall, TARGETS["grid_s"], "s")


# --- 4. the science ------------------------------------------------------------------------------


def science(tmp: Path, quick: bool) -> None:
    import papermill as pm

    out = tmp / "science"
    out.mkdir()
    t0 = time.perf_counter()
    pm.execute_notebook(
        str(ROOT / "notebooks" / "batch_science.ipynb"),
        str(out / "batch_science.ipynb"),
        parameters={"quick": quick, "out_dir": str(out)},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(ROOT),
    )
    wall = time.perf_counter() - t0
    record = json.loads((out / "science_summary.json").read_text())
    print(json.dumps(record["seconds"], indent=1))
    verdict("batch_science.ipynb, full, through papermill", wall, TARGETS["science_s"], "s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="tiny settings: a smoke test, not a measurement")
    ap.add_argument("--budget-s", type=float, default=330.0, help="skip the parts that start after this")
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["selfcheck", "kernel", "study", "grid", "science"]
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{name}; torch {torch.__version__}; load average {load:.1f}; quick={args.quick}")
    with tempfile.TemporaryDirectory(prefix="mlpmnist-gpu-") as tmp_name:
        tmp = Path(tmp_name)
        parts = {
            "selfcheck": lambda: self_check(device, args.quick),
            "kernel": lambda: kernel(device, args.quick),
            "study": lambda: study(tmp, args.quick),
            "grid": lambda: grid(tmp, args.quick),
            "science": lambda: science(tmp, args.quick),
        }
        for key, fn in parts.items():
            if key not in args.skip:
                part(key, args.budget_s, fn)
    print(
        f"\nTargets ({time.perf_counter() - T0:.0f} s in all"
        + ("; --quick: not a measurement" if args.quick else "")
        + "):"
    )
    for line in VERDICTS:
        print("  " + line)


if __name__ == "__main__":
    main()
