"""``TrainConfig``: the one definition of what a training run computes.

Every field carries its help text in its metadata, and its type says how to read it from text.
The CLI's flags, the experiment notebook's parameters and a sweep's grid axes are all derived
from these fields, so a new field needs no other edit to become all three.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import torch

TRAIN_SIZE = 60_000  # MNIST's training set; data.py holds the same constant
SCHEDULES = ("constant", "cosine", "linear")
ENGINES = ("fast", "reference")
DTYPES = ("float32", "float64")
DEVICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"
MAX_SHIFT = 4
# float32 is the engines' dtype: a larger lr cannot even be stored.
MAX_LR = 3.4e38


def _meta(help: str, *, identity: bool = True, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    # identity=False: the field says where or how fast a run goes, not what it computes.
    return {"help": help, "identity": identity, "choices": choices}


@dataclass(frozen=True)
class TrainConfig:
    """One training configuration; its replicas differ by seed (and optionally by lr).

    Each field's help text (``TrainConfig.help(name)``) says what it means. Lists may be given as
    lists or tuples; numpy scalars are accepted where Python numbers are.
    """

    batch_size: int = field(default=90, metadata=_meta("training examples per SGD step"))
    epochs: int = field(default=15, metadata=_meta("passes over the training set"))
    lr: float | tuple[float, ...] = field(
        default=0.1, metadata=_meta("SGD learning rate: one number, or one per seed")
    )
    seeds: tuple[int, ...] = field(
        default=tuple(range(10)),
        metadata=_meta(
            "one replica per seed, trained in lockstep; a seed fixes init and batch order (0-9: ten)"
        ),
    )
    hidden: tuple[int, ...] = field(default=(64, 64), metadata=_meta("units per hidden ReLU layer"))
    momentum: float = field(default=0.0, metadata=_meta("SGD momentum (torch.optim.SGD's), in [0, 1)"))
    weight_decay: float = field(default=0.0, metadata=_meta("L2 weight decay (torch.optim.SGD's)"))
    schedule: str = field(
        default="constant", metadata=_meta("learning-rate schedule over all steps", choices=SCHEDULES)
    )
    max_shift: int = field(
        default=0,
        metadata=_meta(
            f"augmentation: random translations of up to N pixels (0 = none, at most {MAX_SHIFT})"
        ),
    )
    drop_last: bool = field(
        default=False, metadata=_meta("use only full batches (else the remainder ends each epoch)")
    )
    train_limit: int | None = field(
        default=None, metadata=_meta("train on the first N training images only (none = all 60,000)")
    )
    holdout: int = field(
        default=0, metadata=_meta("keep the last N training images aside as a validation split")
    )
    engine: str = field(
        default="fast",
        metadata=_meta("fast (stacked replicas) or reference (nn.Module + autograd)", choices=ENGINES),
    )
    dtype: str = field(
        default="float32",
        metadata=_meta("float64 is for checking the engines, not for speed", choices=DTYPES),
    )
    device: str = field(
        default="auto", metadata=_meta(f"{DEVICES}; auto picks CUDA when available", identity=False)
    )
    # One thread measured fastest or near it for these small products on a CPU, and it does not
    # stall when other processes share the cores, as two spinning threads do (bench/run.py).
    threads: int | None = field(
        default=1, metadata=_meta("torch intra-op threads (none = torch's default)", identity=False)
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _plain(getattr(self, f.name)))
        if isinstance(self.lr, tuple) and len(self.lr) == 1 and len(self.seeds) != 1:
            object.__setattr__(self, "lr", self.lr[0])
        self.validate()

    # ------------------------------------------------------------------ derived values

    @property
    def n_train(self) -> int:
        """Training examples per epoch."""
        n = TRAIN_SIZE if self.train_limit is None else self.train_limit
        return n - self.holdout

    @property
    def steps_per_epoch(self) -> int:
        """SGD steps per epoch: full batches, plus the remainder unless ``drop_last``."""
        return (
            self.n_train // self.batch_size if self.drop_last else math.ceil(self.n_train / self.batch_size)
        )

    @property
    def lrs(self) -> tuple[float, ...]:
        """One learning rate per replica."""
        return self.lr if isinstance(self.lr, tuple) else (self.lr,) * len(self.seeds)

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field, its value and what is allowed."""
        if self.train_limit is not None and not (
            _is_int(self.train_limit) and 1 <= self.train_limit <= TRAIN_SIZE
        ):
            _fail("train_limit", self.train_limit, f"none or an integer in [1, {TRAIN_SIZE}]")
        n_all = TRAIN_SIZE if self.train_limit is None else self.train_limit
        if not (_is_int(self.holdout) and 0 <= self.holdout < n_all):
            _fail("holdout", self.holdout, f"an integer in [0, {n_all - 1}]")
        if not (_is_int(self.batch_size) and 1 <= self.batch_size <= self.n_train):
            _fail("batch_size", self.batch_size, f"an integer in [1, {self.n_train}] (the training-set size)")
        if not (_is_int(self.epochs) and self.epochs >= 1):
            _fail("epochs", self.epochs, "an integer >= 1")
        if not (isinstance(self.seeds, tuple) and self.seeds):
            _fail("seeds", self.seeds, "a non-empty list of integers")
        if not all(_is_int(s) and 0 <= s < 2**63 for s in self.seeds):
            _fail("seeds", self.seeds, "a list of integers in [0, 2**63)")
        lrs = self.lr if isinstance(self.lr, tuple) else (self.lr,)
        if not all(_is_number(v) and 0 < v <= MAX_LR for v in lrs):
            _fail("lr", self.lr, f"a finite number in (0, {MAX_LR:g}] (or one per seed)")
        if isinstance(self.lr, tuple) and len(self.lr) != len(self.seeds):
            _fail("lr", self.lr, f"a number or a list of {len(self.seeds)} (one per seed)")
        replicas = list(zip(self.seeds, self.lrs, strict=True))
        if len(set(replicas)) != len(replicas):
            dup = sorted({r for r in replicas if replicas.count(r) > 1})
            _fail("seeds", self.seeds, f"distinct (seed, lr) replicas; duplicated: {dup}")
        if not (
            isinstance(self.hidden, tuple) and self.hidden and all(_is_int(h) and h >= 1 for h in self.hidden)
        ):
            _fail("hidden", self.hidden, "a non-empty list of positive integers")
        if not (_is_number(self.momentum) and 0 <= self.momentum < 1):
            _fail("momentum", self.momentum, "a number in [0, 1)")
        if not (_is_number(self.weight_decay) and self.weight_decay >= 0):
            _fail("weight_decay", self.weight_decay, "a finite number >= 0")
        if not (_is_int(self.max_shift) and 0 <= self.max_shift <= MAX_SHIFT):
            _fail("max_shift", self.max_shift, f"an integer in [0, {MAX_SHIFT}]")
        if not isinstance(self.drop_last, bool):
            _fail("drop_last", self.drop_last, "true or false")
        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            if choices and getattr(self, f.name) not in choices:
                _fail(f.name, getattr(self, f.name), f"one of {', '.join(choices)}")
        if self.threads is not None and not (_is_int(self.threads) and self.threads >= 1):
            _fail("threads", self.threads, "none or an integer >= 1")
        resolve_device(self.device)

    # ------------------------------------------------------------------ identity and I/O

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def identity(self) -> dict[str, Any]:
        """``to_dict`` without the fields that do not change the results (device, threads)."""
        ids = identity_fields()
        return {k: v for k, v in self.to_dict().items() if k in ids}

    def key(self) -> str:
        """A stable, readable name for what this config computes, e.g. ``bs0090-lr0.1-e15-s10-3fa2c1d9``:
        batch size, lr, epochs and number of seeds, then a hash of every result-changing field."""
        lr = "var" if isinstance(self.lr, tuple) else f"{self.lr:g}"
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]
        return f"bs{self.batch_size:04d}-lr{lr}-e{self.epochs}-s{len(self.seeds)}-{digest}"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        """``base`` (default: the defaults) with ``values`` replaced. Text values of non-text fields
        are parsed as on the command line (``"0-9"`` for seeds, ``"none"``); unknown names are a
        ``ValueError`` that names them and lists the valid ones."""
        check_names(values)
        parsed = {k: parse_value(k, v) if isinstance(v, str) else v for k, v in values.items()}
        return dataclasses.replace(base or cls(), **parsed)

    @staticmethod
    def help(name: str) -> str:
        """The help text of field ``name``."""
        return FIELDS[name].metadata["help"]


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}


