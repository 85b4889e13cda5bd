"""A resumable sweep over any grid of ``TrainConfig`` fields.

Each grid point is one experiment (its seeds are replicas of one engine) with its own key. The
groups of experiments that share an engine are split into jobs (``jobs``): one per worker, or
per GPU. Files are named by key, so sweeps share a results folder; a lock per experiment keeps
it from running twice at once, and a rerun skips every experiment done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from mlpmnist import store
from mlpmnist.config import TrainConfig, check_names, identity_fields, resolve_device
from mlpmnist.data import loader as mdata
from mlpmnist.errors import printable
from mlpmnist.store.locks import tidy, wait_free
from mlpmnist.store.records import failed_seeds
from mlpmnist.sweep import experiment, jobs
from mlpmnist.sweep.backends import DaskBackend, LocalBackend, check_address
from mlpmnist.sweep.progress import OnProgress, Progress, epoch_line
from mlpmnist.training import memory
from mlpmnist.training.groups import cost, plan_groups
from mlpmnist.values import is_int, is_number

#: The reference study's batch sizes: the default grid.
REFERENCE_BATCH_SIZES: tuple[int, ...] = (8, 16, 32, 48, 64, 90, 128, 150)
#: The most experiments one sweep may hold (checked before any is made).
MAX_EXPERIMENTS = 10_000
#: The most jobs (each a kernel) or groups a job trains at once.
MAX_WORKERS = 256


@dataclass(frozen=True)
class SweepConfig:
    """``base`` with each combination of ``grid``'s values (field name -> values), one experiment each.

    ``extra``: experiments beyond the grid (more seeds at one grid point, say), run with it.
    ``workers``: jobs run at once (local kernels; default: 2 on a CPU, one per GPU), unless
    ``scheduler`` names a Dask scheduler (then one job per worker thread). ``concurrency``:
    groups a GPU job trains at once. Bounded waits, in seconds: ``connect_timeout`` to reach the
    scheduler, ``worker_timeout`` without any Dask worker, ``lock_timeout`` for an experiment
    that another process holds, ``stall_timeout`` without a heartbeat from a kernel.
    """

    base: TrainConfig = field(default_factory=TrainConfig)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=lambda: {"batch_size": REFERENCE_BATCH_SIZES})
    results_dir: str | os.PathLike = "results"
    data_dir: str | os.PathLike | None = None
    workers: int | None = None
    scheduler: str | None = None
    worker_timeout: float = 60.0
    notebook: str | os.PathLike | None = None
    concurrency: int | None = None
    connect_timeout: float = 10.0
    lock_timeout: float = 600.0
    stall_timeout: float = 300.0
    extra: Sequence[TrainConfig] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.base, TrainConfig):
            raise ValueError(f"base must be a TrainConfig; got {self.base!r}")
        if not isinstance(self.grid, Mapping):
            raise ValueError(f"grid must be a dict of TrainConfig field -> list of values; got {self.grid!r}")
        check_names(self.grid, "grid axis")
        grid = {}
        for name, values in self.grid.items():
            if name not in identity_fields():
                raise ValueError(
                    f"grid axis {name} does not change what a run computes, so its points would be one "
                    f"experiment; set it for the whole sweep (--{name.replace('_', '-')}) instead"
                )
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ValueError(f"grid axis {name} must be a non-empty list of values; got {values!r}")
            vals = tuple(tuple(v) if isinstance(v, list) else v for v in values)
            if len(set(vals)) != len(vals):
                raise ValueError(f"grid axis {name} must not repeat a value; got {list(values)!r}")
            grid[name] = vals
        object.__setattr__(self, "grid", grid)
        n = math.prod(len(v) for v in grid.values())
        if n > MAX_EXPERIMENTS:
            raise ValueError(
                f"the grid holds {n:,} experiments, more than the {MAX_EXPERIMENTS:,} a sweep takes"
            )
        for name in ("workers", "concurrency"):
            v = getattr(self, name)
            if v is not None and not (is_int(v) and 1 <= v <= MAX_WORKERS):
                raise ValueError(f"{name} (--{name}) must be an integer in [1, {MAX_WORKERS}]; got {v!r}")
        if self.scheduler is not None:
            check_address(self.scheduler)  # its syntax, before the results folder is made
        for name in ("worker_timeout", "connect_timeout", "lock_timeout", "stall_timeout"):
            v = getattr(self, name)
            if not (is_number(v) and v > 0):
                raise ValueError(f"{name} must be a number of seconds > 0; got {v!r}")
        extra = tuple(self.extra)
        if not all(isinstance(e, TrainConfig) for e in extra):
            raise ValueError(
                f"extra must be a list of TrainConfig (experiments beyond the grid); got {extra!r}"
            )
        object.__setattr__(self, "extra", extra)
        nb = self.notebook_path()
        if not nb.is_file():
            raise ValueError(f"notebook {nb} not found; pass notebook=... (an experiment notebook)")
        self.experiments()  # every grid point validated before anything runs

    def notebook_path(self) -> Path:
        """``notebook``, or the package's experiment notebook."""
        return Path(self.notebook) if self.notebook else experiment.notebook_path()

    def grid_experiments(self) -> list[TrainConfig]:
        """One ``TrainConfig`` per grid point, in grid order (the last axis varies fastest)."""
        names = list(self.grid)
        return [
            dataclasses.replace(self.base, **dict(zip(names, point, strict=True)))
            for point in itertools.product(*self.grid.values())
        ]

    def experiments(self) -> list[TrainConfig]:
        """The grid's experiments, then ``extra``'s (those not already in the grid).
        ``ValueError`` when two different computations would share one key (their files would
        overwrite each other: a hash collision, which 64 bits make all but impossible)."""
        out: dict[str, TrainConfig] = {}
        for e in [*self.grid_experiments(), *self.extra]:
            k = e.key()
            if k in out and out[k].identity() != e.identity():
                a, b = out[k].identity(), e.identity()
                differ = ", ".join(f"{n} {a[n]!r} and {b[n]!r}" for n in a if a[n] != b.get(n))
                raise ValueError(
                    f"two experiments of this sweep ({differ}) share the key {k}, so one would overwrite "
                    "the other's results; change one of those values slightly"
                )
            out.setdefault(k, e)
        return list(out.values())


