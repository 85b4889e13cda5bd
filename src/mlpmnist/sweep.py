"""A resumable sweep over any grid of ``TrainConfig`` fields: one papermill-executed experiment
notebook per grid point, the seeds of each point stacked as replicas of one engine.

Experiments run in a local process pool, or on an existing Dask distributed cluster. Files are
named by each experiment's key (see ``results``), so sweeps of different configs share a results
directory; a per-experiment lock means the same experiment never runs twice at once, and a
rerun skips every experiment already done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from . import data as mdata
from . import experiment, results
from .config import TrainConfig, check_names

#: The reference study's batch sizes: the default grid.
REFERENCE_BATCH_SIZES: tuple[int, ...] = (8, 16, 32, 48, 64, 90, 128, 150)
#: Examples' worth of work that one SGD step costs beyond its examples (dispatch, small GEMMs);
#: it makes small batches the long pole. Only the order of experiments depends on it.
STEP_OVERHEAD_EXAMPLES = 40


class SweepError(RuntimeError):
    """The sweep as a whole cannot go on (no workers, scheduler lost, a worker process died)."""


def _default_grid() -> dict[str, tuple]:
    return {"batch_size": REFERENCE_BATCH_SIZES}


@dataclass(frozen=True)
class SweepConfig:
    """``base`` with each combination of ``grid``'s values (field name -> values), one experiment each.

    ``workers`` local processes run experiments in parallel unless ``scheduler`` names a Dask
    scheduler. With Dask, the sweep ends with an error after ``worker_timeout`` seconds without
    any connected worker.
    """

    base: TrainConfig = field(default_factory=TrainConfig)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=_default_grid)
    results_dir: str | os.PathLike = "results"
    data_dir: str | os.PathLike | None = None
    workers: int = 2
    scheduler: str | None = None
    worker_timeout: float = 60.0
    notebook: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.base, TrainConfig):
            raise ValueError(f"base must be a TrainConfig; got {self.base!r}")
        if not isinstance(self.grid, Mapping):
            raise ValueError(f"grid must be a dict of TrainConfig field -> list of values; got {self.grid!r}")
        check_names(self.grid, "grid axis")
        grid = {}
        for name, values in self.grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ValueError(f"grid axis {name} must be a non-empty list of values; got {values!r}")
            vals = tuple(tuple(v) if isinstance(v, list) else v for v in values)
            if len(set(vals)) != len(vals):
                raise ValueError(f"grid axis {name} must not repeat a value; got {list(values)!r}")
            grid[name] = vals
        object.__setattr__(self, "grid", grid)
        if not (isinstance(self.workers, int) and not isinstance(self.workers, bool) and self.workers >= 1):
            raise ValueError(f"workers must be an integer >= 1; got {self.workers!r}")
        if not (isinstance(self.worker_timeout, (int, float)) and self.worker_timeout > 0):
            raise ValueError(f"worker_timeout must be a number of seconds > 0; got {self.worker_timeout!r}")
        nb = self.notebook_path()
        if not nb.is_file():
            raise ValueError(f"notebook {nb} not found; pass notebook=... (an experiment notebook)")
        self.experiments()  # every grid point validated before anything runs

    def notebook_path(self) -> Path:
        return Path(self.notebook) if self.notebook else experiment.notebook_path()

    def threads_per_worker(self) -> int:
        """Torch threads per experiment: the base config's, or the cores split among the workers."""
        return self.base.threads or max(1, (os.cpu_count() or 1) // self.workers)

    def experiments(self) -> list[TrainConfig]:
        """One ``TrainConfig`` per grid point, in grid order (the last axis varies fastest)."""
        names = list(self.grid)
        base = (
            self.base
            if self.scheduler or self.base.threads
            else dataclasses.replace(self.base, threads=self.threads_per_worker())
        )
        return [
            dataclasses.replace(base, **dict(zip(names, point, strict=True)))
            for point in itertools.product(*self.grid.values())
        ]


def expected_cost(config: TrainConfig) -> float:
    """Relative cost of an experiment: replicas x epochs x (examples + a per-step overhead)."""
    per_epoch = config.n_train + STEP_OVERHEAD_EXAMPLES * config.steps_per_epoch
    return len(config.seeds) * config.epochs * per_epoch


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one experiment notebook (plain, picklable values)."""

    notebook: str
    results_dir: str
    key: str
    config: dict
    data_dir: str


@dataclass
class SweepOutcome:
    """``table``: one row per experiment (grid values, status done/skipped/failed, replicas,
    collapsed, median final test accuracy in percent, seconds, start_s: seconds from the task's
    start to its first SGD step, error). ``keys``: the sweep's
    experiments, in grid order. ``failed``: key -> error; ``collapsed``: key -> seeds."""

    table: pd.DataFrame
    keys: list[str]
    results_dir: Path
    failed: dict[str, str] = field(default_factory=dict)
    collapsed: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0

    def frame(self) -> pd.DataFrame:
        """The tidy frame (see ``results.frame``) of exactly this sweep's finished experiments."""
        done = [k for k in self.keys if k not in self.failed]
        return results.load(self.results_dir, keys=done)


# ------------------------------------------------------------------------ one experiment


def execute_task(task: Task) -> dict:
    """Run one experiment notebook with papermill, holding the experiment's lock.

    Returns a plain outcome dict (key, status done/skipped/failed, seconds, error, collapsed);
    never raises for a failing experiment (its error is returned and written to ``failed/``).
    """
    from filelock import FileLock

    t0, started_at = time.perf_counter(), time.time()
    root = Path(task.results_dir)
    config = TrainConfig.from_mapping(task.config)
    lock = results.path(root, "locks", task.key)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock):
        if results.is_done(root, config):  # another sweep ran it while we waited
            return {"key": task.key, "status": "skipped", "seconds": 0.0, "error": None, "collapsed": []}
        results.path(root, "failed", task.key).unlink(missing_ok=True)
        error = _execute_notebook(task, root)
        collapsed: list[int] = []
        start = float("nan")
        seconds = time.perf_counter() - t0
        if error is None:
            run = results.path(root, "runs", task.key)
            record = results.read_record(run)
            collapsed = record["collapsed"]
            start = record["first_step_at"] - started_at
            # How long the whole experiment took, and how much of it came before the first step.
            record["sweep"] = {"seconds": seconds, "start_seconds": start}
            results.write_record(record, run)
    outcome = {
        "key": task.key,
        "status": "failed" if error else "done",
        "seconds": seconds,
        "start_seconds": start,
        "error": error,
        "collapsed": collapsed,
    }
    if error:
        results.atomic_write_text(
            results.path(root, "failed", task.key), json.dumps({**outcome, "config": task.config}, indent=1)
        )
    return outcome


