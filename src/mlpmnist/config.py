"""``TrainConfig``: the one definition of what a training run computes. The CLI's flags, the
notebooks' parameters and a sweep's grid axes all derive from its fields (help text, type), so a
new field needs no other edit; one added after keys were introduced names its ``baseline`` (the
value that computes what runs computed before it), so every stored key stays valid."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import operator
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from mlpmnist.data import specs as datasets
from mlpmnist.values import MAX_SEEDS, READERS, TooMany, is_int, is_number, plain

if TYPE_CHECKING:
    import torch

SCHEDULES = ("constant", "cosine", "linear")
DTYPES = ("float32", "float64")
# An optimizer's name here and its rule in engine/rules.py (RULES) are all it takes.
OPTIMIZERS = ("sgd", "adam")
ACTIVATIONS = ("relu", "leaky_relu")
DEVICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"
MAX_SHIFT = 4
MAX_LR = 3.4e38  # float32 is the engines' dtype: a larger lr cannot even be stored
# Sizes checked before anything is allocated (one engine holds every seed as a replica; a
# 784-65536-65536-10 MLP is already 17 GB per replica in float32; see also training.memory).
MAX_EPOCHS = 100_000
MAX_HIDDEN, MAX_LAYERS = 65_536, 100
_NO_BASELINE = object()


def meta(
    help: str,
    *,
    identity: bool = True,
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
    baseline: Any = _NO_BASELINE,
) -> dict[str, Any]:
    """A field's metadata. ``identity=False``: the field says where or how fast a run goes, not
    what it computes. ``choices``: the allowed values, or a function listing them. ``baseline``:
    the value that computes what runs did before the field existed (there it stays out of the hash)."""
    return {"help": help, "identity": identity, "choices": choices, "baseline": baseline}


def _setting(default: Any, help: str, **options: Any) -> Any:
    return field(default=default, metadata=meta(help, **options))


@dataclass(frozen=True)
class TrainConfig:
    """One training configuration; its replicas differ by seed (and optionally by lr). Lists may be
    lists or tuples, numpy scalars stand for numbers; an unknown keyword is a ``TypeError`` naming
    the closest field."""

    batch_size: int = _setting(90, "training examples per step")
    epochs: int = _setting(15, "passes over the training set")
    lr: float | tuple[float, ...] = _setting(0.1, "learning rate: one number, or one per seed")
    seeds: tuple[int, ...] = _setting(
        tuple(range(10)),
        "one replica per seed, trained in lockstep; a seed fixes init and batch order (0-9: ten)",
    )
    hidden: tuple[int, ...] = _setting((64, 64), "units per hidden layer")
    activation: str = _setting(
        "relu",
        "the hidden units: relu, or leaky_relu (slope 0.01 below zero, torch's default; model.LEAKY_SLOPE)",
        choices=ACTIVATIONS,
        baseline="relu",
    )
    optimizer: str = _setting(
        "sgd",
        "sgd (torch.optim.SGD: momentum, weight_decay) or adam (torch.optim.Adam: betas 0.9, 0.999, "
        "eps 1e-8, weight_decay as L2)",
        choices=lambda: OPTIMIZERS,  # read when checked: a test may register one more
        baseline="sgd",
    )
    momentum: float = _setting(0.0, "SGD momentum (torch.optim.SGD's), in [0, 1)")
    weight_decay: float = _setting(0.0, "L2 weight decay, added to the gradient")
    schedule: str = _setting("constant", "learning-rate schedule over all steps", choices=SCHEDULES)
    max_shift: int = _setting(
        0, f"augmentation: random translations of up to N pixels (0 = none, at most {MAX_SHIFT})"
    )
    drop_last: bool = _setting(False, "use only full batches (else the remainder ends each epoch)")
    dataset: str = _setting(
        "mnist",
        "the images: mnist, fashion-mnist, kmnist (see mlpmnist.datasets)",
        choices=datasets.names,
        baseline="mnist",
    )
    inputs: str = _setting(
        "scaled",
        "pixels as given to the network: scaled to [-1, 1] (the reference), centered (minus each "
        "pixel's training mean) or standardized (also divided by its training SD)",
        choices=("scaled", "centered", "standardized"),
        baseline="scaled",
    )
    train_limit: int | None = _setting(None, "train on the first N training images only (none = all)")
    holdout: int = _setting(0, "keep the last N training images aside as a validation split")
    target: float | None = _setting(
        None,
        "stop each replica once its validation accuracy reaches this fraction (needs holdout; "
        "none: train every epoch)",
        baseline=None,
    )
    eval_ratio: float | None = _setting(
        None,
        "none: evaluate after every epoch; r > 1: also evaluate the validation split after steps "
        "spaced by the ratio r (each about r times the one before), from eval_from images on",
        baseline=None,
    )
    eval_from: int = _setting(0, "images seen before the first of eval_ratio's evaluations", baseline=0)
    snapshots: tuple[float, ...] = _setting(
        (),
        "epochs (0 = initialisation, fractions allowed) after which each replica's weights are kept "
        "in its weights file",
        baseline=(),
    )
    engine: str = _setting(
        "fast", "fast (stacked replicas) or reference (nn.Module + autograd)", choices=("fast", "reference")
    )
    dtype: str = _setting("float32", "float64 is for checking the engines, not for speed", choices=DTYPES)
    device: str = _setting("auto", f"{DEVICES}; auto picks CUDA when available", identity=False)
    # One thread measured fastest or near it for these small products on a CPU, and it does not
    # stall when other processes share the cores, as two spinning threads do (bench/run.py).
    threads: int | None = _setting(1, "torch intra-op threads (none = torch's default)", identity=False)

    def __new__(cls, *args: Any, **kwargs: Any) -> TrainConfig:
        # Misspelled keywords get the same message in Python as on the CLI and in notebooks.
        try:
            check_names(kwargs, fields=field_names(cls))
        except ValueError as e:
            raise TypeError(str(e)) from None
        return super().__new__(cls)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, plain(getattr(self, f.name)))
        if isinstance(self.lr, tuple) and len(self.lr) == 1 and len(self.seeds) != 1:
            object.__setattr__(self, "lr", self.lr[0])
        if isinstance(self.snapshots, tuple) and all(is_number(e) for e in self.snapshots):
            # One key for 1 and 1.0.
            object.__setattr__(self, "snapshots", tuple(float(e) for e in self.snapshots))
        self.validate()

    @property
    def spec(self) -> datasets.DatasetSpec:
        """The dataset's spec (sizes, classes, files)."""
        return datasets.get(self.dataset)

    @property
    def n_train(self) -> int:
        """Training examples per epoch."""
        n = self.spec.train_size if self.train_limit is None else self.train_limit
        return n - self.holdout

    @property
    def steps_per_epoch(self) -> int:
        """Steps per epoch: full batches, plus the remainder unless ``drop_last``."""
        if self.drop_last:
            return self.n_train // self.batch_size
        return math.ceil(self.n_train / self.batch_size)

    @property
    def lrs(self) -> tuple[float, ...]:
        """One learning rate per replica."""
        return self.lr if isinstance(self.lr, tuple) else (self.lr,) * len(self.seeds)

    @property
    def replicas(self) -> tuple[tuple[int, float], ...]:
        """(seed, lr) per replica, in order."""
        return tuple(zip(self.seeds, self.lrs, strict=True))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field, its value and what is allowed. Values
        only: whether the device exists is checked when training starts."""
        if self.dataset not in datasets.names():  # first: the sizes below come from its spec
            _fail("dataset", self.dataset, f"one of {', '.join(datasets.names())}")
        size = self.spec.train_size
        if self.train_limit is not None and not (is_int(self.train_limit) and 1 <= self.train_limit <= size):
            _fail("train_limit", self.train_limit, f"none or an integer in [1, {size}]")
        n_all = size if self.train_limit is None else self.train_limit
        if not (is_int(self.holdout) and 0 <= self.holdout < n_all):
            _fail("holdout", self.holdout, f"an integer in [0, {n_all - 1}]")
        if not (is_int(self.batch_size) and 1 <= self.batch_size <= self.n_train):
            _fail("batch_size", self.batch_size, f"an integer in [1, {self.n_train}] (the training-set size)")
        if not (is_int(self.epochs) and 1 <= self.epochs <= MAX_EPOCHS):
            _fail("epochs", self.epochs, f"an integer in [1, {MAX_EPOCHS:,}]")
        if not (isinstance(self.seeds, tuple) and self.seeds):
            _fail("seeds", self.seeds, "a non-empty list of integers")
        if len(self.seeds) > MAX_SEEDS:
            _fail("seeds", len(self.seeds), f"at most {MAX_SEEDS:,} seeds (one replica each)")
        if not all(is_int(s) and 0 <= s < 2**63 for s in self.seeds):
            _fail("seeds", self.seeds, "a list of integers in [0, 2**63)")
        if not all(is_number(v) and 0 < v <= MAX_LR for v in self.lrs):
            _fail("lr", self.lr, f"a finite number in (0, {MAX_LR:g}] (or one per seed)")
        if isinstance(self.lr, tuple) and len(self.lr) != len(self.seeds):
            _fail("lr", self.lr, f"a number or a list of {len(self.seeds)} (one per seed)")
        if len(set(self.replicas)) != len(self.replicas):
            dup = sorted({r for r in self.replicas if self.replicas.count(r) > 1})
            _fail("seeds", self.seeds, f"distinct (seed, lr) replicas; duplicated: {dup}")
        if not (
            isinstance(self.hidden, tuple) and self.hidden and all(is_int(h) and h >= 1 for h in self.hidden)
        ):
            _fail("hidden", self.hidden, "a non-empty list of positive integers")
        if len(self.hidden) > MAX_LAYERS or max(self.hidden) > MAX_HIDDEN:
            _fail("hidden", self.hidden, f"at most {MAX_LAYERS} layers of at most {MAX_HIDDEN:,} units each")
        if not (is_number(self.momentum) and 0 <= self.momentum < 1):
            _fail("momentum", self.momentum, "a number in [0, 1)")
        if self.momentum and self.optimizer != "sgd":
            _fail("momentum", self.momentum, f"0 with optimizer {self.optimizer} (momentum is SGD's)")
        if not (is_number(self.weight_decay) and self.weight_decay >= 0):
            _fail("weight_decay", self.weight_decay, "a finite number >= 0")
        if not (is_int(self.max_shift) and 0 <= self.max_shift <= MAX_SHIFT):
            _fail("max_shift", self.max_shift, f"an integer in [0, {MAX_SHIFT}]")
        if not isinstance(self.drop_last, bool):
            _fail("drop_last", self.drop_last, "true or false")
        if self.target is not None and not (is_number(self.target) and 0 < self.target <= 1):
            _fail("target", self.target, "none or an accuracy in (0, 1]")
        if self.target is not None and not self.holdout:
            _fail("target", self.target, "none without holdout (the target is a validation accuracy)")
        if self.eval_ratio is not None and not (is_number(self.eval_ratio) and 1 < self.eval_ratio <= 10):
            _fail("eval_ratio", self.eval_ratio, "none or a number in (1, 10]")
        if not (is_int(self.eval_from) and 0 <= self.eval_from <= self.epochs * self.n_train):
            _fail("eval_from", self.eval_from, f"an integer in [0, {self.epochs * self.n_train:,}] (images)")
        snaps = self.snapshots
        in_range = isinstance(snaps, tuple) and all(is_number(e) and 0 <= e <= self.epochs for e in snaps)
        if not (in_range and len(set(snaps)) == len(snaps)):
            _fail("snapshots", snaps, f"distinct epochs in [0, {self.epochs}]")
        for name in fields_of(type(self)):
            allowed = choices(name, type(self))
            if allowed and getattr(self, name) not in allowed:
                _fail(name, getattr(self, name), f"one of {', '.join(allowed)}")
        if self.threads is not None and not (is_int(self.threads) and self.threads >= 1):
            _fail("threads", self.threads, "none or an integer >= 1")
        if not (isinstance(self.device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device)):
            _fail("device", self.device, DEVICES)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (tuples become lists)."""
        return {k: _listed(v) for k, v in dataclasses.asdict(self).items()}

    def identity(self) -> dict[str, Any]:
        """``to_dict`` without the fields that do not change the results (device, threads)."""
        ids = identity_fields(type(self))
        return {k: v for k, v in self.to_dict().items() if k in ids}

    def key(self) -> str:
        """A stable, readable name for what this config computes, e.g. ``bs0032-lr0.1-e2-s2-adam-
        3fa2c1d95b0e7a41``: batch size, lr, epochs, seeds, ``key_tags``, then 16 hex digits of a
        SHA-256 of every result-changing field not at its ``baseline``."""
        tags = "".join(f"-{t}" for t in key_tags(self))
        return f"{self._readable()}{tags}-{self._digest()[:16]}"

    def legacy_key(self) -> str:
        """The key of stores made before 16-digit keys, e.g. ``bs0090-lr0.1-e15-s10-cc249222``: no
        tags, 8 hex digits of the same hash (which collide by chance: the store checks the config)."""
        return f"{self._readable()}-{self._digest()[:8]}"

    def _readable(self) -> str:
        lr = "var" if isinstance(self.lr, tuple) else f"{self.lr:g}"
        return f"bs{self.batch_size:04d}-lr{lr}-e{self.epochs}-s{len(self.seeds)}"

    def _digest(self) -> str:
        fields = fields_of(type(self))
        # A field without a baseline is always hashed (_NO_BASELINE equals no value).
        hashed = {k: v for k, v in self.identity().items() if _listed(fields[k].metadata["baseline"]) != v}
        return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        """``base`` (default: the defaults) with ``values`` replaced, text parsed as on the command
        line (``"0-9"`` for seeds, ``"none"``); unknown names are a ``ValueError`` listing the valid ones."""
        check_names(values, fields=field_names(cls))
        parsed = {k: parse_value(k, v, cls) if isinstance(v, str) else v for k, v in values.items()}
        return dataclasses.replace(base or cls(), **parsed)