@dataclass
class SweepOutcome:
    """``table``: one row per experiment (grid values, status done/skipped/failed, replicas,
    failed_seeds, median final test accuracy in percent, seconds (its group's training time),
    start_s (from its job's start to its first step), error, key). ``failed``: key -> error of
    those not trained or stored; ``failed_seeds``: key -> the seeds that diverged or collapsed."""

    table: pd.DataFrame
    keys: list[str]
    results_dir: Path
    failed: dict[str, str] = field(default_factory=dict)
    failed_seeds: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0

    def frame(self) -> pd.DataFrame:
        """The tidy frame (see ``store.frame``) of exactly this sweep's finished experiments."""
        done = [k for k in self.keys if k not in self.failed]
        return store.load(self.results_dir, keys=done)

    def line(self) -> str:
        """The outcome in the package's words, in the notebook and the CLI: '9 of 9 experiments
        done, 0 failed; 2 failed seeds (diverged or collapsed to chance) in 1 experiment'."""
        n, failed = len(self.table), len(self.failed)
        line = f"{n - failed} of {_count(n, 'experiment')} done, {failed} failed"
        seeds = sum(len(s) for s in self.failed_seeds.values())
        if not seeds:
            return line + "; no failed seeds"
        where = _count(len(self.failed_seeds), "experiment")
        return line + f"; {_count(seeds, 'failed seed')} (diverged or collapsed to chance) in {where}"


