"""Processes as the subprocess tests see them, read from /proc: children, liveness, waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def wait_for(pred: Callable[[], object], timeout: float, step: float = 0.1) -> bool:
    """Poll ``pred`` every ``step`` seconds until it is true (True) or ``timeout`` passes (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie or a dead process does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def children(pid: int, command: bytes = b"") -> list[int]:
    """The processes whose parent is ``pid`` (and whose command line holds ``command``)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (p / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if ppid == pid and command in cmd:
            out.append(int(p.name))
    return out
