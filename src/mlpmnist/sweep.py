"""A resumable sweep over batch sizes: one papermill-executed experiment notebook each.

Every experiment leaves two files in the results directory: the executed notebook
(``notebooks/batchNNNN.ipynb``) and its JSON run record (``runs/batchNNNN.json``), plus the
final weights (``models/batchNNNN.pt``). All are written atomically, so an interrupted sweep
keeps every finished experiment and a rerun skips them. Experiments run in a local process
pool, or on an existing Dask distributed cluster when a scheduler address is given.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from . import data as mdata
from .results import (
    RUNS_DIR,
    atomic_write_text,
    frame,
    make_record,
    models_path,
    read_record,
    save_models,
    write_record,
)
from .train import TrainConfig, train

NOTEBOOKS_DIR = "notebooks"
FAILED_DIR = "failed"
LOGS_DIR = "logs"
# TrainConfig fields that only say where and how fast a run goes, not what it computes.
EXECUTION_FIELDS = ("device", "threads")
# The experiment notebook's parameters cell, besides data_dir and out_dir.
NOTEBOOK_PARAMS = (
    "batch_size",
    "epochs",
    "seeds",
    "lr",
    "hidden",
    "momentum",
    "engine",
    "device",
    "threads",
    "train_limit",
)


def default_notebook() -> Path:
    """The experiment notebook of a source checkout (``notebooks/experiment.ipynb``)."""
    return Path(__file__).resolve().parents[2] / "notebooks" / "experiment.ipynb"


def run_path(results_dir: str | os.PathLike, batch_size: int) -> Path:
    return Path(results_dir) / RUNS_DIR / f"batch{batch_size:04d}.json"


def notebook_path(results_dir: str | os.PathLike, batch_size: int) -> Path:
    return Path(results_dir) / NOTEBOOKS_DIR / f"batch{batch_size:04d}.ipynb"


def failure_path(results_dir: str | os.PathLike, batch_size: int) -> Path:
    return Path(results_dir) / FAILED_DIR / f"batch{batch_size:04d}.json"


def log_path(results_dir: str | os.PathLike, batch_size: int) -> Path:
    """The experiment's stderr: papermill's and the kernel's own messages."""
    return Path(results_dir) / LOGS_DIR / f"batch{batch_size:04d}.log"


# --- one experiment, as the experiment notebook runs it -------------------------------------


def experiment_config(
    batch_size: int,
    epochs: int,
    seeds: list[int],
    lr: float,
    hidden: list[int],
    momentum: float = 0.0,
    engine: str = "fast",
    device: str = "auto",
    threads: int | None = None,
    train_limit: int | None = None,
) -> TrainConfig:
    """The experiment notebook's parameters as a validated ``TrainConfig`` (raises ValueError)."""
    return TrainConfig(
        batch_size=batch_size,
        epochs=epochs,
        seeds=seeds,
        lr=lr,
        hidden=hidden,
        momentum=momentum,
        engine=engine,
        device=device,
        threads=threads,
        train_limit=train_limit,
    )


def run_experiment(
    config: TrainConfig, data_dir: str | None, out_dir: str | os.PathLike, progress: bool = True
) -> dict:
    """Train ``config``, then atomically write its run record and final weights under ``out_dir``.

    Returns the record (see ``results.make_record``); its ``error`` names diverged seeds.
    """
    result = train(config, mdata.load(data_dir), progress=progress)
    record = make_record(result)
    save_models(result, models_path(out_dir, config.batch_size))
    write_record(record, run_path(out_dir, config.batch_size))
    return record


def check_record(record: dict) -> None:
    """Raise ``RuntimeError`` with the record's error, so papermill marks the experiment failed."""
    if record.get("error"):
        raise RuntimeError(record["error"])


