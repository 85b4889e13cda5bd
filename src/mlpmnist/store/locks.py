"""Who runs an experiment now: one lock per key (``filelock``), its holder written beside it, so an
experiment never runs twice at once and a waiting process can say who holds it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from mlpmnist.errors import printable
from mlpmnist.store.files import atomic_write_text, path, read_json, remove


def _owner_path(root: Path, key: str) -> Path:
    return path(root, "locks", key).with_suffix(".owner")


def owner(root: str | os.PathLike, key: str) -> str:
    """Who holds ``key``'s lock, in words ('pid 123 (stopped) on host, job j, since 40 s'), as far
    as known; a process on this host is said to be stopped (SIGSTOP, Ctrl-Z) or gone if it is."""
    try:
        o = read_json(_owner_path(Path(root), key))
        state = _state(int(o["pid"])) if o["host"] == socket.gethostname() else ""
        # The file's words are shown in messages: escaped, so they cannot fake a line of their own.
        since = time.time() - o["since"]
        return printable(f"pid {int(o['pid'])}{state} on {o['host']}, job {o['job']}, since {since:.0f} s")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that did not say who it is"


def _state(pid: int) -> str:
    """' (stopped)' or ' (gone)' for a process of this host in that state, else ''."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "" if alive(pid) else " (gone)"  # no /proc: all that can be told
    return {"T": " (stopped)", "t": " (stopped)", "Z": " (gone)", "X": " (gone)"}.get(state, "")


class Claims:
    """The locks a job holds (a context manager: every lock it took is released on exit)."""

    def __init__(self, root: Path, job: str) -> None:
        self.root, self.job = root, job
        self.locks: dict[str, Any] = {}

    def take(self, key: str) -> bool:
        """Take ``key``'s lock without waiting; False when another process holds it."""
        lock = _taken(self.root, key, None)
        if lock is None:
            return False
        self.locks[key] = lock
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "job": self.job, "since": time.time()}
        # Who holds it is a courtesy: a full disk must not stop us.
        with contextlib.suppress(OSError, ValueError):
            atomic_write_text(_owner_path(self.root, key), json.dumps(mine))
        return True

    def release(self, key: str) -> None:
        """Give ``key``'s lock back; its lock file goes too once the experiment is stored (whoever
        waits on the old file then finds it done, as it would have)."""
        lock = self.locks.pop(key, None)
        if lock is not None:
            with contextlib.suppress(OSError, ValueError):  # a courtesy, as when it was written
                remove(self.root, _owner_path(self.root, key))
                if path(self.root, "runs", key).is_file():
                    remove(self.root, path(self.root, "locks", key))
            lock.release()

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc: object) -> None:
        for key in list(self.locks):
            self.release(key)


def wait_free(root: Path, key: str, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds until no process holds ``key``'s lock (taken and given back
    at once); False when one still holds it then."""
    lock = _taken(root, key, max(0.0, timeout))
    if lock is not None:
        lock.release()
    return lock is not None


def _taken(root: Path, key: str, timeout: float | None) -> Any:
    """``key``'s ``FileLock``, taken within ``timeout`` seconds (None: at once), or None."""
    from filelock import FileLock, Timeout

    lock_path = path(root, "locks", key)
    lock = FileLock(lock_path, blocking=False) if timeout is None else FileLock(lock_path, timeout=timeout)
    for attempt in range(2):
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire()
            return lock
        except Timeout:
            return None
        except FileNotFoundError:  # another sweep's ``tidy`` removed the empty folder just now
            if attempt:
                raise
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tidy(root: str | os.PathLike) -> None:
    """Remove the store's working folders that are empty (locks, checkpoints, .scratch): what a
    finished sweep or train leaves needs none of them."""
    for name in ("locks", "checkpoints", ".scratch"):
        with contextlib.suppress(OSError):  # not empty, or not there
            (Path(root) / name).rmdir()
