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

The store never reaches outside its folder: every path it reads, writes or deletes is checked by
``inside`` (a key is a file name, never a path; a link whose real path leaves the folder is
refused). A writer killed mid-write leaves a locked-then-abandoned ``.<name>.<random>.tmp``,
which the next writer of that folder removes (``remove_stale_temporaries``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import glob
import io
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from mlpmnist.errors import StoreError, printable

#: Keys are file names: letters, digits and ``. _ + -``, starting with a letter or digit.
KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")

#: Each kind of file (``stat.S_IFMT``) in words.
FILE_KINDS = {
    stat.S_IFREG: "a file",
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
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
    """Where the ``kind`` file of ``key`` lives; ``StoreError`` when ``key`` is not a key
    (``KEY_PATTERN``: no separators, no leading dot) or the path leaves the folder (``inside``)."""
    if not (isinstance(key, str) and KEY_PATTERN.fullmatch(key)):
        raise StoreError(
            f"{printable(repr(key)[:120])} is not a store key (letters, digits and . _ + -); "
            f"it cannot name a file under {results_dir}"
        )
    return inside(results_dir, Path(results_dir) / kind / f"{key}{KINDS[kind]}")


def outside(results_dir: str | os.PathLike, p: str | os.PathLike) -> str | None:
    """Where ``p`` (under the results folder) really leads when that is outside it, else None."""
    root, real = os.path.realpath(results_dir), os.path.realpath(p)
    return None if real == root or real.startswith(root.rstrip(os.sep) + os.sep) else real


def inside(results_dir: str | os.PathLike, p: str | os.PathLike) -> Path:
    """``p`` when its real path stays inside the results folder's; ``StoreError`` naming where it
    leads otherwise. Every write and delete of the store goes through it."""
    where = outside(results_dir, p)
    if where is not None:
        raise StoreError(
            f"{p} leads to {where}, outside the results folder {results_dir}; the store never writes "
            "there: remove the link"
        )
    return Path(p)


def remove(results_dir: str | os.PathLike, p: str | os.PathLike) -> None:
    """Delete ``p`` (a file, or a folder and all in it; a link itself, never its target), if
    there; ``StoreError`` (``inside``) when a folder's real path leaves the results folder."""
    p = Path(p)
    try:
        st = p.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(inside(results_dir, p), ignore_errors=True)
    else:
        inside(results_dir, p.parent)
        p.unlink(missing_ok=True)


def read_json(source: str | os.PathLike) -> Any:
    """The JSON value a store file holds. ``OSError`` when it cannot be read; ``ValueError`` when
    it is not a regular file (a FIFO would block) or not JSON (also: nested too deeply to parse)."""
    source = Path(source)
    if not stat.S_ISREG(source.stat().st_mode):
        raise ValueError(f"it is {what_is(source)}, not a regular file")
    text = source.read_text(encoding="utf-8")  # UnicodeDecodeError is a ValueError
    try:
        return json.loads(text)
    except RecursionError as e:
        raise ValueError("its JSON is nested too deeply to read") from e


def writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """``folder``, created if needed and checked by writing to it; ``ValueError`` naming ``what``
    (e.g. ``--media``) and the folder when it is not one or cannot be created or written."""
    folder = _no_file(folder, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # a unique name, gone when closed
            pass
    except OSError as e:
        raise ValueError(
            f"{what} {folder} cannot be created or written ({e.strerror}); choose another path"
        ) from e
    return folder


def check_folder(folder: str | os.PathLike, what: str, files: tuple[str, ...] = ()) -> Path:
    """``folder`` checked as a place to write ``files`` (names) later, creating nothing: it, or
    its nearest existing parent, a writable folder, where none of ``files`` is anything but a
    regular file (``file_target``). ``ValueError`` naming ``what`` (e.g. ``media_dir``)."""
    folder = _no_file(folder, what)
    here = folder
    while not os.path.lexists(here) and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise ValueError(
            f"{what} {folder} cannot be created: {here} is {what_is(here)}, not a folder; choose another path"
        )
    if not os.access(here, os.W_OK | os.X_OK):
        where = "it" if here == folder else here
        raise ValueError(f"{what} {folder} cannot be written ({where} is not writable); choose another path")
    for name in files if here == folder else ():
        try:
            file_target(folder / name, what)
        except StoreError as e:
            raise ValueError(str(e)) from None
    return folder


def _no_file(folder: str | os.PathLike, what: str) -> Path:
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise ValueError(f"{what} {folder} is {what_is(folder)}, not a folder; choose another path")
    return folder


def file_target(target: str | os.PathLike, what: str = "") -> Path:
    """Where writing ``target`` by a rename lands: ``target``, or the regular file it links to.
    ``StoreError``, starting with ``what`` (e.g. ``--out``), when it exists and is not a regular
    file, or a link to one, which a rename would replace."""
    target = Path(target)
    label = f"{what} {target}".strip()
    try:
        st = target.stat()  # follows links
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StoreError(
                f"{label} cannot be followed ({e.strerror}); remove it or choose another path"
            ) from e
        st = None  # nothing there (yet): its folder's checks say the rest
    if st is not None and not stat.S_ISREG(st.st_mode):
        link = " links to" if target.is_symlink() else " is"
        raise StoreError(
            f"{label}{link} {what_is(target)}, not a regular file, and writing would replace it; "
            "choose another path"
        )
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def what_is(p: Path) -> str:
    """What ``p`` is, in words: its kind of file, or a link that loops or points nowhere."""
    try:
        return FILE_KINDS.get(stat.S_IFMT(p.stat().st_mode), "not a regular file")
    except FileNotFoundError:
        return f"a link to {os.readlink(p)}, which does not exist"
    except OSError as e:
        return f"a link that cannot be followed: {e.strerror}"


def check_store(results_dir: str | os.PathLike) -> Path:
    """``results_dir`` as a writable folder whose store folders (``KINDS``, .scratch), where they
    exist, are folders inside it; else ``StoreError`` naming the one in the way, before any work."""
    root = writable_folder(results_dir, "results folder")
    for kind in (*KINDS, ".scratch"):
        sub = root / kind
        if os.path.lexists(sub) and not sub.is_dir():
            raise StoreError(f"{sub} is not a folder ({what_is(sub)}); remove it or choose another --results")
        inside(root, sub)
    return root


#: A temporary file younger than this is never taken for a stale one (it may be about to be locked).
STALE_S = 60.0


def _temporary(target: Path) -> tuple[int, Path]:
    """A new ``.<name>.<random>.tmp`` beside ``target``, open read-write and locked (``flock``)
    while its writer holds it, so ``remove_stale_temporaries`` leaves it alone. Its mode follows
    the umask, or an existing ``target``'s mode and (where allowed) owner, which a write keeps."""
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        break
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(target)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(PermissionError):  # only root may give a file away
                    os.fchown(fd, st.st_uid, st.st_gid)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return fd, tmp


def remove_stale_temporaries(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Remove the temporary files (``_temporary``) of ``folder/<name>`` that killed writers left:
    regular files no live writer locks, older than ``STALE_S`` seconds. Returns those removed."""
    removed: list[Path] = []
    pattern = f".{glob.escape(name) if name != '*' else '*'}.*.tmp"
    try:
        entries = list(os.scandir(os.fspath(folder)))
    except OSError:  # no folder (yet), or not one: nothing of ours there
        return removed
    for entry in entries:
        if not fnmatch.fnmatchcase(entry.name, pattern):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < STALE_S:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it
            continue
        else:
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
        finally:
            os.close(fd)
    return removed


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` via a temporary file beside it and a rename, so a reader never
    sees half a file; returns the path (``file_target``: through a link to a regular file). An
    ``OSError`` (a full disk) names ``target``, and no temporary file is left."""
    target = file_target(target)
    tmp = None
    try:
        fd, tmp = _temporary(target)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, target)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename in (None, str(tmp)):  # the file meant, not its temporary
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


def check_space(folder: str | os.PathLike, need: float, what: str) -> None:
    """``StoreError`` when the results folder's disk has less than twice ``need`` bytes free,
    saying what ``what`` (e.g. 'this sweep') writes and what is free."""
    free = shutil.disk_usage(folder).free
    if free < 2 * need:
        raise StoreError(
            f"{folder} has {size_text(free)} free, and {what} writes about {size_text(need)} "
            "(x2 margin); free some space or choose another --results"
        )


class Reservation:
    """``nbytes`` held on disk beside ``target`` (a ``_temporary``, ``os.posix_fallocate``) for a
    file written later, so a disk that fills meanwhile cannot lose it; ``write`` renames it into
    place, leaving the ``with`` block removes it if unwritten. ``StoreError`` (messages start
    with ``what``, e.g. ``--out``) when ``target`` is not a file to write or ``nbytes`` do not fit."""

    def __init__(self, target: str | os.PathLike, nbytes: int, what: str) -> None:
        self.target = file_target(target, what)
        # A writer killed before it renamed left its room behind: taken back now (W7).
        remove_stale_temporaries(self.target.parent, self.target.name)
        fd, self.tmp = _temporary(self.target)
        self.file: io.BufferedRandom | None = os.fdopen(fd, "r+b")
        try:
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
        """Write ``data`` into the held room and rename it to ``target``; returns the path."""
        if self.file is None:
            raise ValueError("this reservation is closed")
        try:
            self.file.seek(0)
            self.file.write(data)
            self.file.truncate(len(data))
            self.file.flush()
            os.fsync(self.file.fileno())
            os.replace(self.tmp, self.target)  # still locked: no cleaner takes it meanwhile
            self.file.close()
            self.file = None
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
