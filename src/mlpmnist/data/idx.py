"""Where a dataset's four IDX files live (from its ``DatasetSpec`` alone), and reading and
checking them: a big-endian header, then uint8 data. Every problem is a one-line ``DataError``
that ends in what to do (``hint``)."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import math
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TypeAlias

import numpy as np

from mlpmnist import paths
from mlpmnist.data import specs as datasets
from mlpmnist.data.specs import DatasetSpec
from mlpmnist.errors import DataError

ENV_VAR = "MLPMNIST_DATA"
Dataset: TypeAlias = "str | DatasetSpec"  # a dataset's name (see ``datasets.names()``) or its spec
CHUNK = 1 << 20


def spec_of(dataset: Dataset) -> DatasetSpec:
    """``dataset`` if it is a spec, else the registered spec of that name (``ValueError`` if none)."""
    return dataset if isinstance(dataset, DatasetSpec) else datasets.get(dataset)


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data root, which holds every dataset in its own folder: ``root`` (a relative one from
    the working folder, as a command-line flag), else ``$MLPMNIST_DATA``, else ``data``, these two
    read from the repository root (``paths.base``) whatever folder a kernel starts in."""
    if root is not None:
        return Path(root).expanduser()
    path = Path(os.environ.get(ENV_VAR) or "data").expanduser()
    if path.is_absolute() or paths.base() == Path.cwd().resolve():
        return path
    return paths.base() / path


def raw_dir(root: Path, dataset: Dataset = "mnist") -> Path:
    """``root/<folder>/raw``: the folder that holds the dataset's four IDX files."""
    return root / spec_of(dataset).folder / "raw"


def hint(spec: DatasetSpec) -> str:
    """What to do about missing or bad data, with what the variable holds now."""
    now, fix = os.environ.get(ENV_VAR), f"set {ENV_VAR} to a folder holding {spec.folder}/raw/*-ubyte"
    if not now:
        return fix
    where = "" if Path(now).expanduser().is_absolute() else f", read from {paths.describe_base()}"
    return f"{fix} (it is {now!r}{where})"


def put_hint(spec: DatasetSpec, raw: Path) -> str:
    return f"put its four files, or their .gz, into {raw}, or {hint(spec)}"


def invalid(spec: DatasetSpec, path: Path, problem: str) -> DataError:
    return DataError(
        f"{path} is not a valid {spec.title} file: {problem}; "
        f"delete it and download {spec.title} again, or {hint(spec)}"
    )


def access_error(spec: DatasetSpec, path: Path, err: OSError) -> DataError:
    """``err``, met reaching or reading ``path``, as a ``DataError``; denied permission names the
    first folder on the way this process may not enter."""
    if isinstance(err, PermissionError):
        where = next((f for f in reversed(path.parents) if not os.access(f, os.X_OK)), path)
        return DataError(
            f"permission denied reading {where}; make it readable (chmod a+rX {where}) or {hint(spec)}"
        )
    return DataError(f"cannot read {path} ({err.strerror or err}); {hint(spec)}")


def stat_of(spec: DatasetSpec, path: Path) -> os.stat_result | None:
    """``path``'s stat, None if nothing is there; ``DataError`` if it cannot be reached."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise access_error(spec, path, e) from e


def is_file(spec: DatasetSpec, path: Path) -> bool:
    """Whether a regular file is at ``path``; ``DataError`` if something else is."""
    st = stat_of(spec, path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise DataError(
            f"{path} is not a regular file; remove it and download {spec.title} again, or {hint(spec)}"
        )
    return st is not None


def header_problem(spec: DatasetSpec, name: str, header: bytes, size: int) -> str | None:
    """What is wrong with raw file ``name`` of ``size`` bytes that starts with ``header``, or None."""
    dims = spec.dims(name)
    shape = "x".join(map(str, dims))
    magic = 0x0800 | len(dims)  # uint8 data (0x08), then the number of dimensions
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
        return f"its header declares {'x'.join(map(str, got_dims))}, expected {shape}"
    want = n_header + math.prod(dims)
    if size != want:
        how = "truncated" if size < want else "has trailing bytes"
        return f"it is {size} bytes, expected {want} ({n_header}-byte header + {shape} bytes): {how}"
    return None


def _check_header(spec: DatasetSpec, f: BinaryIO, path: Path) -> None:
    """``DataError`` if the header of ``path`` (open as ``f``, at its start) or its length is wrong."""
    n_header = 4 * (1 + len(spec.dims(path.name)))
    if problem := header_problem(spec, path.name, f.read(n_header), os.fstat(f.fileno()).st_size):
        raise invalid(spec, path, problem)


@functools.cache
def _md5(path: str, size: int, mtime_ns: int) -> str:
    """Hex MD5 of ``path``; size and mtime are in the key so that a replaced file is hashed again."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(root: Path, spec: DatasetSpec) -> None:
    """Check the dataset's four raw files under ``root``: header, length, then the MD5 where the
    spec publishes it (once per process and file version). ``DataError`` naming the first bad file."""
    for name, expected in spec.files.items():
        path = raw_dir(root, spec) / name
        try:
            with open(path, "rb") as f:
                _check_header(spec, f, path)
                st = os.fstat(f.fileno())
            digest = None if expected is None else _md5(str(path.resolve()), st.st_size, st.st_mtime_ns)
        except OSError as e:
            raise access_error(spec, path, e) from e
        if digest != expected:
            raise DataError(
                f"{path} is corrupt: its MD5 is {digest}, not the published {expected} "
                f"({st.st_size} bytes); delete it and download {spec.title} again, or {hint(spec)}"
            )


def read_idx(spec: DatasetSpec, path: Path) -> np.ndarray:
    """The uint8 data of raw file ``path``, shaped as its (checked) header declares."""
    dims = spec.dims(path.name)
    try:
        with open(path, "rb") as f:
            _check_header(spec, f, path)
            data = np.fromfile(f, dtype=np.uint8, count=math.prod(dims))
    except OSError as e:
        raise access_error(spec, path, e) from e
    if data.size != math.prod(dims):  # shrank after the header was checked
        raise invalid(spec, path, f"it ended after {data.size} of {math.prod(dims)} data bytes")
    return data.reshape(dims)


@contextlib.contextmanager
def scratch(dest: Path) -> Iterator[Path]:
    """A fresh path next to ``dest`` (so renaming it onto ``dest`` is atomic), removed on exit
    unless renamed; the caller creates the file (mode "xb": the umask's mode, not mkstemp's 0600)."""
    path = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def gunzip(gz: Path, out: Path) -> str:
    """Decompress ``gz`` into the new file ``out``; returns the hex MD5 of what it wrote.
    gzip.BadGzipFile, EOFError or zlib.error for a broken ``gz``, OSError otherwise."""
    h = hashlib.md5()
    with gzip.open(gz, "rb") as src, open(out, "xb") as dst:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            h.update(chunk)
            dst.write(chunk)
    return h.hexdigest()
