"""Synthetic IDX datasets for tests: arrays written as IDX files in torchvision's layout under a
data root, specs with their checksums, and a spec registered for one test only (``register``).

- ``synthetic_*``: random 12x10 images of 5 classes ('a' to 'e'), non-square and named unlike
  MNIST's, so nothing can lean on MNIST's layout (the loader's and downloader's tests);
- ``toy_*``: a learnable 8x8 dataset of 4 classes (the class says which edge of the image is
  bright, over noise), small enough to train in seconds (the datasets' and figures' tests).
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from mlpmnist.data import loader as mdata
from mlpmnist.data import specs as datasets


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an IDX file: magic 0x08 << 8 | ndim, the dimensions, the data."""
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def gz(blob: bytes) -> bytes:
    return gzip.compress(blob, compresslevel=1, mtime=0)


def write_raw(root: Path, spec: datasets.DatasetSpec, arrays: dict[str, np.ndarray]) -> Path:
    """Each array of ``arrays`` (file name -> array) as its IDX file in ``spec``'s raw folder
    under ``root``; returns that folder."""
    raw = mdata.raw_dir(root, spec)
    raw.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (raw / name).write_bytes(idx_bytes(array))
    return raw


def register(monkeypatch: pytest.MonkeyPatch, spec: datasets.DatasetSpec) -> datasets.DatasetSpec:
    """``datasets.register(spec)`` for the running test only: the registry is a copy that
    ``monkeypatch`` puts back when the test ends."""
    monkeypatch.setattr(datasets, "_REGISTRY", dict(datasets._REGISTRY))
    return datasets.register(spec)


def spec_for(arrays: dict[str, np.ndarray], **fields) -> datasets.DatasetSpec:
    """A spec for ``arrays`` (file name -> array, in the spec's file order) with the MD5s of
    their IDX files and of their .gz and no mirror; ``fields`` give the rest, or replace these."""
    blobs = {n: idx_bytes(a) for n, a in arrays.items()}
    checksums = dict(
        files={n: hashlib.md5(b).hexdigest() for n, b in blobs.items()},
        gz_md5={n: hashlib.md5(gz(b)).hexdigest() for n, b in blobs.items()},
        mirrors=(),
    )
    return datasets.DatasetSpec(**{**checksums, **fields})


SYN_FILES = ("syn-train-images", "syn-train-labels", "syn-test-images", "syn-test-labels")
SYN_SHAPE = (12, 10)
SYN_CLASSES = ("a", "b", "c", "d", "e")
SYN_TRAIN, SYN_TEST = 300, 100


def synthetic_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """The synthetic dataset's four arrays by file name (images uint8 [N, 12, 10], labels uint8 [N])."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (n, *SYN_SHAPE), dtype=np.uint8) for n in (SYN_TRAIN, SYN_TEST)]
    for im in images:  # the extremes, so the [-1, 1] scaling is seen at both ends
        im[0, 0, 0], im[0, 0, 1] = 0, 255
    labels = [rng.integers(0, len(SYN_CLASSES), n, dtype=np.uint8) for n in (SYN_TRAIN, SYN_TEST)]
    return dict(zip(SYN_FILES, (images[0], labels[0], images[1], labels[1]), strict=True))


def synthetic_spec(arrays: dict[str, np.ndarray], name: str = "synthetic-test", **kw) -> datasets.DatasetSpec:
    """The synthetic dataset's spec for ``arrays`` ('Synthetic', no mirror); ``kw`` replace fields."""
    fields = dict(
        name=name,
        title="Synthetic",
        folder="Synthetic",
        train_size=SYN_TRAIN,
        test_size=SYN_TEST,
        classes=SYN_CLASSES,
        image_shape=SYN_SHAPE,
    )
    return spec_for(arrays, **{**fields, **kw})


TOY_SHAPE, TOY_CLASSES, TOY_TRAIN, TOY_TEST = (8, 8), ("left", "right", "top", "bottom"), 400, 200
TOY_FILES = ("toy-train-images", "toy-train-labels", "toy-test-images", "toy-test-labels")


def toy_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """The toy dataset's four arrays by file name: images uint8 [N, 8, 8] of noise in [0, 200)
    whose class's edge (two pixels deep) is brighter (at least 150), labels uint8 [N]. Noisy
    enough that a small network trained briefly with random shifts still errs (batch 50, shifts
    of 1 pixel, 3 epochs: about 75% right, chance 25%)."""
    rng = np.random.default_rng(seed)
    out = []
    edges = [np.s_[:, :2], np.s_[:, -2:], np.s_[:2, :], np.s_[-2:, :]]
    for n in (TOY_TRAIN, TOY_TEST):
        labels = rng.integers(0, len(TOY_CLASSES), n)
        images = rng.integers(0, 200, (n, *TOY_SHAPE))
        for im, c in zip(images, labels, strict=True):
            im[edges[c]] = np.maximum(im[edges[c]], rng.integers(150, 256, im[edges[c]].shape))
        out += [images.astype(np.uint8), labels.astype(np.uint8)]
    return dict(zip(TOY_FILES, out, strict=True))


def toy_spec(arrays: dict[str, np.ndarray]) -> datasets.DatasetSpec:
    """The toy dataset's spec for ``arrays`` ('toy', folder Toy, no mirror)."""
    return spec_for(
        arrays,
        name="toy",
        title="Toy",
        folder="Toy",
        train_size=TOY_TRAIN,
        test_size=TOY_TEST,
        classes=TOY_CLASSES,
        image_shape=TOY_SHAPE,
    )


def toy_root(root: Path) -> tuple[datasets.DatasetSpec, Path]:
    """The toy dataset's files written under the data root ``root``: (its spec, not yet
    registered, and ``root``)."""
    arrays = toy_arrays()
    spec = toy_spec(arrays)
    write_raw(root, spec, arrays)
    return spec, root
