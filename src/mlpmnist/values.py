"""Values given to ``TrainConfig``: read from text (command-line flags, notebook parameters, grid
axes) as its fields' types (``config.parse_value``; a field of a new type gets a line in ``READERS``),
or given in Python as plain numbers and tuples (``plain``)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeGuard

#: Seeds at most (one engine holds every seed as a replica): also the most values text expands to.
MAX_SEEDS = 10_000


class TooMany(ValueError):
    """A range that expands to more values than any field takes (``MAX_SEEDS``)."""


def is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plain(v: object) -> object:
    """numpy (or torch) scalars as Python numbers, lists and arrays as tuples; else unchanged."""
    if getattr(v, "ndim", None) == 0 and hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return tuple(plain(x) for x in v)
    return v


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t not in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        raise ValueError(f"not true or false: {text!r}")
    return t in ("true", "yes", "1", "on")


def _ints(text: str) -> tuple[int, ...]:
    """``"0 1 2"``, ``"0,1,2"``, ``"64x64"`` or a range ``"0-9"`` (inclusive) as integers."""
    out: list[int] = []
    for part in re.split(r"[\s,x]+", text.strip().strip("[]()")):
        if m := re.fullmatch(r"(\d+)-(\d+)", part):
            lo, hi = int(m[1]), int(m[2])
            if hi < lo:
                raise ValueError(f"empty range {part!r}")
            if hi - lo + 1 + len(out) > MAX_SEEDS:  # checked before the list is built
                raise TooMany(f"at most {MAX_SEEDS:,} values; got {text.strip()!r} ({hi - lo + 1:,} values)")
            out += range(lo, hi + 1)
        elif part:
            out.append(int(part))
    return tuple(out)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(p) for p in re.split(r"[\s,]+", text.strip().strip("[]()")) if p)


def _float_or_floats(text: str) -> float | tuple[float, ...]:
    values = _floats(text)
    return values[0] if len(values) == 1 else values


#: Each field type's reader of text, and its values in words for messages.
READERS: dict[Any, tuple[Callable[[str], Any], str]] = {
    int: (int, "a whole number"),
    float: (float, "a number"),
    bool: (_bool, "true or false"),
    str: (str, "text"),
    tuple[int, ...]: (_ints, "whole numbers, such as 0 1 2 or a range 0-9"),
    tuple[float, ...]: (_floats, "numbers, such as 0 1 2.5"),
    float | tuple[float, ...]: (_float_or_floats, "a number, or one number per seed"),
}