def _scratch(root: Path, key: str) -> Path:
    return root / ".scratch" / key


def _execute_notebook(task: Task, root: Path) -> str | None:
    """Execute the notebook into a scratch folder, then move it into place. Returns the error."""
    import papermill as pm

    final = results.path(root, "notebooks", task.key)
    # papermill rewrites its output after every cell: keep partial files out of notebooks/. The
    # scratch folder belongs to this key, whose lock we hold, so leftovers of a killed run go too.
    scratch = _scratch(root, task.key)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    log = results.path(root, "logs", task.key)
    log.parent.mkdir(parents=True, exist_ok=True)
    error = None
    try:
        with open(log, "w") as log_file:
            pm.execute_notebook(
                task.notebook,
                str(scratch / final.name),
                parameters={
                    "config": task.config,
                    "data_dir": task.data_dir,
                    "results_dir": str(root),
                    "check_data": False,  # run_sweep checked the files once
                },
                kernel_name="python3",
                progress_bar=False,
                # No cwd=: papermill's chdir is process-wide, and a Dask worker runs several tasks.
                kernel_manager_class=_logging_kernel_manager(log_file),
            )
    except Exception as e:  # PapermillExecutionError carries the cell's exception
        error = _short_error(e)
    finally:
        try:
            partial = scratch / final.name
            if partial.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                results.atomic_write_bytes(final, partial.read_bytes())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return error


