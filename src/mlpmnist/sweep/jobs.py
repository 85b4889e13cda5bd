"""One job: a sweep's share of its experiments, run as one executed experiment notebook.

In a thread of the sweep's process or of a Dask worker, a job holds the lock of every experiment
it runs, runs the notebook with papermill in ``.scratch/<job>/``, kills a kernel whose heartbeat
stopped, and gives every experiment a copy of the executed notebook and of the kernel's log. A
record has one writer, the kernel; the job only reads it. Its kernel runs this very interpreter
and this mlpmnist, its output goes to the job's log, and it is killed with the job's thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpmnist import store
from mlpmnist.config import TrainConfig
from mlpmnist.errors import StoreError, printable
from mlpmnist.store.locks import Claims, alive, owner
from mlpmnist.sweep.experiment import cannot, heartbeat_path

#: Seconds between two looks of the watchdog at the kernel's heartbeat.
WATCH_S = 1.0
#: Seconds a kernel may take to start and import before its first heartbeat, at least.
START_S = 120.0


@dataclass(frozen=True)
class JobTask:
    """Everything a job needs, picklable: its experiments as ``TrainConfig.to_dict()``, the
    seconds without a heartbeat after which its kernel is hung, and (on Dask) the name of the
    ``distributed.Event`` that stops it."""

    job: str
    notebook: str
    results_dir: str
    data_dir: str
    configs: tuple[dict, ...]
    concurrency: int | None = None
    stall_timeout: float = 300.0
    stop_event: str | None = None

    @property
    def keys(self) -> list[str]:
        return [TrainConfig.from_mapping(c).key() for c in self.configs]


@dataclass
class JobOutcome:
    """``rows``: key -> ``row`` of each experiment the job settled; ``held``: key -> who holds its
    lock, for those left to another process."""

    job: str
    rows: dict[str, dict] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)


def row(status: str, error: str | None = None) -> dict:
    """An experiment's row (status done, skipped or failed) before its times are known."""
    return {"status": status, "seconds": 0.0, "start_seconds": math.nan, "error": error}


class Watchdog:
    """Around the notebook's execution: kills the job's kernel when ``stop`` is set (interrupted)
    or its heartbeat is older than ``stall_timeout`` seconds (before the first beat, at least
    ``START_S``); ``reason`` says which."""

    def __init__(self, heartbeat: Path, managers: list, stall_timeout: float, stop: threading.Event) -> None:
        self.heartbeat, self.managers, self.stop = heartbeat, managers, stop
        self.stall_timeout = stall_timeout
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._start = time.time()

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(WATCH_S):
            if self.stop.is_set():
                self.reason = "interrupted"
            else:
                try:
                    last, limit = self.heartbeat.stat().st_mtime, self.stall_timeout
                except OSError:  # not beating yet: the kernel starts and imports
                    last, limit = self._start, max(self.stall_timeout, START_S)
                if time.time() - last > limit:
                    self.reason = (
                        f"its kernel gave no sign of life for {limit:g} s (hung or stopped) and was "
                        "killed; raise --stall-timeout if it only runs slowly"
                    )
            if self.reason:
                kill(self.managers)
                return


def execute(task: JobTask, stop: threading.Event | None = None) -> JobOutcome:
    """Run ``task``: take its experiments' locks (those another process holds go to ``held``),
    skip those done, run the rest in one notebook, then settle each. Never raises for a failing
    experiment, kernel or file: its error is in the outcome and in ``failed/<key>.json``."""
    root, out = Path(task.results_dir), JobOutcome(task.job)
    scratch = root / ".scratch" / task.job  # its partial notebook, kernel log and heartbeat
    stop, ended = stop or threading.Event(), threading.Event()
    if task.stop_event:
        with contextlib.suppress(Exception):  # no client: the job runs on, as it would have
            _remote_stop(task.stop_event, stop, ended)
    try:
        with Claims(root, task.job) as claims:
            run = _claim(task, root, claims, out)
            if run and not stop.is_set():
                _run(task, root, scratch, run, stop, out)
    except (OSError, StoreError) as e:  # its scratch folder, a lock file: not one experiment's
        for key in task.keys:
            if key not in out.rows and key not in out.held:
                out.rows[key] = row("failed", store.write_failure(root, key, cannot(e), job=task.job))
    finally:
        ended.set()
        with contextlib.suppress(OSError, StoreError):
            store.remove(root, scratch)
    return out


