"""Where a sweep's jobs run: threads of the sweep's own process (each job's kernel is a process
of its own), or the worker threads of an existing Dask cluster.

Each backend takes the jobs (``jobs.JobTask``), yields each ``jobs.JobOutcome`` as it ends, and
calls ``poll`` about twice a second meanwhile (the sweep's live progress). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from urllib.parse import ParseResult, urlparse

from mlpmnist.errors import SweepError, printable
from mlpmnist.sweep import jobs

#: Seconds between two calls of ``poll`` while jobs run.
POLL_S = 0.5
#: Seconds the jobs get to kill their kernels and clean up after an interrupt.
STOP_GRACE_S = 60.0
#: Local jobs at once on a CPU unless told otherwise.
CPU_WORKERS = 2


def _failed(task: jobs.JobTask, error: str) -> jobs.JobOutcome:
    return jobs.JobOutcome(task.job, rows={key: jobs.row("failed", error) for key in task.keys})


class LocalBackend:
    """Jobs in threads of this process, one kernel each; an interrupt (Ctrl-C, SIGTERM) stops
    every job's kernel and waits for the jobs to clean up before it goes on up."""

    def slots(self) -> int:
        """Jobs to plan unless told: ``CPU_WORKERS``."""
        return CPU_WORKERS

    def run(self, tasks: list[jobs.JobTask], poll: Callable[[], None]) -> Iterator[jobs.JobOutcome]:
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=max(1, len(tasks)), thread_name_prefix="job")
        futures: dict[Future[jobs.JobOutcome], jobs.JobTask] = {
            pool.submit(jobs.execute, t, stop): t for t in tasks
        }
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                poll()
                for f in done:
                    try:
                        yield f.result()
                    except Exception as e:  # a bug in the job's own code: its experiments fail
                        yield _failed(futures[f], f"{type(e).__name__}: {e}")
        finally:
            if pending:  # interrupted, or the caller stopped early: kernels first, then the rest
                stop.set()
                wait(pending, timeout=STOP_GRACE_S)
            pool.shutdown(wait=False, cancel_futures=True)


def check_address(address: object) -> ParseResult:
    """``address`` read as a scheduler's URL (``tcp://`` when no scheme is given); ``ValueError``
    naming ``--scheduler`` and what it must look like when it is not one."""
    shape = "tcp://HOST:PORT or tls://HOST:PORT with PORT in 1-65535 (the scheduler's port, often 8786)"
    if not isinstance(address, str):
        raise ValueError(f"--scheduler must be {shape}; got {address!r}")
    try:
        url = urlparse(address if "://" in address else f"tcp://{address}")
        ok = url.scheme in ("tcp", "tls") and bool(url.hostname) and url.port is not None and url.port > 0
    except ValueError as e:  # urlparse's own words ('Port out of range', 'Invalid IPv6 URL')
        raise ValueError(f"--scheduler {printable(address)} must be {shape} ({e})") from None
    if not ok:
        raise ValueError(f"--scheduler {printable(address)} must be {shape}")
    return url


def probe_scheduler(address: str, timeout: float) -> None:
    """``ValueError`` saying what is wrong (nothing listening, an HTTP server such as the
    dashboard's port, a silent or foreign listener, which ``distributed.Client`` would wait for
    for ever) unless ``address`` completes Dask's handshake within ``timeout`` seconds."""
    url = check_address(address)
    assert url.hostname is not None and url.port is not None
    fix = "start the scheduler or fix --scheduler"
    deadline = time.monotonic() + timeout
    try:
        conn = socket.create_connection((url.hostname, url.port), timeout=timeout)
    except OSError as e:
        raise ValueError(f"cannot reach the Dask scheduler at {address} ({e.strerror or e}); {fix}") from e
    with conn:
        # A scheduler speaks first (its handshake); an HTTP server waits for a request. Only a
        # silent peer gets one: a scheduler logs a traceback for every request it cannot read.
        conn.settimeout(max(0.1, min(deadline - time.monotonic(), 3.0)))
        try:
            first = conn.recv(16)
        except OSError:
            first = b""
        if not first and url.scheme == "tcp" and _answers_http(conn, min(timeout, 3.0)):
            raise ValueError(
                f"{address} is an HTTP server, not a Dask scheduler (the dashboard's port? the scheduler "
                f"usually listens on 8786); {fix}"
            )
    # Dask's own handshake, bounded: distributed's connect() waits for the reply with no timeout.
    with ThreadPoolExecutor(1) as pool:  # a loop of its own: the caller may be inside one (Jupyter)
        left = max(1.0, deadline - time.monotonic())
        why = pool.submit(asyncio.run, _handshake(url.geturl(), left)).result()
    if why:
        raise ValueError(
            f"{address} accepts connections but is not a Dask scheduler ({why}, --connect-timeout "
            f"{timeout:g} s); {fix}"
        )


