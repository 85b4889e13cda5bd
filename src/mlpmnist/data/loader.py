"""A dataset in memory: its four IDX files found under the data root (``idx``), extracted from
their .gz or downloaded (``download``) where missing, checked, and read into whole tensors."""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from mlpmnist.data import idx
from mlpmnist.data import specs as datasets
from mlpmnist.data.download import download
from mlpmnist.data.idx import ENV_VAR, Dataset, raw_dir, resolve_root, spec_of, verify
from mlpmnist.data.specs import DatasetSpec
from mlpmnist.errors import DataError


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


def _refuse_too_deep(spec: DatasetSpec, root: Path) -> None:
    """``DataError`` if the raw files sit in ``root`` or ``root/raw`` instead of ``root/<folder>/raw``
    (an easy slip, after which a download would nest a second copy inside the real one). Any
    registered dataset's folder counts: .../MNIST is as wrong a root for Fashion-MNIST."""
    owners = {**datasets.folders(), spec.folder: spec}
    candidates = (
        (root / "raw", root.parent, owners.get(root.name)),
        (root, root.parent.parent, owners.get(root.parent.name) if root.name == "raw" else None),
    )
    for folder, parent, owner in candidates:
        if any(idx.stat_of(spec, folder / name) is not None for n in spec.files for name in (n, f"{n}.gz")):
            todo = f"use {parent} instead of {root}" if owner else f"move them into {raw_dir(root, spec)}"
            whose = "its" if owner in (None, spec) else f"{owner.title}'s"
            raise DataError(
                f"{spec.title} not found in {raw_dir(root, spec)}, but {whose} files are in {folder}: "
                f"{ENV_VAR} (or the root passed in) must name the folder that holds {spec.folder}/raw, "
                f"so {todo}"
            )


def _extract(spec: DatasetSpec, gz: Path, dest: Path) -> None:
    """Decompress the published ``gz`` into ``dest`` atomically (temporary file, then rename)."""
    try:
        with idx.scratch(dest) as tmp:
            idx.gunzip(gz, tmp)
            os.replace(tmp, dest)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        # Caught before OSError, which gzip.BadGzipFile also is.
        raise DataError(
            f"{gz} is not a valid gzip file ({e}) and {dest.name} is missing next to it; "
            f"delete {gz} and download {spec.title} again, or {idx.hint(spec)}"
        ) from e
    except OSError as e:
        if e.filename is not None and Path(e.filename) == gz:
            raise idx.access_error(spec, gz, e) from e
        raise DataError(
            f"cannot extract {gz} into {dest.parent} ({e.strerror or e}); make {dest.parent} writable, "
            f"or gunzip the four .gz files into a folder X/{spec.folder}/raw yourself and set {ENV_VAR}=X"
        ) from e


def _prepare(spec: DatasetSpec, root: Path, download_: bool) -> Path:
    """Make the raw files present under absolute ``root`` (from their .gz, else downloaded); returns it."""
    raw = raw_dir(root, spec)
    missing = [name for name in spec.files if not idx.is_file(spec, raw / name)]
    st = idx.stat_of(spec, root)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise DataError(f"{spec.title} data location {root} is a file, not a folder; {idx.hint(spec)}")
    gzipped = [name for name in missing if idx.is_file(spec, raw / f"{name}.gz")]
    if len(gzipped) < len(missing):
        _refuse_too_deep(spec, root)
    for name in gzipped:
        _extract(spec, raw / f"{name}.gz", raw / name)
    missing = [name for name in missing if name not in gzipped]
    if not missing:
        return root
    if not download_:
        where = f"; {root} does not exist" if st is None else ""
        todo = ", or load with download=True to download it" if spec.mirrors else ""
        raise DataError(
            f"{spec.title} not found in {raw} (missing {', '.join(missing)}{where}); "
            f"{idx.put_hint(spec, raw)}{todo}"
        )
    download(spec, root, missing)
    return root


def ensure(
    root: str | os.PathLike | None = None, *, dataset: Dataset = "mnist", download: bool = True
) -> Path:
    """Make sure the dataset's four raw files are present (extracted from their .gz, or downloaded
    when ``download``) and valid (``verify``), without decoding them; returns the absolute root."""
    spec = spec_of(dataset)
    root = _prepare(spec, resolve_root(root).resolve(), download)
    verify(root, spec)
    return root


def _read_split(spec: DatasetSpec, root: Path, files: list[str]) -> Split:
    images_path, labels_path = (raw_dir(root, spec) / name for name in files)
    images = torch.from_numpy(idx.read_idx(spec, images_path))
    labels = torch.from_numpy(idx.read_idx(spec, labels_path))
    top = int(labels.max())
    if top >= spec.n_classes:  # would fail deep in the loss, on a GPU without saying where
        raise idx.invalid(
            spec, labels_path, f"it holds label {top}, but {spec.title} has {spec.n_classes} classes"
        )
    # uint8 [0, 255] -> float32 (p - 127.5) / 127.5 in [-1, 1]: the reference's ToTensor and
    # Normalize(0.5, 0.5), with one rounding (p - 127.5 is exact in float32).
    x = images.reshape(len(images), spec.n_features).sub(127.5).div_(127.5)
    return Split(x, labels.to(torch.int64))


def load(
    root: str | os.PathLike | None = None,
    *,
    dataset: Dataset = "mnist",
    download: bool = True,
    check: bool = True,
) -> Data:
    """A dataset in memory; missing files are extracted or downloaded as ``ensure`` does, headers and
    lengths always checked, MD5s when ``check``."""
    spec = spec_of(dataset)
    root = resolve_root(root).resolve()
    root = ensure(root, dataset=spec, download=download) if check else _prepare(spec, root, download)
    files = list(spec.files)  # train images, train labels, test images, test labels
    return Data(_read_split(spec, root, files[:2]), _read_split(spec, root, files[2:]), root, spec)
