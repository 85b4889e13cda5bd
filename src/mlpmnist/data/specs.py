"""Each dataset the package can train on is one ``DatasetSpec``; adding one means writing its spec
and ``register``-ing it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


def _spec_problem(spec: DatasetSpec) -> str | None:
    """What is wrong with ``spec``'s own values, or None."""
    if len(spec.files) != 4:
        return (
            f"needs four files (train images, train labels, test images, test labels), got {list(spec.files)}"
        )
    if unknown := set(spec.gz_md5) - set(spec.files):
        return f"gz_md5 names files it does not have: {sorted(unknown)}"
    if spec.train_size < 1 or spec.test_size < 1:
        return f"train_size and test_size must be positive, got {spec.train_size} and {spec.test_size}"
    if len(spec.image_shape) != 2 or min(spec.image_shape) < 1:
        return f"image_shape must be (height, width), got {spec.image_shape}"
    if not 2 <= len(spec.classes) <= 256:  # labels are one byte each
        return f"needs 2 to 256 classes, got {len(spec.classes)}"
    if not spec.folder or "/" in spec.folder or spec.folder in (".", ".."):
        return f"folder must be one folder name, got {spec.folder!r}"
    if bad := [m for m in spec.mirrors if not (m.startswith(("http://", "https://")) and m.endswith("/"))]:
        return f"mirrors must be http(s) URLs ending in '/' (the file names are appended), got {bad}"
    return None


@dataclass(frozen=True)
class DatasetSpec:
    """One IDX image dataset in torchvision's layout, ``<root>/<folder>/raw/<file>``. ``files``: the
    four raw files (train images, train labels, test images, test labels) -> MD5 (None: not published).
    ``mirrors``: base URLs tried in order for ``<file>.gz``. ``classes``: one name per label.
    ``gz_md5``: file -> MD5 of its ``.gz``. ``title``: the name messages use (default ``name``)."""

    name: str
    folder: str
    files: Mapping[str, str | None]
    mirrors: tuple[str, ...]
    train_size: int
    test_size: int
    classes: tuple[str, ...]
    image_shape: tuple[int, int] = (28, 28)
    gz_md5: Mapping[str, str] = field(default_factory=dict)
    title: str = ""

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", self.name)
        if problem := _spec_problem(self):
            raise ValueError(f"dataset spec {self.name!r}: {problem}")

    def dims(self, file: str) -> tuple[int, ...]:
        """The dimensions in raw file ``file``'s IDX header: (n, height, width) or (n,)."""
        i = list(self.files).index(file)
        n = self.train_size if i < 2 else self.test_size
        return (n, *self.image_shape) if i % 2 == 0 else (n,)

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
    title="MNIST",
    folder="MNIST",
    files={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    train_size=60_000,
    test_size=10_000,
    classes=tuple(str(d) for d in range(10)),
    gz_md5={
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)


def _per_file(*md5s: str) -> dict[str, str]:
    """The MD5s of files named as MNIST's, in their order."""
    return dict(zip(MNIST.files, md5s, strict=True))


FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    folder="FashionMNIST",
    files=dict.fromkeys(MNIST.files),  # the uncompressed files' MD5s are not published
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
    gz_md5=_per_file(
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
)

KMNIST = DatasetSpec(
    name="kmnist",
    title="KMNIST",
    folder="KMNIST",
    files=dict.fromkeys(MNIST.files),
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    train_size=60_000,
    test_size=10_000,
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    gz_md5=_per_file(
        "bdb82020997e1d708af4cf47b453dcf7",
        "e144d726b3acfaa3e44228e80efcd344",
        "5c965bf0a639b31b8f53240b1b52f4d7",
        "7320c461ea6c1c855c0b718fb2a4b134",
    ),
)

_REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in (MNIST, FASHION_MNIST, KMNIST)}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Make ``spec`` available by its name (``TrainConfig(dataset=...)``, ``data.load``); returns it.
    ``ValueError`` if another spec already has that name or folder."""
    for other in _REGISTRY.values():
        if other != spec and spec.name == other.name:
            raise ValueError(f"another dataset is already registered as {spec.name!r}")
        if other.name != spec.name and spec.folder == other.folder:
            raise ValueError(f"dataset {other.name!r} already keeps its files in {spec.folder!r}")
    _REGISTRY[spec.name] = spec
    return spec


def folders() -> dict[str, DatasetSpec]:
    """The registered datasets by folder name (each keeps its files in ``<root>/<folder>/raw``)."""
    return {s.folder: s for s in _REGISTRY.values()}


def names() -> tuple[str, ...]:
    """The registered datasets' names."""
    return tuple(_REGISTRY)


def get(name: str) -> DatasetSpec:
    """The spec called ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(_REGISTRY)}") from None
