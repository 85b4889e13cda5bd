"""Reference notebook loop vs the fast engine, side by side in one run.

The reference loop is the original study's: a DataLoader over a TensorDataset, nn.Module,
torch.optim.SGD, one seed. The fast engine trains R replicas in lockstep; its per-replica
epoch time is its epoch time divided by R. Each is timed over ``--steps`` steps (or a full
epoch), repeated ``--repeats`` times, interleaved, and the medians are compared.

    MLPMNIST_DATA=../shared/data python bench/bench_engine.py
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import mlpmnist
from mlpmnist.train import TrainConfig, train


def reference_epoch_seconds(data: mlpmnist.MNIST, batch_size: int, max_steps: int) -> float:
    """Seconds per full epoch of the reference loop, extrapolated from ``max_steps`` steps."""
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=batch_size, shuffle=True)
    model = mlpmnist.MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = min(max_steps, len(loader))
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) * len(loader) / steps


def fast_epoch_seconds(data: mlpmnist.MNIST, batch_size: int, replicas: int, max_steps: int) -> float:
    """Seconds per full epoch per replica of the fast engine, training loop and eval included."""
    limit = min(len(data.train), max_steps * batch_size)
    cfg = TrainConfig(batch_size=batch_size, epochs=1, seeds=tuple(range(replicas)), train_limit=limit)
    res = train(cfg, data, progress=False, verbose=False)
    epoch = res.history["seconds"].iloc[0]
    return epoch * math.ceil(len(data.train) / batch_size) / math.ceil(limit / batch_size) / replicas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 128])
    ap.add_argument("--replicas", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2000, help="steps timed per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = mlpmnist.load()
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), "
        f"{args.replicas} replicas, medians of {args.repeats}"
    )
    print(f"{'batch':>5} {'reference s/epoch':>18} {'fast s/epoch/replica':>21} {'speed-up':>9}")
    for bs in args.batch_sizes:
        ref, fast = [], []
        for _ in range(args.repeats):
            ref.append(reference_epoch_seconds(data, bs, args.steps))
            fast.append(fast_epoch_seconds(data, bs, args.replicas, args.steps))
        r, f = statistics.median(ref), statistics.median(fast)
        print(f"{bs:>5} {r:>18.3f} {f:>21.3f} {r / f:>8.1f}x")


if __name__ == "__main__":
    main()