# --- the sweep ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepConfig:
    """A sweep over ``batch_sizes``; the other fields are shared by every experiment."""

    batch_sizes: tuple[int, ...] = (8, 16, 32, 48, 64, 90, 128, 150)
    epochs: int = 15
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    lr: float = 0.1
    hidden: tuple[int, ...] = (64, 64)
    momentum: float = 0.0
    engine: str = "fast"
    device: str = "auto"
    threads: int | None = None
    train_limit: int | None = None
    data_dir: str | None = None
    results_dir: str | os.PathLike = "results"
    workers: int = 2
    scheduler: str | None = None
    notebook: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.batch_sizes, (list, tuple)):
            raise ValueError(f"batch_sizes must be a list of integers; got {self.batch_sizes!r}")
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        if not self.batch_sizes or len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise ValueError(
                f"batch_sizes must be a non-empty list without repeats; got {self.batch_sizes!r}"
            )
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1; got {self.workers!r}")
        for bs in self.batch_sizes:
            self.experiment(bs)  # validates every experiment before anything runs
        nb = Path(self.notebook) if self.notebook else default_notebook()
        if not nb.is_file():
            raise ValueError(f"notebook {nb} not found; pass notebook=... (the experiment notebook)")

    def threads_per_worker(self) -> int:
        """Torch threads per experiment: given, or the cores split among the workers."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)

    def experiment(self, batch_size: int) -> TrainConfig:
        return experiment_config(
            batch_size,
            self.epochs,
            list(self.seeds),
            self.lr,
            list(self.hidden),
            self.momentum,
            self.engine,
            self.device,
            self.threads_per_worker(),
            self.train_limit,
        )


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one experiment notebook (plain, picklable values)."""

    notebook: str
    results_dir: str
    batch_size: int
    parameters: dict
    data_dir: str | None


@dataclass
class SweepOutcome:
    """``table``: one row per batch size (status done/skipped/failed, final test accuracy mean
    and std in percent, seconds). ``failed``: batch size -> error message."""

    table: pd.DataFrame
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in EXECUTION_FIELDS}


def is_done(results_dir: str | os.PathLike, config: TrainConfig) -> bool:
    """True when a finished, error-free record for ``config`` and its notebook both exist."""
    path = run_path(results_dir, config.batch_size)
    if not path.is_file() or not notebook_path(results_dir, config.batch_size).is_file():
        return False
    try:
        record = read_record(path)
    except ValueError:
        return False
    return not record.get("error") and _comparable(record["config"]) == _comparable(config.to_dict())


def execute_task(task: Task) -> dict:
    """Run one experiment notebook with papermill. Returns a plain outcome dict; never raises
    for a failing experiment (its error is returned and written to ``failed/``)."""
    import papermill as pm

    t0 = time.perf_counter()
    results = Path(task.results_dir)
    final_nb = notebook_path(results, task.batch_size)
    failure_path(results, task.batch_size).unlink(missing_ok=True)
    # papermill rewrites its output after every cell: keep that partial file out of results/.
    with tempfile.TemporaryDirectory(prefix="mlpmnist-") as tmp:
        tmp_nb = Path(tmp) / final_nb.name
        error = None
        try:
            with _stderr_to(log_path(results, task.batch_size)):
                pm.execute_notebook(
                    task.notebook,
                    str(tmp_nb),
                    parameters=task.parameters,
                    kernel_name="python3",
                    progress_bar=False,
                    cwd=str(Path(task.notebook).parent),
                )
        except Exception as e:  # PapermillExecutionError carries the cell's exception
            error = _short_error(e)
        if tmp_nb.exists():
            final_nb.parent.mkdir(parents=True, exist_ok=True)
            staged = final_nb.with_name(f".{final_nb.name}.tmp")
            shutil.copyfile(tmp_nb, staged)
            os.replace(staged, final_nb)
    outcome = {"batch_size": task.batch_size, "seconds": time.perf_counter() - t0, "error": error}
    if error:
        atomic_write_text(
            failure_path(results, task.batch_size),
            json.dumps({**outcome, "parameters": task.parameters, "notebook": str(final_nb)}, indent=1),
        )
    return outcome


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send this process's file descriptor 2 (and so the kernel's, which inherits it) to ``path``.

    The kernel's own messages (start-up warnings, C++ logs) then land in a per-experiment log
    instead of the caller's notebook. Process-wide: run one experiment per worker process.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "w") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _short_error(e: Exception) -> str:
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return "".join(traceback.format_exception_only(type(e), e)).strip()


