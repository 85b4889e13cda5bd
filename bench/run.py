"""``make bench``: how fast training is on this machine, and which speed targets are met.

Prints, all measured in this one run (medians of ``--repeats``, interleaved where compared):

1. the GEMM peak (``torch.matmul`` of 2048 x 2048 fp32) on 1 and 2 threads;
2. per batch size of the study: seconds per replica-epoch (training, evaluation), achieved
   GFLOP/s (forward, weight gradients, input gradients of layers 2-3, test-set evaluation)
   and its ratio to the GEMM peak;
3. target 1: the original notebook's loop (DataLoader over a TensorDataset, nn.Sequential,
   optim.SGD, ``loss.item()`` and the batch accuracy every step) against ``train()`` with 5
   replicas at batch 8, per replica, on 1 and 2 threads;
4. threads: one experiment on 1 vs 2 threads, and two experiments in parallel (two processes,
   as the sweep's two workers) with 1 vs 2 threads each;
5. replicas per engine: per-replica cost at 5 vs 10 replicas;
6. the fixed cost of a fresh process up to its first SGD step;
7. the default study through papermill (``python -m mlpmnist sweep``) with ten and with five
   seeds: wall time, training summed over experiments, and the jobs' fixed cost (launch to the
   first step: kernel start, imports, data);
8. a 2 batch sizes x 4 lrs x 3 seeds grid against 2 batch sizes x 12 seeds through the CLI:
   the wall-time ratio (grouped experiments cost what seeds do);
9. the CPU arrangement: two jobs (two kernels) against one job with two threads.

    MLPMNIST_DATA=../shared/data python bench/run.py            # ~15 minutes
    MLPMNIST_DATA=../shared/data python bench/run.py --quick    # a smoke test, seconds

The machine may be shared: read ratios measured side by side, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import epoch_gflop, flops_per_example, gemm_gflops, median
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import mlpmnist
from mlpmnist import TrainConfig, train

STUDY_BATCHES = (8, 16, 32, 48, 64, 90, 128, 150)
TARGET_1 = {1: 10.0, 2: 12.0}  # threads -> speed-up per replica over the original loop
TARGET_FIXED_S = 2.5
TARGET_STUDY_S = 130.0
TARGET_GRID_RATIO = 1.25
ROOT = Path(__file__).resolve().parent.parent


# --- the two loops --------------------------------------------------------------------------


def reference_epoch_seconds(data: mlpmnist.Data, batch_size: int, max_steps: int, threads: int) -> float:
    """Seconds per epoch of the original notebook's loop (one model), extrapolated to a full
    epoch from its first ``max_steps`` steps."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=batch_size, shuffle=True)
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = min(max_steps, len(loader))
    running_loss, correct = 0.0, 0
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        opt.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        running_loss += loss.item()  # as the original notebook: a sync and a float every step
        correct += (out.argmax(1) == y).sum().item()
    return (time.perf_counter() - t0) * len(loader) / steps


def fast_epoch(
    data: mlpmnist.Data, batch_size: int, replicas: int, max_steps: int, threads: int
) -> tuple[float, float]:
    """``train()`` for one epoch of ``replicas`` seeds: (training seconds per replica-epoch,
    extrapolated to 60,000 examples from ``max_steps`` steps; evaluation seconds per replica)."""
    limit = min(len(data.train), max_steps * batch_size)
    cfg = TrainConfig(
        batch_size=batch_size,
        epochs=1,
        seeds=tuple(range(replicas)),
        train_limit=None if limit == len(data.train) else limit,
        threads=threads,
        device="cpu",
    )
    row = train(cfg, data, progress=False, verbose=False).history.iloc[0]
    full = math.ceil(len(data.train) / batch_size) / cfg.steps_per_epoch
    return row["seconds"] * full / replicas, row["eval_seconds"] / replicas


# --- sections --------------------------------------------------------------------------------


def section_peak() -> dict[int, float]:
    peak = {t: gemm_gflops(t) for t in (1, 2)}
    print(f"GEMM peak (torch.matmul 2048^2 fp32): {peak[1]:.0f} GFLOP/s on 1 thread, {peak[2]:.0f} on 2")
    return peak


