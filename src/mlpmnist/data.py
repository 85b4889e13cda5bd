"""MNIST as whole in-memory tensors: checked, flattened and scaled to [-1, 1].

The four IDX files are read directly (a big-endian header, then uint8 data), so loading never
imports torchvision; torchvision is imported only to download missing files.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import shutil
import socket
import stat
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

ENV_VAR = "MLPMNIST_DATA"
DEFAULT_ROOT = "data"
TRAIN_SIZE = 60_000
TEST_SIZE = 10_000
N_FEATURES = 28 * 28
N_CLASSES = 10

# MD5 of the uncompressed published files (the ones torchvision leaves in MNIST/raw).
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

# IDX magic numbers: 0x08 (unsigned byte) << 8 | number of dimensions.
_LABELS_MAGIC = 2049
_IMAGES_MAGIC = 2051
# Per socket operation, so a download on a network that drops packets fails instead of hanging.
_DOWNLOAD_TIMEOUT_S = 30.0
# The tail of every message about missing or bad data: what to do instead.
_FIX = f"set {ENV_VAR} to a folder holding MNIST/raw/*-ubyte (CI: ../shared/data)"


class DataError(RuntimeError):
    """MNIST is missing, corrupt or cannot be downloaded."""


@dataclass(frozen=True)
class Split:
    """One split: ``x`` is float32 [N, 784] in [-1, 1], ``y`` is int64 [N] in 0..9, and
    ``pixels`` the uint8 [N, 784] that ``scale`` maps exactly onto ``x`` (None when unknown)."""

    x: torch.Tensor
    y: torch.Tensor
    pixels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Split:
        pixels = None if self.pixels is None else self.pixels.to(device)
        return Split(self.x.to(device, dtype), self.y.to(device), pixels)

    def head(self, n: int) -> Split:
        return Split(self.x[:n], self.y[:n], None if self.pixels is None else self.pixels[:n])

    def tail(self, n: int) -> Split:
        return Split(self.x[-n:], self.y[-n:], None if self.pixels is None else self.pixels[-n:])


@dataclass(frozen=True)
class MNIST:
    train: Split
    test: Split
    root: Path


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root``, else ``$MLPMNIST_DATA``, else ``./data`` (not made absolute)."""
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return Path(root).expanduser()


def raw_dir(root: Path) -> Path:
    """The folder under ``root`` that holds the four IDX files: ``root/MNIST/raw``."""
    return root / "MNIST" / "raw"


def _expected_header(name: str) -> tuple[int, tuple[int, ...]]:
    """(magic number, dimensions) that the published file ``name`` declares in its header."""
    n = TRAIN_SIZE if name.startswith("train") else TEST_SIZE
    return (_IMAGES_MAGIC, (n, 28, 28)) if "images" in name else (_LABELS_MAGIC, (n,))


def _shape(dims: tuple[int, ...]) -> str:
    return "x".join(map(str, dims))


def _header_problem(header: bytes, size: int, name: str) -> str | None:
    """What is wrong with file ``name`` of ``size`` bytes whose first bytes are ``header``, or None."""
    magic, dims = _expected_header(name)
    n_header = 4 * (1 + len(dims))
    if len(header) < 4:
        return f"at {size} bytes it is too short to hold an IDX header"
    got = int.from_bytes(header[:4], "big")
    if got != magic:
        kind = "images" if magic == _IMAGES_MAGIC else "labels"
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


def _invalid(path: Path, problem: str) -> DataError:
    return DataError(
        f"{path} is not a valid MNIST file: {problem}; delete it and download MNIST again, or {_FIX}"
    )


def _blocked_at(path: Path) -> Path:
    """The first folder on the way to ``path`` that this process may not enter, else ``path``."""
    for folder in reversed(path.parents):
        if not os.access(folder, os.X_OK):
            return folder
    return path


def _access_error(path: Path, err: OSError) -> DataError:
    """One-line ``DataError`` for an ``OSError`` met while reaching or reading ``path``."""
    if isinstance(err, PermissionError):
        where = _blocked_at(path)
        return DataError(
            f"permission denied reading {where}; make it readable (chmod a+rX {where}) or {_FIX}"
        )
    return DataError(f"cannot read {path} ({err.strerror or err}); {_FIX}")