def _answers_http(conn: socket.socket, timeout: float) -> bool:
    """True when the peer of ``conn`` replies to an HTTP request as an HTTP server."""
    try:
        conn.settimeout(timeout)
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return conn.recv(5) == b"HTTP/"
    except OSError:  # silence, or a reset: not HTTP
        return False


async def _handshake(address: str, timeout: float) -> str | None:
    """Why ``address`` did not complete Dask's comm handshake within ``timeout`` seconds, or None."""
    from distributed.comm import connect
    from distributed.security import Security

    args = Security().get_connection_args("client")  # tls://: the certificates of Dask's config
    try:
        comm = await asyncio.wait_for(connect(address, timeout=timeout, **args), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        return "no Dask handshake in time"
    except Exception as e:  # reset, garbage, a TLS mismatch
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else 'no reason given'}"
    with contextlib.suppress(Exception):
        await asyncio.wait_for(comm.close(), timeout)
    return None


class DaskBackend:
    """Jobs as tasks on an existing Dask cluster. A sweep whose workers all go away ends after
    ``worker_timeout`` seconds without one, and one whose scheduler goes away ends at once,
    naming the experiments not done."""

    def __init__(self, address: str, worker_timeout: float, connect_timeout: float) -> None:
        probe_scheduler(address, connect_timeout)
        from distributed import Client

        self.address, self.worker_timeout = address, worker_timeout
        try:
            self.client = Client(address, timeout=connect_timeout)
        except (OSError, TimeoutError) as e:
            raise ValueError(
                f"cannot reach the Dask scheduler at {address} ({e}); start it or fix --scheduler"
            ) from e

    def slots(self) -> int:
        """Jobs to plan unless told: one per worker thread of the cluster now."""
        info = self.client.scheduler_info()
        return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def run(self, tasks: list[jobs.JobTask], poll: Callable[[], None]) -> Iterator[jobs.JobOutcome]:
        from distributed import Event
        from distributed import wait as dask_wait

        stop = Event(f"mlpmnist-stop-{uuid.uuid4().hex}", client=self.client)
        tasks = [dataclasses.replace(t, stop_event=stop.name) for t in tasks]
        futures = self.client.map(jobs.execute, tasks, pure=False)
        by_future = dict(zip(futures, tasks, strict=True))
        pending = set(futures)
        try:
            waited = 0.0
            while pending:
                try:
                    done, pending = dask_wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                except Exception as e:  # the scheduler went away (closed comm, cancelled futures)
                    lost = f"lost the Dask scheduler at {self.address} ({type(e).__name__})"
                    raise SweepError(_lost(lost, [by_future[f] for f in pending])) from e
                poll()
                for f in done:
                    if f.status in ("error", "cancelled"):
                        cause = f.exception() if f.status == "error" else "cancelled"
                        yield _failed(by_future[f], f"Dask: {cause}")
                    else:
                        yield f.result()
                waited = 0.0 if done or self._workers() else waited + POLL_S
                if waited >= self.worker_timeout:
                    lost = f"no Dask worker for {self.worker_timeout:g} s at {self.address}"
                    raise SweepError(_lost(lost, [by_future[f] for f in pending]))
        except (KeyboardInterrupt, GeneratorExit):  # running jobs kill their kernels and clean up
            with contextlib.suppress(Exception):
                stop.set()
                dask_wait(list(pending), timeout=STOP_GRACE_S)
            raise
        finally:
            with contextlib.suppress(Exception):
                self.client.cancel(list(pending))
            with contextlib.suppress(Exception):
                self.client.close()

    def _workers(self) -> int:
        try:
            return len(self.client.scheduler_info().get("workers", {}))
        except Exception as e:  # the scheduler went away
            raise SweepError(f"lost the Dask scheduler at {self.address} ({type(e).__name__})") from e


def _lost(what: str, tasks: list[jobs.JobTask]) -> str:
    left = ", ".join(sorted(k for t in tasks for k in t.keys))
    return f"{what}; not done: {left}; finished experiments are kept, rerun to resume"
