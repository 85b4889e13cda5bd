"""The package's expected faults: each is bad input or a broken file, said in one line (what,
where, what to do), which the CLI prints as ``error: ...`` and the notebooks show without a
traceback. A leaf module: every stage may raise them."""

from __future__ import annotations

import re


class DataError(RuntimeError):
    """A dataset is missing, corrupt or cannot be downloaded."""


class StoreError(ValueError):
    """A results file or folder that cannot be used as one."""


class SweepError(RuntimeError):
    """The sweep as a whole cannot go on (no workers, scheduler lost)."""


# C0 and C1 controls (ANSI and OSC escapes start with ESC or CSI), DEL, and the Unicode marks that
# reorder text (bidi overrides): each could make a message show something it does not say.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """``text`` as one line with every control character written as its escape (e.g. ``\\x1b``), so
    a message built from a file's contents cannot fake a line of its own."""
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", str(text)
    )