def _count(n: int, word: str) -> str:
    """'1 experiment', '8 experiments'."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def plan_jobs(todo: Sequence[TrainConfig], n_jobs: int) -> list[list[TrainConfig]]:
    """``todo`` split into at most ``n_jobs`` lists of whole groups with about equal cost (the
    most expensive group to the least loaded job first); empty lists dropped."""
    groups = sorted(plan_groups(todo), key=lambda g: cost(g.config), reverse=True)
    bins: list[list[TrainConfig]] = [[] for _ in range(max(1, min(n_jobs, len(groups))))]
    load = [0.0] * len(bins)
    for g in groups:
        i = load.index(min(load))
        bins[i] += g.members
        load[i] += cost(g.config)
    return [b for b in bins if b]


def _on_gpus(config: SweepConfig) -> int:
    """How many GPUs the sweep's experiments use (0: they run on a CPU)."""
    if config.scheduler:
        return 0
    device = resolve_device(config.base.device)
    if device.type != "cuda":
        return 0
    import torch

    return 1 if device.index is not None else torch.cuda.device_count()


def _tasks(
    config: SweepConfig, todo: list[TrainConfig], n_jobs: int, root: Path, data_dir: str
) -> list[jobs.JobTask]:
    """``todo`` as jobs: ``n_jobs``, or one per GPU."""
    gpus = _on_gpus(config)
    planned = plan_jobs(todo, gpus or n_jobs)
    out = []
    for i, exps in enumerate(planned):
        if gpus > 1:  # one job per device; the device is not part of an experiment's identity
            exps = [dataclasses.replace(e, device=f"cuda:{i}") for e in exps]
        out.append(
            jobs.JobTask(
                job=f"job-{uuid.uuid4().hex[:8]}",
                notebook=str(config.notebook_path().resolve()),
                results_dir=str(root),
                data_dir=data_dir,
                configs=tuple(e.to_dict() for e in exps),
                concurrency=config.concurrency,
                stall_timeout=config.stall_timeout,
            )
        )
    return out


def run_sweep(
    config: SweepConfig,
    progress: bool = True,
    log: Callable[[str], None] = tqdm.write,
    on_result: Callable[[str, dict], None] | None = None,
    on_progress: OnProgress | None = None,
) -> SweepOutcome:
    """Run every experiment of ``config`` not already done; return the per-experiment outcome.

    Checks first that the results folder is writable and has room, the data are valid, and
    (with Dask) that the scheduler answers. ``on_result(key, record)`` is called as each record
    appears, ``on_progress({key: (epoch, epochs)})`` as running experiments finish evaluations;
    ``log`` gets one line per experiment, and per finished epoch unless ``on_progress`` is given.
    """
    t0 = time.perf_counter()
    created = not os.path.lexists(config.results_dir)
    root = store.check_store(config.results_dir).resolve()
    experiments = config.experiments()
    rows: dict[str, dict] = {}
    todo = []
    for exp in experiments:
        found, problem = store.find(root, exp)
        if found is not None:
            rows[exp.key()] = jobs.row("skipped")
        else:
            if problem != "no record":
                log(f"rerunning {exp.key()}: {printable(problem)}")
            todo.append(exp)
    if rows:
        log(f"skipping {len(rows)} finished experiment(s) in {root}")
    # What killed sweeps left: their jobs' scratch folders and their writes' temporary files.
    jobs.remove_dead_scratch(root)  # also when nothing is left to run
    for kind in store.KINDS:
        store.remove_stale_temporaries(store.inside(root, root / kind))
    if todo:
        try:  # refused before any work: a folder this sweep made is not left behind
            if not config.scheduler:  # each group is one engine in one kernel of this machine
                for g in plan_groups(todo):
                    memory.check(g.config, resolve_device(g.config.device))
            need = sum(sum(store.output_bytes(c).values()) for c in todo)
            store.check_space(root, need, f"this sweep's {len(todo)} experiment(s)")
            data_dir = ""
            for dataset in dict.fromkeys(e.dataset for e in todo):
                data_dir = str(mdata.ensure(config.data_dir, dataset=dataset))
            backend = (
                DaskBackend(config.scheduler, config.worker_timeout, config.connect_timeout)
                if config.scheduler
                else LocalBackend()
            )
        except BaseException:
            if created:  # its folders, bottom up, as far as they are empty
                for folder, _, _ in os.walk(root, topdown=False):
                    with contextlib.suppress(OSError):
                        os.rmdir(folder)
            raise
        with tqdm(total=len(todo), desc="experiments", unit="exp", disable=not progress) as bar:

            def finished(key: str, record: dict) -> None:
                bar.update()
                log(experiment.finished_line(key, record))
                if on_result is not None:
                    on_result(key, record)

            def epochs(moved: dict[str, tuple[float, int]]) -> None:
                whole = {k: v for k, v in moved.items() if float(v[0]).is_integer() and v[0] > 0}
                if whole:
                    log(epoch_line(whole))

            watch = Progress(root, [e.key() for e in todo], finished, on_progress or epochs)
            rows |= _run_rounds(config, backend, todo, root, data_dir, watch, log)
        for key, row in rows.items():
            if row.get("note"):
                log(f"{key}: {row['note']}")
    tidy(root)  # empty locks/, checkpoints/ and .scratch/ go
    table, seeds = _table(root, config, experiments, rows)
    for exp in todo:  # rerun under its new key: a broken record under its legacy key is stale now
        store.retire_legacy(root, exp)
    failed = {r["key"]: r["error"] for r in table.to_dict("records") if r["status"] == "failed"}
    return SweepOutcome(table, table["key"].tolist(), root, failed, seeds, time.perf_counter() - t0)