def _stat(path: Path) -> os.stat_result | None:
    """``path``'s stat, or None if nothing is there; raises ``DataError`` if it cannot be reached."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise _access_error(path, e) from e


def _is_file(path: Path) -> bool:
    """Whether a regular file is at ``path``; raises ``DataError`` if something else is there."""
    st = _stat(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path} is not a regular file; remove it and download MNIST again, or {_FIX}")
    return st is not None


def _check_header(f: BinaryIO, path: Path) -> None:
    """Validate the IDX header and length of ``path``, open as ``f`` at its start; reads the header."""
    _, dims = _expected_header(path.name)
    problem = _header_problem(f.read(4 * (1 + len(dims))), os.fstat(f.fileno()).st_size, path.name)
    if problem:
        raise _invalid(path, problem)


@functools.cache
def _md5(path: str, size: int, mtime_ns: int) -> str:
    """Hex MD5 of ``path``; keyed on size and mtime so a replaced file is hashed again."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(root: Path) -> None:
    """Check the four raw files (IDX header, length, then MD5 against the published one).

    Returns None; raises ``DataError`` naming the first bad file. Each file is hashed once per
    process unless its size or mtime changes.
    """
    for name, expected in MD5.items():
        path = raw_dir(root) / name
        try:
            with open(path, "rb") as f:
                _check_header(f, path)
                st = os.fstat(f.fileno())
            digest = _md5(str(path.resolve()), st.st_size, st.st_mtime_ns)
        except OSError as e:
            raise _access_error(path, e) from e
        if digest != expected:
            raise DataError(
                f"{path} is corrupt: its MD5 is {digest}, not the published {expected} "
                f"({st.st_size} bytes); delete it and download MNIST again, or {_FIX}"
            )


def _missing_message(root: Path, missing: list[str], download: bool) -> str:
    where = f"; {root} does not exist" if _stat(root) is None else ""
    todo = "run once with internet access to download it" if download else "load once with download=True"
    return f"MNIST not found in {raw_dir(root)} (missing {', '.join(missing)}{where}); {_FIX} or {todo}"


def _refuse_too_deep(root: Path) -> None:
    """Raise ``DataError`` if the raw files sit in ``root`` or ``root/raw`` instead of ``root/MNIST/raw``.

    Pointing the data location at .../MNIST or .../MNIST/raw is an easy slip; without this check a
    download would nest a second copy inside the real one.
    """
    candidates = (
        (root / "raw", root.parent, root.name == "MNIST"),
        (root, root.parent.parent, root.name == "raw" and root.parent.name == "MNIST"),
    )
    for folder, parent, named_so in candidates:
        if any(_stat(folder / n) is not None or _stat(folder / f"{n}.gz") is not None for n in MD5):
            todo = f"use {parent} instead of {root}" if named_so else f"move them into {raw_dir(root)}"
            raise DataError(
                f"MNIST not found in {raw_dir(root)}, but its files are in {folder}: {ENV_VAR} (or the "
                f"root passed in) must name the folder that holds MNIST/raw, so {todo}"
            )