def identity_fields() -> tuple[str, ...]:
    """Names of the fields that change what a run computes."""
    return tuple(n for n, f in FIELDS.items() if f.metadata["identity"])


def check_names(names: Mapping[str, Any] | list[str], what: str = "TrainConfig field") -> None:
    """Raise ``ValueError`` naming each unknown field name (with the closest valid one) and listing all."""
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(str(n), FIELDS, n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        s = "s" if len(unknown) > 1 else ""
        raise ValueError(f"unknown {what}{s} {', '.join(hints)}; valid: {', '.join(FIELDS)}")


# Reject misspelled keywords with the same message in Python as on the CLI and in notebooks.
_dataclass_init = TrainConfig.__init__


def _init_checking_names(self: TrainConfig, *args: Any, **kwargs: Any) -> None:
    try:
        check_names(kwargs)
    except ValueError as e:
        raise TypeError(str(e)) from None
    _dataclass_init(self, *args, **kwargs)


_init_checking_names.__doc__ = _dataclass_init.__doc__
_init_checking_names.__signature__ = inspect.signature(_dataclass_init)  # type: ignore[attr-defined]
setattr(TrainConfig, "__init__", _init_checking_names)  # noqa: B010


def resolve_device(device: str | None) -> torch.device:
    """``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (isinstance(device, str) and re.fullmatch(r"cpu|cuda(:\d+)?", device)):
        _fail("device", device, DEVICES)
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            _fail("device", device, "'cpu' or 'auto' here: torch.cuda.is_available() is False")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            _fail("device", device, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return dev


# ---------------------------------------------------------------------- values from text


def _fail(name: str, value: object, allowed: str) -> NoReturn:
    raise ValueError(f"{name} must be {allowed}; got {value!r}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _plain(v: object) -> object:
    """numpy (or torch) scalars as Python numbers, lists and arrays as tuples; else unchanged."""
    if v is None or isinstance(v, (str, bool)):
        return v
    if getattr(v, "ndim", None) == 0 and hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    return v


def _int(text: str) -> int:
    return int(text)


def _float(text: str) -> float:
    return float(text)


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "yes", "1", "on"):
        return True
    if t in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"not true or false: {text!r}")


def _ints(text: str) -> tuple[int, ...]:
    """``"0 1 2"``, ``"0,1,2"``, ``"64x64"`` or a range ``"0-9"`` (inclusive) as integers."""
    out: list[int] = []
    for part in re.split(r"[\s,x]+", text.strip().strip("[]()")):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            lo, hi = int(m[1]), int(m[2])
            if hi < lo:
                raise ValueError(f"empty range {part!r}")
            out += range(lo, hi + 1)
        else:
            out.append(int(part))
    return tuple(out)


def _floats(text: str) -> float | tuple[float, ...]:
    vals = tuple(float(p) for p in re.split(r"[\s,]+", text.strip().strip("[]()")) if p)
    return vals[0] if len(vals) == 1 else vals


def _text(text: str) -> str:
    return text


# How to read each field's type from text; a new field with a new type gets a line here.
PARSERS: dict[str, Callable[[str], Any]] = {
    "int": _int,
    "float": _float,
    "bool": _bool,
    "str": _text,
    "tuple[int, ...]": _ints,
    "float | tuple[float, ...]": _floats,
    "int | None": _int,
}


def parse_value(name: str, text: str) -> Any:
    """Field ``name``'s value from ``text`` (``"none"`` for None where allowed); ``ValueError``
    in the package's format when it cannot be read."""
    kind = str(FIELDS[name].type)
    if "None" in kind and text.strip().lower() in ("none", "null", ""):
        return None
    try:
        return PARSERS[kind](text)
    except ValueError:
        _fail(name, text, f"readable as {kind.replace(' | None', '')}")
