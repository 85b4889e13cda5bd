"""MNIST as whole in-memory tensors: checked, flattened and scaled to [-1, 1]."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

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


class DataError(RuntimeError):
    """MNIST is missing, corrupt or cannot be downloaded."""


@dataclass(frozen=True)
class Split:
    """One split: ``x`` is float32 [N, 784] in [-1, 1], ``y`` is int64 [N] in 0..9."""

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
class MNIST:
    train: Split
    test: Split
    root: Path


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root``, else ``$MLPMNIST_DATA``, else ``./data``."""
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return Path(root).expanduser()


def raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


def _missing_message(root: Path, missing: list[str], cause: str) -> str:
    files = "\n".join(f"  {raw_dir(root) / name}" for name in MD5)
    return (
        f"MNIST not found in {raw_dir(root.resolve())} ({cause}).\n"
        f"Missing: {', '.join(missing)}. Expected the four uncompressed IDX files:\n{files}\n"
        f"Fix: point the package at a directory holding MNIST/raw/*-ubyte, for example\n"
        f"  export {ENV_VAR}=/path/to/data   (in this repository's CI: {ENV_VAR}=../shared/data)\n"
        f"or pass data_dir=..., or run once with internet access so torchvision can download it."
    )


@functools.cache
def _md5_ok(path: str, size: int, mtime_ns: int, expected: str) -> bool:
    # Keyed on size and mtime so a replaced file is checked again; otherwise once per process.
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == expected


def verify(root: Path) -> None:
    """Check the four raw files against the published MD5s; raise ``DataError`` naming a bad one."""
    for name, expected in MD5.items():
        path = raw_dir(root) / name
        st = path.stat()
        if not _md5_ok(str(path.resolve()), st.st_size, st.st_mtime_ns, expected):
            raise DataError(
                f"{path} is corrupt or truncated: its MD5 does not match the published "
                f"{expected} ({st.st_size} bytes on disk). Delete it and download MNIST again, "
                f"or point {ENV_VAR} at a good copy."
            )


def _download(root: Path, missing: list[str]) -> None:
    from torchvision.datasets import MNIST as TorchMNIST

    try:
        TorchMNIST(str(root), train=True, download=True)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError on no network
        raise DataError(_missing_message(root, missing, f"download failed: {e}")) from e


def _read(root: Path, train: bool) -> Split:
    from torchvision.datasets import MNIST as TorchMNIST

    try:
        ds = TorchMNIST(str(root), train=train, download=False)
    except Exception as e:  # a file with a bad IDX header fails in torchvision's reader
        raise DataError(f"could not read MNIST from {raw_dir(root)}: {e}") from e
    return Split(scale(ds.data.reshape(len(ds.data), N_FEATURES)), ds.targets.to(torch.int64))


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
    float32 pixels scaled to [-1, 1], labels int64. Files are downloaded only when absent and
    ``download`` is true, and checked against the published MD5s when ``check`` is true.
    Raises ``DataError`` with the directory searched and how to fix it.
    """
    root = resolve_root(root)
    missing = [name for name in MD5 if not (raw_dir(root) / name).is_file()]
    if missing:
        if not download:
            raise DataError(_missing_message(root, missing, "download=False"))
        _download(root, missing)
    if check:
        verify(root)
    return MNIST(train=_read(root, True), test=_read(root, False), root=root)
