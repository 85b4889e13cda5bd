"""Bad input in a notebook ends in one line, as on the command line: ``one_line_errors()`` makes
the kernel show an expected fault raised by mlpmnist itself (``ValueError``, ``DataError``,
``SweepError``, ``MemoryError``) as ``error: <message>`` instead of a traceback. Other exceptions,
and those raised outside mlpmnist, keep theirs; ``%tb`` prints it; the cell still fails.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent  # mlpmnist itself, not only the workbench


def _raised_here(tb: TracebackType | None) -> bool:
    """Whether the innermost frame of ``tb`` is in mlpmnist's own code."""
    frames = traceback.extract_tb(tb)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(PACKAGE)


def one_line_errors() -> bool:
    """Install the one-line display of expected faults in the running IPython kernel. Returns
    False, doing nothing, outside IPython."""
    from IPython import get_ipython

    from mlpmnist.errors import DataError, SweepError, printable

    shell = get_ipython()
    if shell is None:
        return False

    def handler(
        self: Any, etype: type, value: BaseException, tb: TracebackType, tb_offset: Any = None
    ) -> Any:
        # IPython ignores what a custom handler returns: it shows the error itself.
        if not _raised_here(tb):
            self.showtraceback((etype, value, tb), tb_offset=tb_offset)
            return None
        sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # for %tb
        stb = [f"\x1b[31merror:\x1b[0m {printable(value)}  (%tb shows the traceback)"]
        self._showtraceback(etype, value, stb)
        return stb

    shell.set_custom_exc((ValueError, DataError, SweepError, MemoryError), handler)
    return True