def _remote_stop(name: str, stop: threading.Event, ended: threading.Event) -> None:
    """On a Dask worker: a thread that sets ``stop`` when the sweep (interrupted) sets the
    ``distributed.Event`` ``name``; it ends then or when ``ended`` is set. A lost scheduler is
    not a stop."""
    from distributed import Event, get_client

    # The worker's client is found from the task's own thread only, so it is taken here.
    event = Event(name, client=get_client())

    def watch() -> None:
        while not (stop.is_set() or ended.is_set()):
            try:
                if event.wait(timeout=WATCH_S):
                    stop.set()
            except Exception:  # the scheduler is gone, or busy: look again later
                ended.wait(5 * WATCH_S)

    threading.Thread(target=watch, name="remote-stop", daemon=True).start()


def _claim(task: JobTask, root: Path, claims: Claims, out: JobOutcome) -> list[TrainConfig]:
    """The experiments of ``task`` this job runs: locked by it and not done; held ones go to
    ``out.held``, done ones (finished while it waited) to ``out.rows`` as skipped."""
    run = []
    for c in task.configs:
        config = TrainConfig.from_mapping(c)
        key = config.key()
        if not claims.take(key):
            out.held[key] = owner(root, key)
        elif store.find(root, config)[0] is not None:
            out.rows[key] = row("skipped")
            claims.release(key)
        else:
            run.append(config)
    return run


def _run(
    task: JobTask, root: Path, scratch: Path, run: list[TrainConfig], stop: threading.Event, out: JobOutcome
) -> None:
    """Execute the notebook for ``run`` (this job holds their locks) in ``scratch``, then settle
    each into ``out.rows``."""
    import papermill as pm

    t0, started_at = time.perf_counter(), time.time()
    store.remove(root, scratch)
    scratch.mkdir(parents=True)
    store.inside(root, scratch)
    store.atomic_write_text(
        scratch / "owner.json", json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    )
    for config in run:
        store.clear_failure(root, config.key())
    output, log = scratch / f"{task.job}.ipynb", scratch / "kernel.log"
    managers: list = []
    error = None
    with (
        open(log, "w") as log_file,
        Watchdog(heartbeat_path(root, task.job), managers, task.stall_timeout, stop) as dog,
    ):
        try:
            _in_job.active = True
            pm.execute_notebook(
                # papermill formats both paths with str.format: braces in a folder's name are text.
                _literal(task.notebook),
                _literal(str(output)),
                parameters={
                    "configs": [c.to_dict() for c in run],
                    "data_dir": task.data_dir,
                    "results_dir": str(root),
                    "check_data": False,  # the sweep checked the files once
                    "job": task.job,
                    "concurrency": task.concurrency,
                },
                kernel_name="python3",
                progress_bar=False,
                # No cwd=: papermill's chdir is process-wide, and a Dask worker runs several jobs.
                kernel_manager_class=kernel_manager(log_file, managers),
            )
        except Exception as e:  # PapermillExecutionError carries the cell's exception
            error = _short_error(e)
        finally:
            _in_job.active = False
            kill(managers)  # normally gone already; after an error, never left behind
    for config in run:
        settled = _settle(root, config, task.job, dog.reason or error, output, log, started_at)
        out.rows[config.key()] = settled | {"seconds": settled.get("seconds") or time.perf_counter() - t0}


def _literal(p: str) -> str:
    """``p`` as a ``str.format`` pattern that formats to ``p`` itself (papermill formats its
    paths with the notebook's parameters)."""
    return p.replace("{", "{{").replace("}", "}}")


_in_job = threading.local()
# Papermill's (and nbclient's) records from a thread running a job ('Kernel died while waiting...')
# are dropped: the job says what happened in each experiment's one line.
logging.getLogger("papermill").addFilter(lambda record: not getattr(_in_job, "active", False))


def _short_error(e: BaseException) -> str:
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _error_for(key: str, root: Path, job: str, notebook_error: str | None, log: Path) -> str:
    """Why ``key`` failed: the kernel's failure file, its line in the notebook's error, or that
    error (a kernel that died while starting: with its log's last line)."""
    failure = store.read_failure(root, key)
    if failure is not None and failure.get("job") == job:
        return str(failure["error"])
    for line in (notebook_error or "").splitlines():
        if line.startswith(f"{key}: "):
            return printable(line[len(key) + 2 :])
    if notebook_error and "Kernel died before replying" in notebook_error:
        last = last_line(log)
        said = f": its log ends with {last!r}" if last else " (its log is empty)"
        return f"its kernel ({sys.executable}) died while starting{said}"
    if notebook_error and notebook_error.startswith("DeadKernelError"):
        return "its kernel died (killed, or out of memory)"
    return printable(notebook_error or "the notebook ended without its record")