def _logging_kernel_manager(log_file: Any) -> type:
    """A kernel manager class whose kernels write their own stdout/stderr to ``log_file``, so
    each experiment's log holds exactly its kernel's messages, whatever runs beside it."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggingKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw.setdefault("stdout", log_file)
            kw.setdefault("stderr", log_file)
            await super().start_kernel(**kw)

    return LoggingKernelManager


def _short_error(e: BaseException) -> str:
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------ runners


# nbclient takes SIGTERM and SIGINT while a notebook runs (to shut its kernel down, not to
# exit), so the sweep stops its pool workers with a signal of its own.
STOP_SIGNAL = signal.SIGUSR1


def _die_with_parent(parent: int) -> None:
    """Pool worker initializer: stop on ``STOP_SIGNAL``, which the kernel also sends when the
    sweep's process dies, even by SIGKILL; Ctrl-C is left to the sweep's process."""
    import ctypes

    def _stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds, so scratch folders and kernels are cleaned up

    signal.signal(STOP_SIGNAL, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):  # prctl is Linux's
        ctypes.CDLL(None, use_errno=True).prctl(1, STOP_SIGNAL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _pool_task(task: Task) -> dict:
    """``execute_task`` in a pool worker, which exits once a stop has unwound the experiment
    (the pool would otherwise catch the SystemExit and wait for more work from a dead parent)."""
    try:
        return execute_task(task)
    except SystemExit as e:
        shutil.rmtree(_scratch(Path(task.results_dir), task.key), ignore_errors=True)
        os._exit(e.code if isinstance(e.code, int) else 1)


def _local(tasks: list[Task], workers: int) -> Iterator[dict]:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    futures = {pool.submit(_pool_task, t): t for t in tasks}
    finished = False
    try:
        for f in as_completed(futures):
            try:
                yield f.result()
            except BrokenProcessPool as e:
                raise SweepError(
                    f"a worker process died while running {futures[f].key} (killed, or out of memory); "
                    "finished experiments are kept, rerun to resume"
                ) from e
        finished = True
    finally:
        if not finished:  # an error or Ctrl-C: stop the running experiments too
            for p in list(getattr(pool, "_processes", {}).values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, STOP_SIGNAL)
        pool.shutdown(wait=True, cancel_futures=True)


def _dask(tasks: list[Task], address: str, worker_timeout: float) -> Iterator[dict]:
    from distributed import Client, wait

    try:
        client = Client(address, timeout=min(worker_timeout, 10))
    except (OSError, TimeoutError) as e:
        raise ValueError(
            f"cannot reach the Dask scheduler at {address} ({e}); start it or fix --scheduler"
        ) from e
    with client:
        futures = client.map(execute_task, tasks, pure=False)
        by_future = dict(zip(futures, tasks, strict=True))
        pending = set(futures)
        while pending:
            try:
                done, pending = wait(pending, timeout=worker_timeout, return_when="FIRST_COMPLETED")
            except TimeoutError:  # nothing finished in that time: is anyone still working?
                done = set()
            except Exception as e:  # the scheduler went away (closed comm, cancelled futures)
                left = sorted(by_future[f].key for f in pending)
                raise SweepError(
                    f"lost the Dask scheduler at {address} ({type(e).__name__}); "
                    f"not done: {', '.join(left)}; finished experiments are kept, rerun to resume"
                ) from e
            for f in done:
                if f.status == "error" or f.status == "cancelled":
                    yield _lost(by_future[f].key, f.exception() if f.status == "error" else "cancelled")
                else:
                    yield f.result()
            if not done:
                try:
                    client.wait_for_workers(1, timeout=worker_timeout)
                except (TimeoutError, OSError) as e:
                    left = sorted(by_future[f].key for f in pending)
                    raise SweepError(
                        f"no Dask worker for {worker_timeout:g} s at {address} ({type(e).__name__}); "
                        f"not done: {', '.join(left)}; finished experiments are kept, rerun to resume"
                    ) from e


def _lost(key: str, error: object) -> dict:
    return {"key": key, "status": "failed", "seconds": 0.0, "error": f"Dask: {error}", "collapsed": []}


def run_sweep(
    config: SweepConfig, progress: bool = True, log: Callable[[str], None] = tqdm.write
) -> SweepOutcome:
    """Run every experiment of ``config`` not already done; return the per-experiment outcome.

    Checks first that the results directory is writable and MNIST is present and valid. The
    most expensive experiments start first, so the workers finish together.
    """
    t0 = time.perf_counter()
    root = results.writable_folder(config.results_dir, "results folder").resolve()
    data_dir = str(mdata.ensure(config.data_dir))
    experiments = config.experiments()
    keys = [e.key() for e in experiments]
    rows: dict[str, dict] = {}
    tasks = []
    for exp in sorted(experiments, key=expected_cost, reverse=True):
        if results.is_done(root, exp):
            rows[exp.key()] = {"key": exp.key(), "status": "skipped", "seconds": 0.0, "error": None}
        else:
            tasks.append(
                Task(str(config.notebook_path().resolve()), str(root), exp.key(), exp.to_dict(), data_dir)
            )
    if rows:
        log(f"skipping {len(rows)} finished experiment(s) in {root}")
    if tasks:
        stream = (
            _dask(tasks, config.scheduler, config.worker_timeout)
            if config.scheduler
            else _local(tasks, config.workers)
        )
        with tqdm(total=len(tasks), desc="experiments", unit="exp", disable=not progress) as bar:
            for out in stream:
                rows[out["key"]] = out
                bar.update()
                log(_finished_line(root, out))
    table = _table(root, config, experiments, rows)
    failed = {k: r["error"] for k, r in rows.items() if r.get("error")}
    collapsed = {r["key"]: list(r["collapsed"]) for r in table.to_dict("records") if r["collapsed"]}
    return SweepOutcome(table, keys, root, failed, collapsed, time.perf_counter() - t0)


def _record(root: Path, key: str) -> dict | None:
    p = results.path(root, "runs", key)
    return results.read_record(p) if p.is_file() else None


def _median_final(record: dict | None) -> float:
    if record is None:
        return float("nan")
    finals = [
        r["history"][-1]["test_acc"] for r in record["replicas"] if r["history"] and r["status"] != "diverged"
    ]
    finals = [v for v in finals if v is not None]
    return 100 * float(pd.Series(finals).median()) if finals else float("nan")


def _finished_line(root: Path, out: dict) -> str:
    if out["error"]:
        return f"{out['key']}: FAILED: {out['error']} ({out['seconds']:.1f} s)"
    record = _record(root, out["key"])
    flag = f", {len(out['collapsed'])} seed(s) collapsed" if out.get("collapsed") else ""
    return f"{out['key']}: median final test acc {_median_final(record):.2f}%{flag} ({out['seconds']:.1f} s)"


def _table(
    root: Path, config: SweepConfig, experiments: list[TrainConfig], rows: dict[str, dict]
) -> pd.DataFrame:
    out = []
    for exp in experiments:
        r = rows[exp.key()]
        record = _record(root, exp.key())
        collapsed = record["collapsed"] if record and "collapsed" in record else []
        out.append(
            {
                **{name: getattr(exp, name) for name in config.grid},
                "status": r["status"],
                "replicas": len(exp.seeds),
                "collapsed": collapsed,
                "median_test_acc_%": round(_median_final(record), 2),
                "seconds": round(r["seconds"], 1),
                "start_s": round(r.get("start_seconds", float("nan")), 2),
                "error": r["error"] or "",
                "key": exp.key(),
            }
        )
    return pd.DataFrame(out)