def section_batches(
    data: mlpmnist.Data, args: argparse.Namespace, peak: dict[int, float]
) -> dict[int, tuple[float, float]]:
    """Per batch size: (training, evaluation) seconds per replica-epoch."""
    train_f, eval_f = flops_per_example()
    t = args.threads
    print(
        f"\nPer batch size ({args.replicas} replicas, {t} thread(s), one epoch, median of {args.repeats};"
        f" {epoch_gflop():.1f} GFLOP per replica-epoch):"
    )
    print(f"{'batch':>5} {'train s':>8} {'eval s':>7} {'total s':>8} {'GFLOP/s':>8} {'of peak':>8}")
    out = {}
    for B in args.batch_sizes:
        runs = [fast_epoch(data, B, args.replicas, args.max_steps, t) for _ in range(args.repeats)]
        tr, ev = median([r[0] for r in runs]), median([r[1] for r in runs])
        gflops = (train_f * len(data.train) + eval_f * len(data.test)) / (tr + ev) / 1e9
        print(f"{B:>5} {tr:>8.3f} {ev:>7.3f} {tr + ev:>8.3f} {gflops:>8.1f} {gflops / peak[t]:>7.0%}")
        out[B] = (tr, ev)
    total = sum(tr + ev for tr, ev in out.values())
    print(f"sum over these batch sizes: {total:.2f} s per replica-epoch;", end=" ")
    print(f"x 15 epochs x 10 seeds = {150 * total:.0f} s of one core for the 10-seed study")
    return out


def section_target1(data: mlpmnist.Data, args: argparse.Namespace) -> dict[int, float]:
    """Speed-up per replica of ``train()`` (5 replicas, batch 8) over the original loop."""
    steps = args.max_steps
    print(f"\nTarget 1: original loop vs train() at batch 8, {args.replicas} replicas, per replica")
    head = ("threads", "original s/epoch", "train() s/replica-epoch", "speed-up", "target")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (7, 17, 24, 9, 7), strict=True)))
    ratios = {}
    for t in (1, 2):
        ref, fast = [], []
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            ref.append(reference_epoch_seconds(data, 8, steps, t))
            fast.append(fast_epoch(data, 8, args.replicas, steps, t)[0])
        r, f = median(ref), median(fast)
        ratios[t] = r / f
        verdict = "n/a" if args.quick else "met" if ratios[t] >= TARGET_1[t] else "MISSED"
        print(f"{t:>7} {r:>17.3f} {f:>24.3f} {r / f:>8.1f}x {TARGET_1[t]:>5.0f}x  {verdict}")
    return ratios


_CHILD = """
import json, os, sys, time
t = [time.time()]
import torch
t.append(time.time())
import mlpmnist
from mlpmnist import TrainConfig, train
t.append(time.time())
data = mlpmnist.load(download=False)
t.append(time.time())
B, R, threads, steps, barrier = json.loads(sys.argv[1])
limit = min(60000, steps * B)
cfg = TrainConfig(batch_size=B, epochs=1, seeds=tuple(range(R)), threads=threads, device="cpu",
                  train_limit=None if limit == 60000 else limit)
if barrier:  # start training together with the other process
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    while len(os.listdir(barrier)) < 2:
        time.sleep(0.005)
res = train(cfg, data, progress=False, verbose=False)
first = getattr(res, "first_step_at", None)
print(json.dumps({"stamps": t, "first_step": first, "seconds": float(res.history["seconds"].iloc[0]),
                  "steps": cfg.steps_per_epoch}))
"""


