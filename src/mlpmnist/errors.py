"""The package's expected faults: each is bad input or a broken file, said in one line (what,
where, what to do), which the CLI prints as ``error: ...`` and the notebooks show without a
traceback. A leaf module: every stage may raise them."""

from __future__ import annotations


class DataError(RuntimeError):
    """A dataset is missing, corrupt or cannot be downloaded."""


class StoreError(ValueError):
    """A results file or folder that cannot be used as one."""


class SweepError(RuntimeError):
    """The sweep as a whole cannot go on (no workers, scheduler lost)."""