def _extract(gz: Path, dest: Path) -> None:
    """Decompress the published ``gz`` into ``dest`` atomically (temporary file, then rename)."""
    tmp: Path | None = None
    try:
        with (
            gzip.open(gz, "rb") as src,
            tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as out,
        ):
            tmp = Path(out.name)
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, dest)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        # Caught before OSError, which gzip.BadGzipFile also is.
        raise DataError(
            f"{gz} is not a valid gzip file ({e}) and {dest.name} is missing next to it; "
            f"delete {gz} and download MNIST again, or {_FIX}"
        ) from e
    except OSError as e:
        if e.filename is not None and Path(e.filename) == gz:
            raise _access_error(gz, e) from e
        raise DataError(
            f"cannot extract {gz} into {dest.parent} ({e.strerror or e}); make {dest.parent} writable, "
            f"or gunzip the four .gz files into a folder X/MNIST/raw yourself and set {ENV_VAR}=X"
        ) from e
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` as one line of at most ``limit`` characters, repeated lines dropped."""
    # torchvision's download error lists each mirror ("Tried URL, got:") with the same cause.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("Tried ")]
    line = " ".join(dict.fromkeys(lines))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _download(root: Path, missing: list[str]) -> None:
    """Download MNIST into ``raw_dir(root)`` with torchvision; on failure remove the folders it made."""
    new = [p for p in (raw_dir(root), *raw_dir(root).parents) if _stat(p) is None]
    head = f"MNIST not found in {raw_dir(root)} (missing {', '.join(missing)})"
    try:
        from torchvision.datasets import MNIST as TorchMNIST
    except ImportError as e:
        raise DataError(f"{head} and torchvision, which downloads it, is not installed ({e}); {_FIX}") from e
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        TorchMNIST(str(root), train=True, download=True)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError on no network
        for folder in new:  # deepest first; os.rmdir only ever removes an empty folder
            try:
                os.rmdir(folder)
            except OSError:
                break
        cause = _one_line(str(e)) or type(e).__name__
        raise DataError(f"{head} and the download failed ({cause}); {_FIX} or retry online") from e
    finally:
        socket.setdefaulttimeout(old_timeout)


def _prepare(root: Path, download: bool) -> Path:
    """Make the four raw files present under absolute ``root``: extract .gz, else download if allowed.

    Returns ``root``. Creates nothing unless it extracts or downloads.
    """
    raw = raw_dir(root)
    missing = [name for name in MD5 if not _is_file(raw / name)]
    if not missing:
        return root
    st = _stat(root)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise DataError(f"MNIST data location {root} is a file, not a folder; {_FIX}")
    gzipped = [name for name in missing if _is_file(raw / f"{name}.gz")]
    if len(gzipped) < len(missing):
        _refuse_too_deep(root)
    for name in gzipped:
        _extract(raw / f"{name}.gz", raw / name)
    missing = [name for name in missing if name not in gzipped]
    if not missing:
        return root
    if not download:
        raise DataError(_missing_message(root, missing, download))
    _download(root, missing)
    still = [name for name in MD5 if not _is_file(raw / name)]
    if still:
        raise DataError(_missing_message(root, still, download))
    return root


def ensure(root: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Make sure the four raw MNIST files are present and valid, without decoding them.

    Extracts the published .gz files if only those are present, downloads when files are missing
    and ``download`` is true, then checks headers, lengths and MD5s (see ``verify``). Returns the
    data root as an absolute path. Raises ``DataError`` with a one-line message saying what is
    wrong, where, and what to do. Creates folders only when it downloads.
    """
    root = _prepare(resolve_root(root).resolve(), download)
    verify(root)
    return root


def _read_idx(path: Path) -> np.ndarray:
    """The uint8 data of IDX file ``path``, shaped as its header declares (after validating it)."""
    _, dims = _expected_header(path.name)
    try:
        with open(path, "rb") as f:
            _check_header(f, path)
            data = np.fromfile(f, dtype=np.uint8, count=math.prod(dims))
    except OSError as e:
        raise _access_error(path, e) from e
    if data.size != math.prod(dims):  # shrank after the header was checked
        raise _invalid(path, f"it ended after {data.size} of {math.prod(dims)} data bytes")
    return data.reshape(dims)


def _read_split(root: Path, prefix: str) -> Split:
    """Split ``prefix`` ("train" or "t10k") from ``root``'s raw files, scaled as ``scale`` does."""
    images = torch.from_numpy(_read_idx(raw_dir(root) / f"{prefix}-images-idx3-ubyte"))
    labels = torch.from_numpy(_read_idx(raw_dir(root) / f"{prefix}-labels-idx1-ubyte"))
    pixels = images.reshape(len(images), N_FEATURES)
    return Split(scale(pixels), labels.to(torch.int64), pixels)


def scale(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [0, 255] -> float32 (p - 127.5) / 127.5 in [-1, 1]: the reference's ToTensor
    and Normalize(0.5, 0.5), computed with one rounding (p - 127.5 is exact in float32)."""
    return pixels.sub(127.5).div_(127.5)


def to_pixels(x: torch.Tensor) -> torch.Tensor | None:
    """The uint8 pixels that ``scale`` maps exactly onto ``x``, or None if there are none.

    Gathering random rows of uint8 moves a quarter of the bytes of float32, which is what
    bounds a training step's batch gather on a CPU.
    """
    if x.dtype != torch.float32:
        return None
    p = x.add(1.0).mul_(127.5).round_()
    if p.min() < 0 or p.max() > 255:
        return None
    p = p.to(torch.uint8)
    return p if torch.equal(scale(p), x) else None


def load(root: str | os.PathLike | None = None, *, download: bool = True, check: bool = True) -> MNIST:
    """Load MNIST into memory.

    Returns an ``MNIST`` with ``train`` (60,000 rows) and ``test`` (10,000 rows); features are
    float32 pixels scaled to [-1, 1], labels int64, and ``root`` the absolute data root. Files are
    extracted from the published .gz or downloaded only when absent (see ``ensure``) and checked
    against the published MD5s when ``check`` is true; headers and lengths are checked always.
    Raises ``DataError`` with a one-line message: what is wrong, where, and what to do.
    """
    root = resolve_root(root).resolve()
    root = ensure(root, download=download) if check else _prepare(root, download)
    return MNIST(train=_read_split(root, "train"), test=_read_split(root, "t10k"), root=root)