def _spawn(B: int, R: int, threads: int, steps: int, barrier: str | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    arg = json.dumps([B, R, threads, steps, barrier])
    return subprocess.Popen([sys.executable, "-c", _CHILD, arg], env=env, stdout=subprocess.PIPE, text=True)


def _result(p: subprocess.Popen) -> dict:
    out, _ = p.communicate()
    if p.returncode:
        raise RuntimeError(f"benchmark child failed with exit code {p.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def section_threads(args: argparse.Namespace, one: dict[int, float]) -> None:
    """One experiment on 1 vs 2 threads (from target 1), and two experiments in parallel."""
    print("\nThreads (batch 8 and 128; seconds per replica-epoch of training; lower is better):")
    print(f"  one experiment alone, batch 8: 1 thread {one[1]:.3f}, 2 threads {one[2]:.3f}")
    for B in (8, 128):
        steps = max(1, min(args.max_steps, 24000 // B))
        per = {}
        for t in (1, 2):
            runs = []
            for _ in range(max(1, args.repeats - 1)):
                with tempfile.TemporaryDirectory() as barrier:
                    procs = [_spawn(B, args.replicas, t, steps, barrier) for _ in range(2)]
                    res = [_result(p) for p in procs]
                # Two experiments of R replicas each: the pair's throughput.
                full = math.ceil(60000 / B) / res[0]["steps"]
                runs.append(max(r["seconds"] for r in res) * full / (2 * args.replicas))
            per[t] = median(runs)
        best = min(per, key=per.get)
        print(
            f"  two experiments in parallel, batch {B}: 1 thread each {per[1]:.3f},"
            f" 2 threads each {per[2]:.3f}  -> {best} thread(s) per worker"
        )


def section_replicas(data: mlpmnist.Data, args: argparse.Namespace) -> None:
    print(f"\nReplicas per engine ({args.threads} thread(s); seconds per replica-epoch of training):")
    for B in (8, 128):
        per = {R: [] for R in (5, 10)}
        for _ in range(args.repeats):
            for R in per:
                per[R].append(fast_epoch(data, B, R, args.max_steps, args.threads)[0])
        r5, r10 = median(per[5]), median(per[10])
        print(f"  batch {B:>3}: 5 replicas {r5:.3f}, 10 replicas {r10:.3f} ({r5 / r10:.2f}x per replica)")


def section_fixed(args: argparse.Namespace) -> float:
    """Fresh process: interpreter, import torch, import mlpmnist, load MNIST, first SGD step."""
    t0 = time.time()
    res = _result(_spawn(8, args.replicas, 1, 1, None))
    s = res["stamps"]
    first = res["first_step"] or time.time()
    parts = [("python", s[0] - t0), ("import torch", s[1] - s[0]), ("import mlpmnist", s[2] - s[1])]
    parts += [("load MNIST", s[3] - s[2]), ("train() to its first step", first - s[3])]
    total = first - t0
    print("\nFixed cost of a fresh process up to its first SGD step (no notebook kernel):")
    print("  " + ", ".join(f"{k} {v:.2f} s" for k, v in parts) + f"; total {total:.2f} s")
    return total


def run_cli(args: list[str]) -> float:
    """Wall seconds of ``python -m mlpmnist <args>`` (this checkout's code), launch to exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mlpmnist", *args], capture_output=True, text=True, env=env)
    if proc.returncode not in (0, 3):  # 3: a collapsed seed; the sweep still finished
        raise RuntimeError(f"mlpmnist {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def section_study(args: argparse.Namespace) -> dict[str, float]:
    """The default study through papermill (``python -m mlpmnist sweep``, default workers), timed
    from launch to exit, with ten and with five seeds; its wall time split into each job's fixed
    cost (launch to its kernel's first step: kernel start, imports, data) and training."""
    out: dict[str, float] = {}
    print("\nThe study through papermill (python -m mlpmnist sweep, default workers, 1 thread each):")
    for seeds in ("0-9", "0-4"):
        with tempfile.TemporaryDirectory(prefix="mlpmnist-bench-") as tmp:
            cmd = ["sweep", "--seeds", seeds, "--results", tmp, "--no-progress"]
            if args.quick:
                cmd += ["--batch-sizes", "64", "128", "--epochs", "1", "--train-limit", "3000"]
            launched = time.time()
            wall = run_cli(cmd)
            runs = [json.loads(p.read_text()) for p in sorted(Path(tmp, "runs").glob("*.json"))]
        starts = sorted(r["first_step_at"] - launched for r in runs)
        train_s = sum(r["seconds"] for r in runs)
        print(
            f"  seeds {seeds}: {wall:.0f} s wall for {len(runs)} experiments; summed over them: training "
            f"{train_s:.0f} s; launch to an experiment's first step: median {median(starts):.1f} s "
            f"(first {starts[0]:.1f} s: the jobs' fixed cost)"
        )
        out[seeds] = wall
        out[f"{seeds} fixed"] = starts[0]
    return out


def section_grid(args: argparse.Namespace) -> float:
    """A 2 batch sizes x 4 lrs x 3 seeds grid against 2 batch sizes x 12 seeds (the same replicas,
    1 epoch) through the CLI, interleaved: the wall-time ratio (grouping makes the lr axis cost
    what the seed axis does)."""
    grid = ["--grid", "batch_size=64,128", "lr=0.025,0.05,0.1,0.2", "--seeds", "0-2"]
    seeds = ["--grid", "batch_size=64,128", "--seeds", "0-11"]
    extra = ["--epochs", "1", "--no-progress"] + (["--train-limit", "3000"] if args.quick else [])
    walls: dict[str, list[float]] = {"grid": [], "seeds": []}
    for _ in range(max(1, args.repeats - 1)):
        for name, axes in (("grid", grid), ("seeds", seeds)):
            with tempfile.TemporaryDirectory(prefix="mlpmnist-bench-") as tmp:
                walls[name].append(run_cli(["sweep", *axes, *extra, "--results", tmp]))
    ratio = median(walls["grid"]) / median(walls["seeds"])
    print(
        f"\nGrid over lr vs seeds, 2 CPU cores: 2 x 4 lrs x 3 seeds {median(walls['grid']):.1f} s, "
        f"2 x 12 seeds {median(walls['seeds']):.1f} s (medians of {len(walls['grid'])}): ratio {ratio:.2f}"
    )
    return ratio


def section_arrangement(args: argparse.Namespace) -> None:
    """The CPU arrangement: two jobs (two kernels, one thread each) against one job training two
    groups at once (two threads in one kernel), on the study with 5 seeds and 3 epochs."""
    base = ["sweep", "--seeds", "0-4", "--epochs", "1" if args.quick else "3", "--no-progress"]
    if args.quick:
        base += ["--batch-sizes", "64", "128", "--train-limit", "3000"]
    walls: dict[str, list[float]] = {"2 jobs": [], "1 job, 2 threads": []}
    for _ in range(max(1, args.repeats - 1)):
        for name, extra in (
            ("2 jobs", ["--workers", "2"]),
            ("1 job, 2 threads", ["--workers", "1", "--concurrency", "2"]),
        ):
            with tempfile.TemporaryDirectory(prefix="mlpmnist-bench-") as tmp:
                walls[name].append(run_cli([*base, *extra, "--results", tmp]))
    print(
        "\nCPU arrangement (the study, 5 seeds, 3 epochs): "
        + ", ".join(f"{k} {median(v):.1f} s" for k, v in walls.items())
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=list(STUDY_BATCHES))
    ap.add_argument("--replicas", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="threads for the per-batch-size table")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=10**9, help="steps timed per epoch (default all)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: few steps, one repeat")
    sections = ["batches", "target1", "threads", "replicas", "fixed", "study", "grid", "arrangement"]
    ap.add_argument("--skip", nargs="*", default=[], choices=sections, help="sections to leave out")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.max_steps = 1, min(args.max_steps, 50)
        if args.batch_sizes == list(STUDY_BATCHES):
            args.batch_sizes = args.batch_sizes[:2]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {load:.1f}")
    data = mlpmnist.load(download=False)
    peak = section_peak()
    met: dict[str, bool] = {}
    if "batches" not in args.skip:
        section_batches(data, args, peak)
    if "target1" not in args.skip:
        ratios = section_target1(data, args)
        for t, r in ratios.items():
            met[f"target 1, {t} thread(s): >= {TARGET_1[t]:.0f}x"] = r >= TARGET_1[t]
        one = {t: fast_epoch(data, 8, args.replicas, args.max_steps, t)[0] for t in (1, 2)}
        if "threads" not in args.skip:
            section_threads(args, one)
    if "replicas" not in args.skip:
        section_replicas(data, args)
    if "fixed" not in args.skip:
        total = section_fixed(args)
        met[f"fixed cost to the first step <= {TARGET_FIXED_S} s (plain process)"] = total <= TARGET_FIXED_S
    if "study" not in args.skip:
        study = section_study(args)
        met[f"the 10-seed study <= {TARGET_STUDY_S:.0f} s wall (5 seeds: {study['0-4']:.0f} s)"] = (
            study["0-9"] <= TARGET_STUDY_S
        )
        met[f"a job's fixed cost, launch to its first step <= {TARGET_FIXED_S} s"] = (
            study["0-9 fixed"] <= TARGET_FIXED_S
        )
    if "grid" not in args.skip:
        ratio = section_grid(args)
        met[f"grid over lr vs seeds, wall ratio {ratio:.2f} <= {TARGET_GRID_RATIO}"] = (
            ratio <= TARGET_GRID_RATIO
        )
    if "arrangement" not in args.skip:
        section_arrangement(args)
    print("\nTargets" + (" (--quick: a smoke test, not a measurement):" if args.quick else ":"))
    for name, ok in met.items():
        print(f"  {'n/a   ' if args.quick else 'MET   ' if ok else 'MISSED'} {name}")


if __name__ == "__main__":
    main()