def last_line(log: Path) -> str:
    """The last non-empty line of the text file ``log`` (its last 4 kB), control characters
    escaped; '' when there is none or it cannot be read."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [x.strip() for x in f.read().decode("utf-8", "replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return printable(lines[-1][:300]) if lines else ""


def _settle(
    root: Path,
    config: TrainConfig,
    job: str,
    notebook_error: str | None,
    output: Path,
    log: Path,
    started: float,
) -> dict:
    """``config``'s row after its job's notebook ended, its notebook and log kept as provenance:
    done when the store trusts a record this job's kernel wrote; else failed, and
    ``failed/<key>.json`` says why."""
    key = config.key()
    lost = []  # a failed experiment keeps its notebook and log too: they show where it broke
    for source, kind in ((output, "notebooks"), (log, "logs")):
        try:
            if source.is_file():
                store.atomic_write_bytes(store.path(root, kind, key), source.read_bytes())
        except (OSError, StoreError) as e:  # a full disk, a FIFO in the way: the results stand
            lost.append(f"its {kind[:-1]} was not kept: {cannot(e)}")
    found, _ = store.find(root, config)
    if found is None or (found.record.get("job") or {}).get("id") != job:
        error = _error_for(key, root, job, notebook_error, log)
        if not output.parent.is_dir():
            error = f"its job's folder {output.parent} vanished (results folder deleted or moved?)"
        return row("failed", store.write_failure(root, key, error, job=job, config=config.to_dict()))
    done = row("done") | {"seconds": found.record.get("seconds"), "note": "; ".join(lost) or None}
    if found.record.get("first_step_at"):
        done["start_seconds"] = found.record["first_step_at"] - started
    return done


def remove_dead_scratch(results_dir: str | os.PathLike) -> list[Path]:
    """Remove the scratch folders of jobs whose process is gone (a killed sweep's), and links
    there (``store.remove``); returns them. One whose owner does not read goes after a day."""
    removed: list[Path] = []
    base = Path(results_dir) / ".scratch"
    if not base.is_dir() or store.outside(results_dir, base) is not None:  # check_store names that
        return removed
    here = socket.gethostname()
    for entry in sorted(base.iterdir()):
        try:
            st = entry.lstat()
            if stat.S_ISLNK(st.st_mode):
                dead = True
            else:
                try:  # a file (not a folder) has no owner.json either: gone after a day
                    o = store.read_json(entry / "owner.json")
                    dead = o["host"] == here and not alive(int(o["pid"]))
                except (OSError, ValueError, KeyError, TypeError):
                    dead = time.time() - st.st_mtime > 86_400
            if dead:
                store.remove(results_dir, entry)
                removed.append(entry)
        except (OSError, StoreError):  # unreadable, or gone meanwhile: left alone, and the sweep goes on
            continue
    return removed


def _die_with_parent() -> None:
    """In the kernel's process: SIGKILL it when the thread that started it dies, so a killed
    sweep leaves no kernel behind."""
    with contextlib.suppress(OSError, AttributeError):  # prctl is Linux's
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def kernel_env() -> dict[str, str]:
    """This process's environment with the folder this mlpmnist is imported from first on
    ``PYTHONPATH``, so the kernel runs the sweep's very code (not another installed mlpmnist)."""
    here = str(Path(__file__).resolve().parents[2])  # src/ (this file is src/mlpmnist/sweep/jobs.py)
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([here, *rest])}


def kernel_manager(log_file: Any, started: list) -> type:
    """A kernel manager class whose kernels run ipykernel in this interpreter and this mlpmnist
    (``kernel_env``), whatever a user's ``python3`` kernelspec names, write their output to
    ``log_file``, die with their parent, and are listed in ``started`` (for the watchdog)."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class JobKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> Any:  # not the kernelspec installed under the kernel's name
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name=f"mlpmnist job ({sys.executable})",
                    language="python",
                    resource_dir=str(Path(sys.executable).parent),
                    metadata={"debugger": False},
                )
            return self._kernel_spec

        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw.setdefault("stdout", log_file)
            kw.setdefault("stderr", log_file)
            kw.setdefault("preexec_fn", _die_with_parent)
            # ipykernel's own log at ERROR: its start-up warning that a local kernel talks over TCP
            # without encryption would open every experiment's log otherwise.
            kw["extra_arguments"] = [*(kw.get("extra_arguments") or []), "--IPKernelApp.log_level=ERROR"]
            kw.setdefault("env", kernel_env())
            await super().start_kernel(**kw)
            started.append(self)

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client's shutdown sends SIGINT before its shutdown request; a kernel that
            # gets it inside a message handler logs "KeyboardInterrupt caught in kernel" in a
            # run that went well. The shutdown request alone stops an idle kernel.
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return JobKernelManager


def kill(managers: list) -> None:
    """SIGKILL the kernels of ``managers`` that still run."""
    for km in managers:
        pid = getattr(km.provisioner, "pid", None)
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