def _local(tasks: list[Task], workers: int) -> Iterator[dict]:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        futures = [pool.submit(execute_task, t) for t in tasks]
        for f in as_completed(futures):
            yield f.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _dask(tasks: list[Task], address: str) -> Iterator[dict]:
    from distributed import Client, as_completed

    with Client(address) as client:
        futures = client.map(execute_task, tasks, pure=False)
        for f in as_completed(futures):
            yield f.result()


def run_sweep(
    config: SweepConfig, progress: bool = True, log: Callable[[str], None] = tqdm.write
) -> SweepOutcome:
    """Run every batch size of ``config`` not already done; return the per-experiment table.

    Experiments run largest-cost first (small batches take longest) so workers finish together.
    """
    t0 = time.perf_counter()
    results = Path(config.results_dir)
    notebook = str(Path(config.notebook or default_notebook()).resolve())
    # Absolute, because the notebooks run with their own directory as the working directory.
    data_dir = str(mdata.resolve_root(config.data_dir).resolve())
    rows, tasks = {}, []
    for bs in sorted(config.batch_sizes):
        exp = config.experiment(bs)
        if is_done(results, exp):
            rows[bs] = {"batch_size": bs, "status": "skipped", "seconds": 0.0, "error": None}
            continue
        params = {k: v for k, v in exp.to_dict().items() if k in NOTEBOOK_PARAMS}
        params.update(data_dir=data_dir, out_dir=str(results.resolve()))
        tasks.append(Task(notebook, str(results.resolve()), bs, params, data_dir))
    if rows:
        log(f"skipping {len(rows)} finished experiment(s): batch sizes {sorted(rows)}")
    stream = _dask(tasks, config.scheduler) if config.scheduler else _local(tasks, config.workers)
    with tqdm(total=len(tasks), desc="experiments", unit="exp", disable=not progress) as bar:
        for out in stream:
            bs = out["batch_size"]
            rows[bs] = {**out, "status": "failed" if out["error"] else "done"}
            bar.update()
            log(_finished_line(results, rows[bs]))
    table = _table(results, [rows[bs] for bs in sorted(rows)])
    failed = {r["batch_size"]: r["error"] for r in rows.values() if r["error"]}
    return SweepOutcome(table=table, failed=failed, seconds=time.perf_counter() - t0)


def _final_acc(results: Path, batch_size: int) -> tuple[float, float]:
    path = run_path(results, batch_size)
    if not path.is_file():
        return float("nan"), float("nan")
    df = frame([read_record(path)])
    last = df[(df["epoch"] == df["epoch"].max()) & ~df["diverged"]]["test_acc"]
    return 100 * last.mean(), 100 * last.std()


def _finished_line(results: Path, row: dict) -> str:
    mean, _ = _final_acc(results, row["batch_size"])
    status = f"FAILED: {row['error']}" if row["error"] else f"final test acc {mean:.2f}%"
    return f"batch {row['batch_size']:>4}: {status} ({row['seconds']:.1f} s)"


def _table(results: Path, rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        mean, sd = _final_acc(results, r["batch_size"])
        out.append(
            {
                "batch_size": r["batch_size"],
                "status": r["status"],
                "test_acc_%": round(mean, 2),
                "sd": round(sd, 2),
                "seconds": round(r["seconds"], 1),
                "error": r["error"] or "",
            }
        )
    return pd.DataFrame(out)