def _run_rounds(
    config: SweepConfig,
    backend: LocalBackend | DaskBackend,
    todo: list[TrainConfig],
    root: Path,
    data_dir: str,
    watch: Progress,
    log: Callable[[str], None],
) -> dict[str, dict]:
    """Run ``todo`` as jobs; experiments another process held are waited for (``lock_timeout``
    in all, from the end of the first round) and, if that process did not finish them, run in a
    second round; those still held then fail, naming the lock and its holder."""
    rows: dict[str, dict] = {}
    by_key = {e.key(): e for e in todo}
    for round_ in range(2):
        tasks = _tasks(config, todo, config.workers or backend.slots(), root, data_dir)
        watch.jobs |= {t.job for t in tasks}
        held: dict[str, str] = {}
        for out in backend.run(tasks, watch.poll):
            rows |= out.rows
            held |= out.held
        watch.poll()
        if not held:
            break
        todo = []
        deadline = time.monotonic() + config.lock_timeout
        for key, who in held.items():
            log(f"{key} is held by {who}; waiting up to {config.lock_timeout:g} s for it (--lock-timeout)")
        for key in held:
            if not wait_free(root, key, deadline - time.monotonic()):
                error = (
                    f"its lock {store.path(root, 'locks', key)} is held by {store.owner(root, key)}, still "
                    f"after {config.lock_timeout:g} s (--lock-timeout): a stopped or hung sweep? end that "
                    "process, or wait, and rerun"
                )
                rows[key] = jobs.row("failed", error)
                continue
            found, why = store.find(root, by_key[key])
            if found is not None:
                rows[key] = jobs.row("skipped")
            elif round_ == 0:
                todo.append(by_key[key])
            else:
                error = f"another sweep held it and did not finish it ({why}); rerun to run it"
                rows[key] = jobs.row("failed", error)
        if not todo:
            break
    return rows


def _table(
    root: Path, config: SweepConfig, experiments: list[TrainConfig], rows: dict[str, dict]
) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """The sweep's table (see ``SweepOutcome``) and the failed seeds of those that finished with some."""
    out, seeds = [], {}
    for exp in experiments:
        r = rows.get(exp.key()) or jobs.row("failed", "not run (the sweep stopped)")
        found, why = store.find(root, exp)
        record = found.record if found is not None else None
        key = found.key if found is not None else exp.key()  # a legacy key where a store holds one
        status, error = r["status"], r.get("error") or ""
        if record is None and status != "failed":  # gone or broken since it was run
            status, error = "failed", f"its stored files do not check out: {why}"
        if record is not None and (bad := failed_seeds(record)):
            seeds[key] = bad
        out.append(
            experiment.table_row(exp, config.grid, status, record)
            | {
                "seconds": round(float(r.get("seconds") or 0.0), 1),
                "start_s": round(float(r.get("start_seconds", float("nan"))), 2),
                "error": error,
                "key": key,
            }
        )
    return pd.DataFrame(out), seeds
