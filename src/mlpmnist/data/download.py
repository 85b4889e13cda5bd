"""The download of a dataset's missing raw files from its mirrors (urllib, so nothing here
imports torchvision), each checked before it is renamed into place."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from mlpmnist.data import idx
from mlpmnist.data.specs import DatasetSpec
from mlpmnist.errors import DataError

# Per socket operation, so a download on a network that drops packets fails instead of hanging.
DOWNLOAD_TIMEOUT_S = 30.0


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` as one line of at most ``limit`` characters, repeated lines dropped."""
    line = " ".join(dict.fromkeys(ln.strip() for ln in text.splitlines() if ln.strip()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _MirrorFailed(Exception):
    """One mirror did not serve one valid file, for the cause its message says in a few words;
    ``down``: it cannot be reached at all (not asked for the other files)."""

    def __init__(self, cause: str, down: bool = False) -> None:
        super().__init__(cause)
        self.down = down


def _network_cause(err: BaseException) -> _MirrorFailed:
    if isinstance(err, urllib.error.HTTPError):
        return _MirrorFailed(_one_line(f"HTTP {err.code} {err.reason}", 80))
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):  # socket.timeout is TimeoutError
        return _MirrorFailed(f"no answer within {DOWNLOAD_TIMEOUT_S:g} s", down=True)
    if isinstance(reason, ConnectionRefusedError):
        return _MirrorFailed("connection refused", down=True)
    if isinstance(reason, socket.gaierror):  # what being offline usually looks like
        return _MirrorFailed(f"host not found ({reason.strerror})", down=True)
    if isinstance(reason, OSError) and reason.strerror:
        return _MirrorFailed(_one_line(reason.strerror, 80), down=True)
    return _MirrorFailed(_one_line(str(reason) or type(reason).__name__, 120))


def _get(url: str, out: Path) -> str:
    """Download ``url`` into the new file ``out``; returns the hex MD5 of what it received.
    ``_MirrorFailed`` when the server or the network fails, OSError when ``out`` cannot be written."""
    h = hashlib.md5()
    try:
        resp = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except (OSError, http.client.HTTPException) as e:  # URLError and HTTPError are OSErrors
        raise _network_cause(e) from e
    with resp, open(out, "xb") as f:
        while True:
            try:
                chunk = resp.read(idx.CHUNK)
            except (OSError, http.client.HTTPException) as e:
                raise _network_cause(e) from e
            if not chunk:
                break
            h.update(chunk)
            f.write(chunk)
        # http.client ends a body cut short without an error; the length still to come tells.
        if resp.length:
            raise _MirrorFailed(f"the connection closed after {f.tell()} of {f.tell() + resp.length} bytes")
    return h.hexdigest()


def _fetch(spec: DatasetSpec, mirror: str, dest: Path) -> None:
    """Put raw file ``dest`` in place from ``<mirror><name>.gz`` once it checks out (the .gz's MD5,
    the file's header, length, MD5); ``_MirrorFailed``, or ``DataError`` if ``dest`` cannot be written."""
    name = dest.name
    try:
        with idx.scratch(dest.with_name(f"{name}.gz")) as gz, idx.scratch(dest) as tmp:
            digest = _get(f"{mirror}{name}.gz", gz)
            if (want := spec.gz_md5.get(name)) is not None and digest != want:
                raise _MirrorFailed(f"{name}.gz's MD5 is {digest}, not the published {want}")
            try:
                digest = idx.gunzip(gz, tmp)
            except (gzip.BadGzipFile, EOFError, zlib.error) as e:
                raise _MirrorFailed(f"{name}.gz is not a valid gzip file ({_one_line(str(e), 80)})") from e
            with open(tmp, "rb") as f:
                problem = idx.header_problem(spec, name, f.read(4 * 4), os.fstat(f.fileno()).st_size)
            if problem is None and (expected := spec.files[name]) is not None and digest != expected:
                problem = f"its MD5 is {digest}, not the published {expected}"
            if problem:
                raise _MirrorFailed(f"{name} from it is not valid: {problem}")
            os.replace(tmp, dest)
    except OSError as e:  # the network's errors are _MirrorFailed by now: this one is local
        raise DataError(
            f"cannot write the download into {dest.parent} ({e.strerror or e}); make it writable, "
            f"or {idx.put_hint(spec, dest.parent)}"
        ) from e


def download(spec: DatasetSpec, root: Path, missing: list[str]) -> None:
    """Download the raw files ``missing`` into ``raw_dir(root)``, each from the first mirror that
    serves a valid ``<file>.gz`` (one that cannot be reached is not asked again). On failure removes
    what it created and raises a one-line ``DataError``."""
    raw = idx.raw_dir(root, spec)
    head = f"{spec.title} not found in {raw} (missing {', '.join(missing)})"
    if not spec.mirrors:
        raise DataError(f"{head} and it has no download mirrors; {idx.put_hint(spec, raw)}")
    new = [p for p in (raw, *raw.parents) if idx.stat_of(spec, p) is None]  # deepest first
    done: list[Path] = []
    down: dict[str, str] = {}  # mirror -> why it cannot be reached
    try:
        try:
            raw.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(
                f"{head} and {raw} cannot be created to download it ({e.strerror or e}); "
                f"{idx.put_hint(spec, raw)}"
            ) from e
        for name in missing:
            failures: dict[str, list[str]] = {}  # cause -> the mirrors that gave it
            for mirror in spec.mirrors:
                if mirror in down:
                    failures.setdefault(down[mirror], []).append(mirror)
                    continue
                try:
                    _fetch(spec, mirror, raw / name)
                except _MirrorFailed as e:
                    failures.setdefault(str(e), []).append(mirror)
                    if e.down:
                        down[mirror] = str(e)
                else:
                    done.append(raw / name)
                    break
            else:
                why = "; ".join(f"{c} at {' and '.join(dict.fromkeys(m))}" for c, m in failures.items())
                raise DataError(
                    f"{head} and the download failed ({name}.gz: {_one_line(why, 400)}); "
                    f"{idx.put_hint(spec, raw)}, or retry online"
                )
    except BaseException:  # Ctrl-C included: leave the folder as it was
        for path in done:
            path.unlink(missing_ok=True)
        for folder in new:  # deepest first, while empty (rmdir removes only an empty folder)
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise
