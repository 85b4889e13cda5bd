"""Shared by the benchmarks: FLOP counts, a GEMM peak and medians (no mlpmnist import here)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

SIZES = (784, 64, 64, 10)  # the study's MLP
TRAIN_EXAMPLES = 60_000
TEST_EXAMPLES = 10_000


def flops_per_example(sizes: Sequence[int] = SIZES) -> tuple[int, int]:
    """(training, evaluation) FLOPs per example: training counts the forward pass, the weight
    gradients and the input gradients of layers 2.. (layer 1's input gradient is never needed);
    evaluation counts the forward pass. One multiply-add is 2 FLOPs; biases are left out."""
    macs = [a * b for a, b in zip(sizes, sizes[1:], strict=False)]
    forward = 2 * sum(macs)
    return forward + forward + 2 * sum(macs[1:]), forward


def epoch_gflop(sizes: Sequence[int] = SIZES) -> float:
    """GFLOP of one replica-epoch: 60,000 training examples and the 10,000-image test set."""
    train, ev = flops_per_example(sizes)
    return (train * TRAIN_EXAMPLES + ev * TEST_EXAMPLES) / 1e9


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def timed(fn: Callable[[], object], sync: Callable[[], None] = lambda: None) -> float:
    """Wall seconds of one call of ``fn`` (``sync`` waits for a device before each clock read)."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def gemm_gflops(
    threads: int | None = None, n: int = 2048, repeats: int = 5, device: str = "cpu", dtype=torch.float32
) -> float:
    """Achieved GFLOP/s of ``torch.matmul`` of two n x n matrices: the median of ``repeats``
    timings (each of enough products to last ~0.2 s) after a warm-up, on ``threads`` threads."""
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        c = torch.empty(n, n, device=device, dtype=dtype)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        one = timed(lambda: torch.matmul(a, b, out=c), sync)  # warm-up, and a size for the loop
        reps = max(1, int(0.2 / max(one, 1e-6)))

        def loop() -> None:
            for _ in range(reps):
                torch.matmul(a, b, out=c)

        secs = median([timed(loop, sync) / reps for _ in range(repeats)])
        return 2 * n**3 / secs / 1e9
    finally:
        torch.set_num_threads(old)