def fields_of(cls: type = TrainConfig) -> dict[str, dataclasses.Field]:
    """The fields of ``cls`` (``TrainConfig`` or a subclass) by name, in order."""
    return {f.name: f for f in dataclasses.fields(cls)}


FIELDS = fields_of(TrainConfig)


def field_names(cls: type = TrainConfig) -> tuple[str, ...]:
    """The field names of ``cls`` (``TrainConfig`` or a subclass), in order."""
    return tuple(fields_of(cls))


def identity_fields(cls: type = TrainConfig) -> tuple[str, ...]:
    """Names of the fields that change what a run computes."""
    return tuple(n for n, f in fields_of(cls).items() if f.metadata["identity"])


def choices(name: str, cls: type = TrainConfig) -> tuple[str, ...] | None:
    """The values field ``name`` allows, when it is a choice (else None)."""
    c = fields_of(cls)[name].metadata["choices"]
    return c() if callable(c) else c


def baseline(name: str, cls: type = TrainConfig) -> Any:
    """The value of field ``name`` in records made before it existed (its default otherwise)."""
    f = fields_of(cls)[name]
    return f.default if f.metadata["baseline"] is _NO_BASELINE else f.metadata["baseline"]


#: A result-changing field not at its baseline in a key's tags (any other: its name and value).
_TAGS: dict[str, Callable[[Any], str]] = {
    **dict.fromkeys(("optimizer", "schedule", "dataset", "inputs", "engine"), str),
    "momentum": lambda v: f"m{v:g}",
    "weight_decay": lambda v: f"wd{v:g}",
    "max_shift": lambda v: f"shift{v}",
    "drop_last": lambda v: "droplast",
    "train_limit": lambda v: f"n{v}",
    "holdout": lambda v: f"ho{v}",
    "hidden": lambda v: "h" + "x".join(map(str, v)),
    "target": lambda v: f"t{v:g}",
    "eval_ratio": lambda v: f"er{v:g}",
    "eval_from": lambda v: f"ef{v}",
    "snapshots": lambda v: f"snap{len(v)}",
    "dtype": lambda v: "f64" if v == "float64" else str(v),
}
_ALWAYS_NAMED = ("batch_size", "lr", "epochs", "seeds")
#: A key's tags take at most this many characters, each at most the second (they are for people).
_TAGS_MAX, _TAG_MAX = 80, 24


