"""A sweep that draws itself as it goes: in a Jupyter kernel, the final-accuracy figure and the
experiments' table are redrawn as each experiment finishes.

``run_sweep`` wraps ``sweep.run_sweep``: it shows three outputs (a status line, the figure, the
table) through IPython display handles and updates them from the sweep's ``on_result``
callback; when the sweep ends they show its outcome, so the executed notebook keeps the final
figure and table. Outside a kernel (a script, the CLI) it is ``sweep.run_sweep`` unchanged.
Display handles are plain notebook outputs, so papermill records their last state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import Pretty

from mlpmnist import store
from mlpmnist.figures import compose as figures
from mlpmnist.store.records import failed_seeds, median_final
from mlpmnist.sweep.run import SweepConfig, SweepOutcome
from mlpmnist.sweep.run import run_sweep as _run_sweep


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Colab, papermill), where displays show."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _experiments(n: int) -> str:
    """'1 experiment', '8 experiments'."""
    return f"{n} experiment" + ("" if n == 1 else "s")


class LiveView:
    """The live outputs of one sweep: ``update(key, record)`` per finished experiment,
    ``finish(outcome)`` at the end. Experiments already done when it starts are shown at once."""

    def __init__(self, config: SweepConfig) -> None:
        from IPython.display import display

        self.config = config
        self.experiments = config.experiments()
        self.records: dict[str, dict] = {}
        root = Path(config.results_dir)
        for exp in self.experiments:  # resumed sweeps: what is already there
            found, _ = store.find(root, exp)
            if found is not None:
                self.records[exp.key()] = found.record
        self.before = len(self.records)
        self.t0 = time.perf_counter()
        self.status = display(Pretty(self._status_line()), display_id=True)
        self.figure = display(self._figure(), display_id=True)
        self.table = display(self._table(), display_id=True)

    def update(self, key: str, record: dict) -> None:
        """Redraw with ``record`` (the experiment ``key``'s, just written)."""
        self.records[key] = record
        try:
            fig = self._figure()
        except Exception as e:  # a drawing problem must not stop the sweep; finish() redraws
            fig = Pretty(f"(the figure could not be drawn yet: {e})")
        self.status.update(Pretty(self._status_line()))
        self.figure.update(fig)
        self.table.update(self._table())

    def finish(self, outcome: SweepOutcome) -> None:
        """The final state: the figure of every finished experiment of the sweep, its table."""
        try:
            fig: Any = figures.final_accuracy_figure(outcome.frame())
        except (ValueError, store.StoreError):  # nothing finished: say so instead
            fig = Pretty("no experiment finished: see the table")
        done = (outcome.table["status"] != "failed").sum()
        line = (
            f"{done} of {_experiments(len(outcome.table))} finished"
            + (f" ({self.before} done before)" if self.before else "")
            + f", {len(outcome.failed)} failed; sweep {outcome.seconds:.0f} s"
        )
        self.status.update(Pretty(line))
        self.figure.update(fig)
        self.table.update(outcome.table.drop(columns=["key"]))

    def _status_line(self) -> str:
        n, done = len(self.experiments), len(self.records)
        before = f" ({self.before} done before)" if self.before else ""
        return f"{done} of {_experiments(n)} finished{before}, {time.perf_counter() - self.t0:.0f} s"

    def _figure(self) -> Any:
        if not self.records:
            return Pretty("the final-accuracy figure appears here when the first experiment finishes")
        return figures.final_accuracy_figure(store.frame(list(self.records.values())))

    def _table(self) -> pd.DataFrame:
        rows = []
        for exp in self.experiments:
            record = self.records.get(exp.key())
            rows.append(
                {
                    **{name: getattr(exp, name) for name in self.config.grid},
                    "status": "waiting" if record is None else "done",
                    "failed_seeds": len(failed_seeds(record)) if record else 0,
                    "median_test_acc_%": round(median_final(record), 2) if record else float("nan"),
                    "seconds": round(float(record.get("seconds") or 0.0), 1) if record else float("nan"),
                }
            )
        return pd.DataFrame(rows)


def run_sweep(config: SweepConfig, progress: bool = True, **kw: Any) -> SweepOutcome:
    """``sweep.run_sweep(config, progress, **kw)``, drawn live in a Jupyter kernel (see the
    module). An ``on_result`` in ``kw`` is called too. Returns the sweep's outcome."""
    if not in_kernel():
        return _run_sweep(config, progress=progress, **kw)
    view = LiveView(config)
    theirs: Callable[[str, dict], None] | None = kw.pop("on_result", None)

    def on_result(key: str, record: dict) -> None:
        view.update(key, record)
        if theirs is not None:
            theirs(key, record)

    outcome = _run_sweep(config, progress=progress, on_result=on_result, **kw)
    view.finish(outcome)
    return outcome
