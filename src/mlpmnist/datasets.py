"""Each dataset the package can train on is one ``DatasetSpec``: where its files live, their
checksums and sizes, where the download fetches them, its class names, and the reference study's
numbers where the study has them. Adding a dataset means writing its spec and ``register``-ing it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reference:
    """The reference study's numbers on one dataset: final test accuracy (fraction) per batch
    size, one seed each, after ``epochs`` epochs at ``lr``; and its headline accuracy."""

    accuracy: Mapping[int, float]
    headline: float
    epochs: int = 15
    lr: float = 0.1


@dataclass(frozen=True)
class DatasetSpec:
    """One IDX image dataset in torchvision's layout: ``<root>/<folder>/raw/<file>``.

    ``files``: the four raw files (train images, train labels, test images, test labels, in
    that order) -> MD5 of the uncompressed file (None: not published; headers and lengths are
    still checked). ``mirrors``: base URLs that the download tries in order for ``<file>.gz``.
    ``classes``: one name per label. ``reference``: the reference study's numbers, or None.
    """

    name: str
    folder: str
    files: Mapping[str, str | None]
    mirrors: tuple[str, ...]
    train_size: int
    test_size: int
    classes: tuple[str, ...]
    image_shape: tuple[int, int] = (28, 28)
    reference: Reference | None = None
    gz_md5: Mapping[str, str] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        """Pixels per image (the network's input width)."""
        return math.prod(self.image_shape)

    @property
    def n_classes(self) -> int:
        """Labels (the network's output width)."""
        return len(self.classes)


MNIST = DatasetSpec(
    name="mnist",
    folder="MNIST",
    files={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    train_size=60_000,
    test_size=10_000,
    classes=tuple(str(d) for d in range(10)),
    # The notebook this project reproduces: epoch-15 test accuracy, one seed per batch size, lr 0.1.
    reference=Reference(
        accuracy={
            8: 0.9148,
            16: 0.9400,
            32: 0.9682,
            48: 0.9701,
            64: 0.9693,
            90: 0.9745,
            128: 0.9711,
            150: 0.9696,
        },
        headline=0.9764,
    ),
    gz_md5={
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)

_IDX_FILES = tuple(MNIST.files)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    folder="FashionMNIST",
    files=dict.fromkeys(_IDX_FILES),  # the uncompressed files' MD5s are not published
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    train_size=60_000,
    test_size=10_000,
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    gz_md5=dict(
        zip(
            _IDX_FILES,
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
            strict=True,
        )
    ),
)

KMNIST = DatasetSpec(
    name="kmnist",
    folder="KMNIST",
    files=dict.fromkeys(_IDX_FILES),
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    train_size=60_000,
    test_size=10_000,
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    gz_md5=dict(
        zip(
            _IDX_FILES,
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            ),
            strict=True,
        )
    ),
)

_REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in (MNIST, FASHION_MNIST, KMNIST)}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Make ``spec`` available by its name (``TrainConfig(dataset=...)``); returns it."""
    _REGISTRY[spec.name] = spec
    return spec


def names() -> tuple[str, ...]:
    """The registered datasets' names."""
    return tuple(_REGISTRY)


def get(name: str) -> DatasetSpec:
    """The spec called ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(_REGISTRY)}") from None
