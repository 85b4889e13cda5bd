"""Many groups on one device: the data moves to the device once, and the groups train at once.

On a GPU each group trains in a thread of this process with its own CUDA stream: one group's
kernels are small and dependent (a step waits for the previous one), so a GPU sits mostly idle
under one group, and several on separate streams fill it. On a CPU the groups run one after
another by default (the sweep's jobs already share the cores); asked for more at once, they
train in worker processes, one torch thread each, since threads of one process measured no
faster at small batches (each step's many small operations hold Python's global lock).
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mlpmnist.config import TrainConfig, resolve_device
from mlpmnist.data import loader as mdata
from mlpmnist.training.groups import Group, cost
from mlpmnist.training.loop import TrainResult, train

#: Groups trained at once on a GPU unless told otherwise (each a thread and a CUDA stream).
GPU_CONCURRENCY = 16


@dataclass
class GroupOutcome:
    """One group trained: its ``result``, or the ``error`` (one line) that stopped it."""

    group: Group
    result: TrainResult | None
    error: str | None
    seconds: float


def default_concurrency(device: torch.device) -> int:
    """Groups trained at once: ``GPU_CONCURRENCY`` on a GPU, 1 on a CPU."""
    return GPU_CONCURRENCY if device.type == "cuda" else 1


def _train_one(group: Group, data: mdata.Data, device: torch.device, hooks: dict[str, Any]) -> GroupOutcome:
    t0 = time.perf_counter()
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    try:
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            result = train(group.config, data, progress=False, verbose=False, **hooks)
        if stream is not None:
            stream.synchronize()
        return GroupOutcome(group, result, None, time.perf_counter() - t0)
    except Exception as e:  # one group's failure (out of memory, say) leaves the others running
        line = traceback.format_exception_only(e)[-1].strip()
        return GroupOutcome(group, None, line, time.perf_counter() - t0)


def _worker_start(root: str, dataset: str) -> None:
    """A CPU worker process's start: load the data once and die with the process that asked."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):  # prctl is Linux's
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    _WORKER["data"] = mdata.load(root, dataset=dataset, check=False)


#: What a CPU worker process loaded at its start (only ever set inside a worker process).
_WORKER: dict[str, mdata.Data] = {}


def _train_in_worker(group: Group, hooks: dict[str, Any]) -> GroupOutcome:
    return _train_one(group, _WORKER["data"], torch.device("cpu"), hooks)


def _processes(
    groups: list[Group], data: mdata.Data, n: int, keywords: Callable[[Group], dict[str, Any]]
) -> Iterator[GroupOutcome]:
    """``groups`` in ``n`` spawned worker processes that each load ``data`` from its files."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    start = (str(data.root), data.spec.name)
    with ProcessPoolExecutor(
        n, mp_context=get_context("spawn"), initializer=_worker_start, initargs=start
    ) as pool:
        futures = {pool.submit(_train_in_worker, g, keywords(g)): g for g in groups}
        pending: set[Future[GroupOutcome]] = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                try:
                    out = f.result()
                except Exception as e:  # the worker died (killed, out of memory, or an unguarded script)
                    out = GroupOutcome(futures[f], None, _died(e), 0.0)
                # The worker's copy of the group came back; hand out the caller's own.
                yield GroupOutcome(futures[f], out.result, out.error, out.seconds)


def _died(e: Exception) -> str:
    """What a dead worker most likely means. A spawned worker starts by importing the caller's
    script; a script that calls this at its top level, not under ``if __name__ == "__main__":``,
    then starts workers again from inside the worker, which multiprocessing refuses."""
    what = f"its worker process died ({type(e).__name__}): killed, or out of memory"
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if script and not hasattr(sys, "ps1"):
        what += (
            f'; or {Path(script).name} calls this outside `if __name__ == "__main__":` '
            "(worker processes start by importing the script: put the call under that line)"
        )
    return what


def train_groups(
    groups: Iterable[Group],
    data: mdata.Data,
    *,
    concurrency: int | None = None,
    on_eval: Callable[[list[dict]], None] | None = None,
    hooks: Callable[[Group], dict[str, Any]] | None = None,
) -> Iterator[GroupOutcome]:
    """Train every group (the most expensive first) and yield each ``GroupOutcome`` as it
    finishes. All groups must share one device (their config's); ``concurrency`` groups train at
    once (default ``default_concurrency``): on a GPU in threads, on a CPU in worker processes
    (which load ``data`` from its files; ``hooks`` must then be picklable). ``hooks(group)``
    gives further ``train`` keywords for a group (``eval_at``, ``splits``, ``stop``,
    ``snapshot_epochs``); ``on_eval`` sees every group's evaluations (in this process: CPU
    groups then train in threads). A group that raises is yielded with its error."""
    groups = sorted(groups, key=lambda g: cost(g.config), reverse=True)
    if not groups:
        return
    devices = {g.config.device for g in groups}
    if len(devices) > 1:
        raise ValueError(f"train_groups trains on one device; got {sorted(devices)}")
    device = resolve_device(groups[0].config.device)
    data = data.to(device)  # once for all the groups
    n = concurrency or default_concurrency(device)

    def keywords(g: Group) -> dict[str, Any]:
        return {"on_eval": on_eval, **(hooks(g) if hooks is not None else {})}

    if n == 1:
        for g in groups:
            yield _train_one(g, data, device, keywords(g))
        return
    if device.type == "cpu" and on_eval is None:
        yield from _processes(groups, data, n, keywords)
        return
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="group") as pool:
        pending: set[Future[GroupOutcome]] = {
            pool.submit(_train_one, g, data, device, keywords(g)) for g in groups
        }
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()


def train_many(
    configs: Sequence[TrainConfig],
    data: mdata.Data,
    *,
    hooks: Sequence[dict[str, Any]] | None = None,
    concurrency: int | None = None,
) -> list[TrainResult]:
    """Train each of ``configs`` (each its own engine; all on one device) at once where the device
    allows (``train_groups``); ``hooks[i]`` are further ``train`` keywords for ``configs[i]``.
    Returns the results in the order of ``configs``; raises ``RuntimeError`` naming the first
    config whose training failed."""
    groups = [Group(c, ()) for c in configs]
    by_group = dict(zip(map(id, groups), hooks or [{}] * len(groups), strict=True))
    results: dict[int, TrainResult] = {}
    for out in train_groups(groups, data, concurrency=concurrency, hooks=lambda g: by_group[id(g)]):
        if out.result is None:
            raise RuntimeError(f"training batch {out.group.config.batch_size} failed: {out.error}")
        results[id(out.group)] = out.result
    return [results[id(g)] for g in groups]