def key_tags(config: TrainConfig) -> list[str]:
    """The key's words for ``config``'s result-changing fields not at their ``baseline``, e.g.
    ``['adam', 'wd0.0005']``; a long one shortened, those past ``_TAGS_MAX`` left out."""
    out: list[str] = []
    for name in identity_fields(type(config)):
        value = getattr(config, name)
        if name in _ALWAYS_NAMED or value == baseline(name, type(config)):
            continue
        tag = _TAGS[name](value) if name in _TAGS else f"{name}{_shown_value(value)}"
        tag = re.sub(r"[^A-Za-z0-9._+-]", "_", tag)
        tag = tag if len(tag) <= _TAG_MAX else tag[: _TAG_MAX - 3] + "..."
        if sum(len(t) + 1 for t in out) + len(tag) + 1 <= _TAGS_MAX:
            out.append(tag)
    return out


def _shown_value(v: object) -> str:
    if isinstance(v, tuple):
        return "x".join(map(str, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_names(
    names: Iterable[str], what: str = "TrainConfig field", fields: Sequence[str] = tuple(FIELDS)
) -> None:
    """Raise ``ValueError`` naming each unknown name among ``fields`` (with the closest) and listing all."""
    if unknown := [n for n in names if n not in fields]:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(str(n), fields, n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        s = "s" if len(unknown) > 1 else ""
        raise ValueError(f"unknown {what}{s} {', '.join(hints)}; valid: {', '.join(fields)}")


def resolve_device(device: str | None) -> torch.device:
    """``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``, checked
    against this machine; ``ValueError`` naming the field when it is not here."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            _fail("device", device, "'cpu' or 'auto' here: torch.cuda.is_available() is False")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            _fail("device", device, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return dev


def _fail(name: str, value: object, allowed: str) -> NoReturn:
    raise ValueError(f"{name} must be {allowed}; got {value!r}")


def _listed(v: object) -> object:
    """``v`` as JSON writes it: a tuple as a list."""
    return list(v) if isinstance(v, tuple) else v


@functools.cache
def field_types(cls: type = TrainConfig) -> dict[str, Any]:
    """Each field's type, ``X | None`` as ``X`` (the key of its reader in ``values.READERS``)."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        # Only None goes: ``float | tuple[float, ...] | None`` reads as ``float | tuple[float, ...]``.
        out[name] = functools.reduce(operator.or_, rest) if len(rest) < len(typing.get_args(hint)) else hint
    return out


def parse_value(name: str, text: str, cls: type = TrainConfig) -> Any:
    """Field ``name``'s value from ``text`` (``"none"`` for None where allowed), else a ``ValueError``
    saying what it must be, in words."""
    optional = type(None) in typing.get_args(typing.get_type_hints(cls)[name])
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    parse, words = READERS[field_types(cls)[name]]
    try:
        return parse(text)
    except TooMany as e:
        raise ValueError(f"{name} must be {e}") from None
    except ValueError:
        raise ValueError(f"{name} must be {words}; got {text!r}") from None
