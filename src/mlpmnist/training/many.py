"""Many groups on one device: the data moves to the device once, and on a GPU the groups train at once.

On a GPU each group trains in a thread of this process with its own CUDA stream: one group's
kernels are small and dependent (a step waits for the previous one), so a GPU sits mostly idle
under one group, and several on separate streams fill it. On a CPU the groups train one after
another: the sweep's jobs (one kernel each) are the package's one way to use several CPU cores.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import torch

from mlpmnist.config import resolve_device
from mlpmnist.data.loader import Data
from mlpmnist.training.groups import Group, cost
from mlpmnist.training.loop import Checkpoint, train
from mlpmnist.training.result import TrainResult

#: ``train_groups``'s hooks: per group, its evaluations (``on_eval``) and its checkpoint.
OnEval = Callable[[Group, list[dict]], None]
Checkpoints = Callable[[Group], Checkpoint | None]

#: Groups trained at once on a GPU unless told otherwise (each a thread and a CUDA stream).
GPU_CONCURRENCY = 16


@dataclass
class GroupOutcome:
    """One group trained: its ``result``, or the ``error`` (one line) that stopped it; ``seconds``
    of wall time."""

    group: Group
    result: TrainResult | None
    error: str | None
    seconds: float


def _train_one(
    group: Group, data: Data, device: torch.device, on_eval: OnEval | None, checkpoints: Checkpoints | None
) -> GroupOutcome:
    t0 = time.perf_counter()
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    hook = None if on_eval is None else (lambda rows: on_eval(group, rows))
    checkpoint = None if checkpoints is None else checkpoints(group)
    try:
        with torch.cuda.stream(stream):  # a no-op with None (a CPU)
            result = train(
                group.config, data, progress=False, verbose=False, on_eval=hook, checkpoint=checkpoint
            )
        if stream is not None:
            stream.synchronize()
        return GroupOutcome(group, result, None, time.perf_counter() - t0)
    except Exception as e:  # one group's failure (out of memory, say) leaves the others running
        line = traceback.format_exception_only(e)[-1].strip()
        return GroupOutcome(group, None, line, time.perf_counter() - t0)


def train_groups(
    groups: Iterable[Group],
    data: Data,
    *,
    concurrency: int | None = None,
    on_eval: OnEval | None = None,
    checkpoints: Checkpoints | None = None,
) -> Iterator[GroupOutcome]:
    """Train every group (the most expensive first) on their configs' one device, ``concurrency``
    at once on a GPU (default ``GPU_CONCURRENCY``), and yield each ``GroupOutcome`` as it finishes;
    a group that raises is yielded with its error. ``on_eval(group, rows)`` sees every group's
    evaluations; ``checkpoints(group)`` gives each group's ``train`` checkpoint."""
    groups = sorted(groups, key=lambda g: cost(g.config), reverse=True)
    if not groups:
        return
    devices = {g.config.device for g in groups}
    if len(devices) > 1:
        raise ValueError(f"train_groups trains on one device; got {sorted(devices)}")
    device = resolve_device(groups[0].config.device)
    data = data.to(device)  # once for all the groups
    n = (concurrency or GPU_CONCURRENCY) if device.type == "cuda" else 1
    if n == 1:
        yield from (_train_one(g, data, device, on_eval, checkpoints) for g in groups)
        return
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="group") as pool:
        futures = [pool.submit(_train_one, g, data, device, on_eval, checkpoints) for g in groups]
        for f in as_completed(futures):
            yield f.result()
