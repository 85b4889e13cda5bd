"""Image datasets as whole in-memory tensors: checked, flattened and scaled to [-1, 1].

Every function works from a dataset's ``DatasetSpec`` (``mlpmnist.data.specs``) alone: where its
four IDX files live, their sizes and checksums, and the mirrors that serve them. The files are
read directly (a big-endian header, then uint8 data) and missing ones are downloaded with
urllib, so nothing here imports torchvision.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.client
import math
import os
import socket
import stat
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TypeAlias

import numpy as np
import torch

from mlpmnist import paths
from mlpmnist.data import specs as datasets
from mlpmnist.data.specs import DatasetSpec
from mlpmnist.errors import DataError

ENV_VAR = "MLPMNIST_DATA"
DEFAULT_ROOT = "data"

# Per socket operation, so a download on a network that drops packets fails instead of hanging.
DOWNLOAD_TIMEOUT_S = 30.0
# A dataset's name (see ``datasets.names()``) or its spec.
Dataset: TypeAlias = "str | DatasetSpec"

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Split:
    """One split: ``x`` is float32 [N, pixels per image] in [-1, 1] (each image's rows one
    after another, as the spec's ``image_shape``), ``y`` is int64 [N] (class indices)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Split:
        return Split(self.x.to(device, dtype), self.y.to(device))

    def head(self, n: int) -> Split:
        return Split(self.x[:n], self.y[:n])

    def tail(self, n: int) -> Split:
        return Split(self.x[-n:], self.y[-n:])


@dataclass(frozen=True)
class Data:
    """A dataset in memory: its ``train`` and ``test`` splits, the absolute data ``root`` they
    were read from, and the dataset's ``spec`` (image shape, class names)."""

    train: Split
    test: Split
    root: Path
    spec: DatasetSpec

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Data:
        """A copy with both splits on ``device``, features as ``dtype`` (labels keep theirs)."""
        return replace(self, train=self.train.to(device, dtype), test=self.test.to(device, dtype))


def spec_of(dataset: Dataset) -> DatasetSpec:
    """``dataset`` itself if it is a spec, else the registered spec of that name (``ValueError``
    listing the known names if there is none)."""
    return dataset if isinstance(dataset, DatasetSpec) else datasets.get(dataset)


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root`` (a relative one from the working folder, as a command-line
    flag), else ``$MLPMNIST_DATA``, else ``data``. These two are read from the repository root
    (``paths.base``), whatever folder a kernel starts in, so ``MLPMNIST_DATA=../shared/data`` set
    at the root also serves a notebook under ``notebooks/``; returned as given when the working
    folder is that root, else joined to it.

    One root holds every dataset, each in its own folder (``raw_dir``)."""
    if root is not None:
        return Path(root).expanduser()
    path = Path(os.environ.get(ENV_VAR) or DEFAULT_ROOT).expanduser()
    if path.is_absolute() or paths.base() == Path.cwd().resolve():
        return path
    return paths.base() / path


def raw_dir(root: Path, dataset: Dataset = "mnist") -> Path:
    """The folder under ``root`` that holds the dataset's four IDX files: ``root/<folder>/raw``."""
    return root / spec_of(dataset).folder / "raw"


# ---------------------------------------------------------------------------- messages


def _fix(spec: DatasetSpec) -> str:
    """The tail of every message about missing or bad data: what to do instead, and what the
    variable holds now (so the hint does not merely repeat a value already set)."""
    now = os.environ.get(ENV_VAR)
    if not now:
        return f"set {ENV_VAR} to a folder holding {spec.folder}/raw/*-ubyte"
    where = "" if Path(now).expanduser().is_absolute() else f", read from {paths.describe_base()}"
    return f"set {ENV_VAR} to a folder holding {spec.folder}/raw/*-ubyte (it is {now!r}{where})"


def _put(spec: DatasetSpec, raw: Path) -> str:
    """What to do about missing files: where to put them, or where to point the variable."""
    return f"put its four files, or their .gz, into {raw}, or {_fix(spec)}"


def _invalid(spec: DatasetSpec, path: Path, problem: str) -> DataError:
    return DataError(
        f"{path} is not a valid {spec.title} file: {problem}; "
        f"delete it and download {spec.title} again, or {_fix(spec)}"
    )


def _blocked_at(path: Path) -> Path:
    """The first folder on the way to ``path`` that this process may not enter, else ``path``."""
    for folder in reversed(path.parents):
        if not os.access(folder, os.X_OK):
            return folder
    return path


def _access_error(spec: DatasetSpec, path: Path, err: OSError) -> DataError:
    """One-line ``DataError`` for an ``OSError`` met while reaching or reading ``path``."""
    if isinstance(err, PermissionError):
        where = _blocked_at(path)
        return DataError(
            f"permission denied reading {where}; make it readable (chmod a+rX {where}) or {_fix(spec)}"
        )
    return DataError(f"cannot read {path} ({err.strerror or err}); {_fix(spec)}")


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` as one line of at most ``limit`` characters, repeated lines dropped."""
    line = " ".join(dict.fromkeys(ln.strip() for ln in text.splitlines() if ln.strip()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ---------------------------------------------------------------------------- files and headers


def _stat(spec: DatasetSpec, path: Path) -> os.stat_result | None:
    """``path``'s stat, or None if nothing is there; raises ``DataError`` if it cannot be reached."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise _access_error(spec, path, e) from e


def _is_file(spec: DatasetSpec, path: Path) -> bool:
    """Whether a regular file is at ``path``; raises ``DataError`` if something else is there."""
    st = _stat(spec, path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise DataError(
            f"{path} is not a regular file; remove it and download {spec.title} again, or {_fix(spec)}"
        )
    return st is not None


def _idx_magic(dims: tuple[int, ...]) -> int:
    """The IDX magic number of uint8 data with ``len(dims)`` dimensions: 0x08 << 8 | ndim."""
    return 0x0800 | len(dims)


def _shape(dims: tuple[int, ...]) -> str:
    return "x".join(map(str, dims))


def _header_problem(spec: DatasetSpec, name: str, header: bytes, size: int) -> str | None:
    """What is wrong with raw file ``name`` of ``size`` bytes whose first bytes are ``header``, or None."""
    dims = spec.dims(name)
    magic = _idx_magic(dims)
    n_header = 4 * (1 + len(dims))
    if len(header) < 4:
        return f"at {size} bytes it is too short to hold an IDX header"
    got = int.from_bytes(header[:4], "big")
    if got != magic:
        kind = "images" if len(dims) > 1 else "labels"
        return f"its header's magic number is {got}, expected {magic} (IDX uint8 {kind})"
    if len(header) < n_header:
        return f"at {size} bytes it is too short to hold its {n_header}-byte header"
    got_dims = tuple(int.from_bytes(header[i : i + 4], "big") for i in range(4, n_header, 4))
    if got_dims != dims:
        return f"its header declares {_shape(got_dims)}, expected {_shape(dims)}"
    want = n_header + math.prod(dims)
    if size != want:
        how = "truncated" if size < want else "has trailing bytes"
        return f"it is {size} bytes, expected {want} ({n_header}-byte header + {_shape(dims)} bytes): {how}"
    return None


def _check_header(spec: DatasetSpec, f: BinaryIO, path: Path) -> None:
    """Validate the IDX header and length of ``path``, open as ``f`` at its start; reads the header."""
    n_header = 4 * (1 + len(spec.dims(path.name)))
    problem = _header_problem(spec, path.name, f.read(n_header), os.fstat(f.fileno()).st_size)
    if problem:
        raise _invalid(spec, path, problem)


@functools.cache
def _md5(path: str, size: int, mtime_ns: int) -> str:
    """Hex MD5 of ``path``; keyed on size and mtime so a replaced file is hashed again."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(root: Path, dataset: Dataset = "mnist") -> None:
    """Check the dataset's four raw files under ``root``: IDX header, length, then MD5 against
    the published one where the spec has it.

    Returns None; raises ``DataError`` naming the first bad file. Each file is hashed once per
    process unless its size or mtime changes.
    """
    spec = spec_of(dataset)
    for name, expected in spec.files.items():
        path = raw_dir(root, spec) / name
        try:
            with open(path, "rb") as f:
                _check_header(spec, f, path)
                st = os.fstat(f.fileno())
            digest = None if expected is None else _md5(str(path.resolve()), st.st_size, st.st_mtime_ns)
        except OSError as e:
            raise _access_error(spec, path, e) from e
        if digest != expected:
            raise DataError(
                f"{path} is corrupt: its MD5 is {digest}, not the published {expected} "
                f"({st.st_size} bytes); delete it and download {spec.title} again, or {_fix(spec)}"
            )


# ---------------------------------------------------------------------------- finding the files


def _missing_message(spec: DatasetSpec, root: Path, missing: list[str]) -> str:
    raw = raw_dir(root, spec)
    where = f"; {root} does not exist" if _stat(spec, root) is None else ""
    todo = ", or load with download=True to download it" if spec.mirrors else ""
    return f"{spec.title} not found in {raw} (missing {', '.join(missing)}{where}); {_put(spec, raw)}{todo}"


def _refuse_too_deep(spec: DatasetSpec, root: Path) -> None:
    """Raise ``DataError`` if the raw files sit in ``root`` or ``root/raw`` instead of
    ``root/<folder>/raw``.

    Pointing the data location at .../MNIST or .../MNIST/raw is an easy slip; without this check a
    download would nest a second copy inside the real one. Any registered dataset's folder counts:
    the root is shared, so .../MNIST is as wrong a root for Fashion-MNIST as for MNIST.
    """
    owners = {**datasets.folders(), spec.folder: spec}
    candidates = (
        (root / "raw", root.parent, owners.get(root.name)),
        (root, root.parent.parent, owners.get(root.parent.name) if root.name == "raw" else None),
    )
    for folder, parent, owner in candidates:
        if any(
            _stat(spec, folder / n) is not None or _stat(spec, folder / f"{n}.gz") is not None
            for n in spec.files
        ):
            todo = f"use {parent} instead of {root}" if owner else f"move them into {raw_dir(root, spec)}"
            whose = "its" if owner in (None, spec) else f"{owner.title}'s"
            raise DataError(
                f"{spec.title} not found in {raw_dir(root, spec)}, but {whose} files are in {folder}: "
                f"{ENV_VAR} (or the root passed in) must name the folder that holds {spec.folder}/raw, "
                f"so {todo}"
            )


@contextlib.contextmanager
def _scratch(dest: Path) -> Iterator[Path]:
    """A fresh path next to ``dest`` (same folder, so renaming it onto ``dest`` is atomic), for a
    file the caller creates (mode "xb", so it gets the umask's usual mode, unlike mkstemp's 0600);
    removed on exit unless renamed."""
    path = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _gunzip(gz: Path, out: Path) -> str:
    """Decompress ``gz`` into the new file ``out``; returns the hex MD5 of what it wrote.

    Raises gzip.BadGzipFile, EOFError or zlib.error for a broken ``gz``, OSError for any other
    failure to read ``gz`` or write ``out``."""
    h = hashlib.md5()
    with gzip.open(gz, "rb") as src, open(out, "xb") as dst:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            h.update(chunk)
            dst.write(chunk)
    return h.hexdigest()


def _extract(spec: DatasetSpec, gz: Path, dest: Path) -> None:
    """Decompress the published ``gz`` into ``dest`` atomically (temporary file, then rename)."""
    try:
        with _scratch(dest) as tmp:
            _gunzip(gz, tmp)
            os.replace(tmp, dest)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        # Caught before OSError, which gzip.BadGzipFile also is.
        raise DataError(
            f"{gz} is not a valid gzip file ({e}) and {dest.name} is missing next to it; "
            f"delete {gz} and download {spec.title} again, or {_fix(spec)}"
        ) from e
    except OSError as e:
        if e.filename is not None and Path(e.filename) == gz:
            raise _access_error(spec, gz, e) from e
        raise DataError(
            f"cannot extract {gz} into {dest.parent} ({e.strerror or e}); make {dest.parent} writable, "
            f"or gunzip the four .gz files into a folder X/{spec.folder}/raw yourself and set {ENV_VAR}=X"
        ) from e


# ---------------------------------------------------------------------------- download


class _MirrorFailed(Exception):
    """One mirror did not serve one valid file. ``cause``: why, in a few words; ``down``: it
    cannot be reached at all, so the download stops asking it for the other files."""

    def __init__(self, cause: str, down: bool = False) -> None:
        super().__init__(cause)
        self.cause = cause
        self.down = down


def _network_cause(err: BaseException, timeout_s: float) -> _MirrorFailed:
    """``err``, raised by urllib while fetching, as a ``_MirrorFailed`` with a short cause."""
    if isinstance(err, urllib.error.HTTPError):
        return _MirrorFailed(_one_line(f"HTTP {err.code} {err.reason}", 80))
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):  # socket.timeout is TimeoutError
        return _MirrorFailed(f"no answer within {timeout_s:g} s", down=True)
    if isinstance(reason, ConnectionRefusedError):
        return _MirrorFailed("connection refused", down=True)
    if isinstance(reason, socket.gaierror):  # what being offline usually looks like
        return _MirrorFailed(f"host not found ({reason.strerror})", down=True)
    if isinstance(reason, OSError) and reason.strerror:
        return _MirrorFailed(_one_line(reason.strerror, 80), down=True)
    return _MirrorFailed(_one_line(str(reason) or type(reason).__name__, 120))


def _get(url: str, out: Path, timeout_s: float) -> str:
    """Download ``url`` into the new file ``out``; returns the hex MD5 of what it received.

    Raises ``_MirrorFailed`` when the server or the network fails, OSError when ``out`` cannot
    be written."""
    h = hashlib.md5()
    received = 0
    try:
        resp = urllib.request.urlopen(url, timeout=timeout_s)
    except (OSError, http.client.HTTPException) as e:  # URLError and HTTPError are OSErrors
        raise _network_cause(e, timeout_s) from e
    with resp, open(out, "xb") as f:
        while True:
            try:
                chunk = resp.read(_CHUNK)
            except (OSError, http.client.HTTPException) as e:
                raise _network_cause(e, timeout_s) from e
            if not chunk:
                break
            h.update(chunk)
            received += len(chunk)
            f.write(chunk)
        # http.client ends a body cut short without an error; the length still to come tells.
        if resp.length:
            raise _MirrorFailed(f"the connection closed after {received} of {received + resp.length} bytes")
    return h.hexdigest()


def _file_problem(spec: DatasetSpec, name: str, path: Path, digest: str) -> str | None:
    """What is wrong with ``path``, a candidate for raw file ``name`` whose MD5 is ``digest``, or None."""
    with open(path, "rb") as f:
        problem = _header_problem(spec, name, f.read(4 * 4), os.fstat(f.fileno()).st_size)
    expected = spec.files[name]
    if problem is None and expected is not None and digest != expected:
        problem = f"its MD5 is {digest}, not the published {expected}"
    return problem


def _fetch(spec: DatasetSpec, mirror: str, dest: Path, timeout_s: float) -> None:
    """Put raw file ``dest`` in place from ``<mirror><name>.gz``, checked before it is renamed
    into place: the .gz's MD5 (when the spec has it), then the file's header, length and MD5.

    Returns None; raises ``_MirrorFailed`` if this mirror does not serve a valid file, and
    ``DataError`` if the files cannot be written next to ``dest``."""
    name = dest.name
    try:
        with _scratch(dest.with_name(f"{name}.gz")) as gz, _scratch(dest) as tmp:
            digest = _get(f"{mirror}{name}.gz", gz, timeout_s)
            want = spec.gz_md5.get(name)
            if want is not None and digest != want:
                raise _MirrorFailed(f"{name}.gz's MD5 is {digest}, not the published {want}")
            try:
                digest = _gunzip(gz, tmp)
            except (gzip.BadGzipFile, EOFError, zlib.error) as e:
                raise _MirrorFailed(f"{name}.gz is not a valid gzip file ({_one_line(str(e), 80)})") from e
            problem = _file_problem(spec, name, tmp, digest)
            if problem:
                raise _MirrorFailed(f"{name} from it is not valid: {problem}")
            os.replace(tmp, dest)
    except OSError as e:  # the network's errors are _MirrorFailed by now: this one is local
        raise DataError(
            f"cannot write the download into {dest.parent} ({e.strerror or e}); make it writable, "
            f"or {_put(spec, dest.parent)}"
        ) from e


def _fold(failures: list[tuple[str, str]], limit: int = 400) -> str:
    """(cause, mirror) pairs as one line, each cause once with the mirrors that gave it."""
    by_cause: dict[str, list[str]] = {}
    for cause, mirror in failures:
        by_cause.setdefault(cause, []).append(mirror)
    line = "; ".join(f"{c} at {' and '.join(dict.fromkeys(m))}" for c, m in by_cause.items())
    return _one_line(line, limit)


def _make_dirs(spec: DatasetSpec, raw: Path, head: str) -> list[Path]:
    """Create ``raw`` and its missing parents; returns those it created, deepest first."""
    new = [p for p in (raw, *raw.parents) if _stat(spec, p) is None]
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_dirs(new)
        raise DataError(
            f"{head} and {raw} cannot be created to download it ({e.strerror or e}); {_put(spec, raw)}"
        ) from e
    return new


def _remove_dirs(new: list[Path]) -> None:
    """Remove the folders in ``new`` (deepest first) while they are empty."""
    for folder in new:
        try:
            os.rmdir(folder)  # only ever removes an empty folder
        except OSError:
            break


def download(
    root: str | os.PathLike | None = None,
    *,
    dataset: Dataset = "mnist",
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download the dataset's raw files that are missing from ``raw_dir(root)``.

    Each file comes from the first of ``spec.mirrors`` that serves a valid ``<file>.gz`` (its
    MD5, then the decompressed file's header, length and MD5 are checked before it is renamed
    into place); a mirror that cannot be reached is not asked again. ``timeout_s`` bounds every
    socket operation, so a dead network fails instead of hanging. Returns the absolute root.
    On failure removes every file and folder it created and raises a one-line ``DataError``:
    what is missing, where, why each mirror failed, and what to do.
    """
    spec = spec_of(dataset)
    root = resolve_root(root).resolve()
    raw = raw_dir(root, spec)
    missing = [name for name in spec.files if not _is_file(spec, raw / name)]
    if not missing:
        return root
    head = f"{spec.title} not found in {raw} (missing {', '.join(missing)})"
    if not spec.mirrors:
        raise DataError(f"{head} and it has no download mirrors; {_put(spec, raw)}")
    new = _make_dirs(spec, raw, head)
    done: list[Path] = []
    down: dict[str, str] = {}  # mirror -> why it cannot be reached
    try:
        for name in missing:
            failures: list[tuple[str, str]] = []
            for mirror in spec.mirrors:
                if mirror in down:
                    failures.append((down[mirror], mirror))
                    continue
                try:
                    _fetch(spec, mirror, raw / name, timeout_s)
                except _MirrorFailed as e:
                    failures.append((e.cause, mirror))
                    if e.down:
                        down[mirror] = e.cause
                else:
                    done.append(raw / name)
                    break
            else:
                raise DataError(
                    f"{head} and the download failed ({name}.gz: {_fold(failures)}); "
                    f"{_put(spec, raw)}, or retry online"
                )
    except BaseException:  # Ctrl-C included: leave the folder as it was
        for path in done:
            path.unlink(missing_ok=True)
        _remove_dirs(new)
        raise
    return root


# ---------------------------------------------------------------------------- ensure and load


def _prepare(spec: DatasetSpec, root: Path, download_: bool) -> Path:
    """Make the four raw files present under absolute ``root``: extract .gz, else download if allowed.

    Returns ``root``. Creates nothing unless it extracts or downloads.
    """
    raw = raw_dir(root, spec)
    missing = [name for name in spec.files if not _is_file(spec, raw / name)]
    if not missing:
        return root
    st = _stat(spec, root)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise DataError(f"{spec.title} data location {root} is a file, not a folder; {_fix(spec)}")
    gzipped = [name for name in missing if _is_file(spec, raw / f"{name}.gz")]
    if len(gzipped) < len(missing):
        _refuse_too_deep(spec, root)
    for name in gzipped:
        _extract(spec, raw / f"{name}.gz", raw / name)
    missing = [name for name in missing if name not in gzipped]
    if not missing:
        return root
    if not download_:
        raise DataError(_missing_message(spec, root, missing))
    return download(root, dataset=spec)


def ensure(
    root: str | os.PathLike | None = None, *, dataset: Dataset = "mnist", download: bool = True
) -> Path:
    """Make sure the dataset's four raw files are present and valid, without decoding them.

    Extracts the published .gz files if only those are present, downloads when files are missing
    and ``download`` is true, then checks headers, lengths and MD5s (see ``verify``). Returns the
    data root as an absolute path. Raises ``DataError`` with a one-line message saying what is
    wrong, where, and what to do. Creates folders only when it downloads.
    """
    spec = spec_of(dataset)
    root = _prepare(spec, resolve_root(root).resolve(), download)
    verify(root, spec)
    return root


def _read_idx(spec: DatasetSpec, path: Path) -> np.ndarray:
    """The uint8 data of raw file ``path``, shaped as its header declares (after validating it)."""
    dims = spec.dims(path.name)
    try:
        with open(path, "rb") as f:
            _check_header(spec, f, path)
            data = np.fromfile(f, dtype=np.uint8, count=math.prod(dims))
    except OSError as e:
        raise _access_error(spec, path, e) from e
    if data.size != math.prod(dims):  # shrank after the header was checked
        raise _invalid(spec, path, f"it ended after {data.size} of {math.prod(dims)} data bytes")
    return data.reshape(dims)


def _read_split(spec: DatasetSpec, root: Path, files: tuple[str, str]) -> Split:
    """The split in raw ``files`` (images, labels) under ``root``, scaled as ``scale`` does."""
    images_path, labels_path = (raw_dir(root, spec) / name for name in files)
    images = torch.from_numpy(_read_idx(spec, images_path))
    labels = torch.from_numpy(_read_idx(spec, labels_path))
    top = int(labels.max())
    if top >= spec.n_classes:  # would fail deep in the loss, on a GPU without saying where
        raise _invalid(
            spec, labels_path, f"it holds label {top}, but {spec.title} has {spec.n_classes} classes"
        )
    return Split(scale(images.reshape(len(images), spec.n_features)), labels.to(torch.int64))


def scale(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [0, 255] -> float32 (p - 127.5) / 127.5 in [-1, 1]: the reference's ToTensor
    and Normalize(0.5, 0.5), computed with one rounding (p - 127.5 is exact in float32)."""
    return pixels.sub(127.5).div_(127.5)


def load(
    root: str | os.PathLike | None = None,
    *,
    dataset: Dataset = "mnist",
    download: bool = True,
    check: bool = True,
) -> Data:
    """Load a dataset into memory (MNIST unless ``dataset`` names another or is a spec).

    Returns a ``Data`` with ``train`` and ``test`` (``spec.train_size`` and ``spec.test_size``
    rows); features are float32 pixels scaled to [-1, 1] (one column per pixel), labels int64
    in 0..n_classes-1, ``root`` the absolute data root and ``spec`` the dataset's spec. Files
    are extracted from the published .gz or downloaded only when absent (see ``ensure``) and
    checked against the published MD5s when ``check`` is true; headers and lengths are checked
    always. Raises ``DataError`` with a one-line message: what is wrong, where, and what to do.
    """
    spec = spec_of(dataset)
    root = resolve_root(root).resolve()
    root = ensure(root, dataset=spec, download=download) if check else _prepare(spec, root, download)
    return Data(
        train=_read_split(spec, root, spec.train_files),
        test=_read_split(spec, root, spec.test_files),
        root=root,
        spec=spec,
    )
