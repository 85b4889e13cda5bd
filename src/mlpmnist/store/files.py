"""Files of the store: where each kind lives, folders checked before any work, and writes that
are atomic (a temporary file in the same folder, then a rename) or hold their room on disk first.

Under a results folder every experiment's files are named by its key::

    runs/<key>.json       the run record: config, per-replica history and status, provenance
    models/<key>.pt       final weights of every replica (and snapshots, where asked for)
    notebooks/<key>.ipynb the executed notebook of the job that trained it (provenance)
    logs/<key>.log        that job's kernel's own stderr
    failed/<key>.json     why its last attempt failed (removed when it succeeds)
    checkpoints/<key>.pt  a group's training state after its last finished epoch (``checkpoint``)
    locks/<key>.lock      held while it runs, so it never runs twice at once
    derived/<name>.json   a measurement computed from stored experiments (``store.derived``)
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tempfile
from pathlib import Path

from mlpmnist.errors import StoreError

KINDS = {
    "runs": ".json",
    "notebooks": ".ipynb",
    "models": ".pt",
    "logs": ".log",
    "failed": ".json",
    "locks": ".lock",
    "derived": ".json",
    "checkpoints": ".pt",
}


def path(results_dir: str | os.PathLike, kind: str, key: str) -> Path:
    """Where the ``kind`` file (runs, notebooks, models, logs, failed, locks) of ``key`` lives."""
    return Path(results_dir) / kind / f"{key}{KINDS[kind]}"


def writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """``folder``, created if needed, checked by writing to it; ``ValueError`` naming ``what``
    (e.g. ``--media``) and the folder when it is a file or cannot be created or written."""
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise ValueError(f"{what} {folder} is {what_is(folder)}, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # a unique name, gone when closed
            pass
    except OSError as e:
        raise ValueError(
            f"{what} {folder} cannot be created or written ({e.strerror}); choose another path"
        ) from e
    return folder


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "a file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def file_target(target: str | os.PathLike, what: str = "") -> Path:
    """Where writing ``target`` by a rename lands: ``target``, or the regular file it links to
    (the link stays). ``StoreError`` when ``target`` exists and is not a regular file (a folder,
    a FIFO, a device, a socket, a link to one, or a link that loops), which a rename would
    replace; ``what`` (e.g. ``--out``) starts the message."""
    target = Path(target)
    label = f"{what} {target}".strip()
    try:
        st = target.stat()  # follows links
    except OSError as e:
        if e.errno != errno.ELOOP:  # nothing there (yet): its folder's checks say the rest
            return Path(os.path.realpath(target)) if target.is_symlink() else target
        raise StoreError(
            f"{label} cannot be followed ({e.strerror}); remove it or choose another path"
        ) from e
    if not stat.S_ISREG(st.st_mode):
        link = " links to" if target.is_symlink() else " is"
        raise StoreError(
            f"{label}{link} {_kind(st.st_mode)}, not a regular file, and writing would replace it; "
            "choose another path"
        )
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def what_is(p: Path) -> str:
    """What ``p`` is, in words: a link that loops or points nowhere, or its kind of file."""
    try:
        return _kind(p.stat().st_mode)
    except FileNotFoundError:
        return f"a link to {os.readlink(p)}, which does not exist"
    except OSError as e:
        return f"a link that cannot be followed: {e.strerror}"


def check_store(results_dir: str | os.PathLike) -> Path:
    """``results_dir`` as a writable folder whose store folders (runs, notebooks, models, logs,
    failed, locks, .scratch), where they exist, are folders; else ``StoreError`` naming the one in
    the way (a file, a link that loops or points nowhere), found before any work. Returns it."""
    root = writable_folder(results_dir, "results folder")
    for kind in (*KINDS, ".scratch"):
        sub = root / kind
        if os.path.lexists(sub) and not sub.is_dir():
            raise StoreError(f"{sub} is not a folder ({what_is(sub)}); remove it or choose another --results")
    return root


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` via a temporary file in the same directory and a rename,
    so a reader never sees a half-written file. Returns the path. A link to a regular file is
    written through; anything else that is not a regular file is refused (``file_target``). An
    ``OSError`` (a full disk) names ``target``, and no temporary file is left."""
    target = file_target(target)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make outputs private to their writer
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename in (None, tmp):  # name the file meant, not its temporary
            raise type(e)(e.errno, e.strerror or str(e), str(target)) from e
        raise
    return target


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """``atomic_write_bytes`` for UTF-8 text."""
    return atomic_write_bytes(target, text.encode())


def size_text(nbytes: float) -> str:
    """``nbytes`` in words: '512 B', '4.1 kB', '3.2 MB', '1.5 GB' (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"


def check_space(folder: str | os.PathLike, need: float, what: str, fix: str, margin: float = 2.0) -> None:
    """``StoreError`` when ``folder``'s disk has less than ``margin`` x ``need`` bytes free, saying
    how much ``what`` (e.g. 'this sweep') writes, how much is free, and ``fix``."""
    free = shutil.disk_usage(folder).free
    if free < margin * need:
        raise StoreError(
            f"{folder} has {size_text(free)} free, and {what} writes about {size_text(need)} "
            f"(x{margin:g} margin); {fix}"
        )


class Reservation:
    """Room held on disk for a file that is written later: a hidden temporary file of ``nbytes``
    beside ``target`` (``os.posix_fallocate``), so a disk that fills meanwhile cannot lose it.
    ``write`` puts the data in it and renames it into place; leaving the ``with`` block removes
    it if unwritten. ``StoreError`` when ``target`` is not a file to write (``file_target``) or
    ``nbytes`` do not fit; ``what`` (e.g. ``--out``) starts the messages."""

    def __init__(self, target: str | os.PathLike, nbytes: int, what: str) -> None:
        self.target = file_target(target, what)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp")
        self.file: io.BufferedRandom | None = os.fdopen(fd, "r+b")
        try:
            os.fchmod(fd, 0o644)
            os.posix_fallocate(fd, 0, max(1, nbytes))
        except OSError as e:
            self.close()
            if e.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise
            free = shutil.disk_usage(self.target.parent).free
            raise StoreError(
                f"{what} {self.target}: its disk has {size_text(free)} free, and the file takes about "
                f"{size_text(nbytes)}; free some space or choose another path"
            ) from e

    def write(self, data: bytes) -> Path:
        """Write ``data`` into the held room, then rename it to ``target``; returns the path."""
        if self.file is None:
            raise ValueError("this reservation is closed")
        try:
            self.file.seek(0)
            self.file.write(data)
            self.file.truncate(len(data))
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.file = None
            os.replace(self.tmp, self.target)
        except OSError as e:
            self.close()
            raise type(e)(e.errno, e.strerror or str(e), str(self.target)) from e
        return self.target

    def close(self) -> None:
        """Give the room back (nothing is written)."""
        if self.file is not None:
            self.file.close()
            self.file = None
        Path(self.tmp).unlink(missing_ok=True)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
