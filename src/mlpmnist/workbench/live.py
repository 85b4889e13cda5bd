"""A sweep that draws itself as it goes: in a Jupyter kernel, ``run_sweep`` shows a status line,
the final-accuracy figure and the experiments' table through display handles, redrawn from the
sweep's ``on_progress`` and ``on_result`` callbacks, and a progress line on stderr at most once a
``PROGRESS_S`` (what ``make study``'s terminal shows through papermill). The final outputs do not
depend on this run's timing or on what earlier runs left, so a published notebook stays the same
when its numbers do; timings go to stderr, which ``workbench.publish`` leaves out. Outside a
kernel it is ``sweep.run_sweep`` unchanged.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Any

import pandas as pd
from IPython.display import Pretty, display

from mlpmnist import store
from mlpmnist.analysis.words import count as _count
from mlpmnist.figures import compose as figures
from mlpmnist.sweep.experiment import table_row
from mlpmnist.sweep.progress import epoch_line
from mlpmnist.sweep.run import SweepConfig, SweepOutcome
from mlpmnist.sweep.run import run_sweep as _run_sweep

#: Seconds between two progress lines on stderr while the sweep runs.
PROGRESS_S = 60.0


class LiveView:
    """The live outputs of one sweep; experiments already done when it starts are shown at once."""

    def __init__(self, config: SweepConfig) -> None:
        self.config = config
        self.log = functools.partial(print, file=sys.stderr, flush=True)
        self.experiments = config.experiments()
        self.records: dict[str, dict] = {}
        self.epochs: dict[str, tuple[float, int]] = {}
        for exp in self.experiments:  # resumed sweeps: what is already there
            found, _ = store.find(config.results_dir, exp)
            if found is not None:
                self.records[exp.key()] = found.record
        self.before = len(self.records)
        self.t0 = self.last_line = time.perf_counter()
        self.status = display(Pretty(self._status_line()), display_id=True)
        self.figure = display(self._figure(), display_id=True)
        self.table = display(self._table(), display_id=True)

    def progress(self, moved: dict[str, tuple[float, int]]) -> None:
        """Running experiments' epochs (key -> (epoch, epochs)) moved: redraw the status and table."""
        self.epochs |= moved
        self.status.update(Pretty(self._status_line()))
        self.table.update(self._table())
        if time.perf_counter() - self.last_line >= PROGRESS_S:
            self.last_line = time.perf_counter()
            self.log(f"{self._status_line()}; {epoch_line(self.epochs)}")

    def update(self, key: str, record: dict) -> None:
        """Redraw with ``record`` (the experiment ``key``'s, just written)."""
        self.records[key] = record
        self.epochs.pop(key, None)
        try:
            fig = self._figure()
        except Exception as e:  # a drawing problem must not stop the sweep; finish() redraws
            fig = Pretty(f"(the figure could not be drawn yet: {e})")
        self.status.update(Pretty(self._status_line()))
        self.figure.update(fig)
        self.table.update(self._table())

    def finish(self, outcome: SweepOutcome) -> None:
        """The final state: the figure of every done experiment, the sweep's table."""
        try:
            fig: Any = figures.final_accuracy_figure(outcome.frame())
        except (ValueError, store.StoreError):  # nothing done: say so instead
            fig = Pretty("no experiment is done: see the table")
        self.status.update(Pretty(outcome.line()))
        self.figure.update(fig)
        # No wall times (they live in the records and on stderr); skipped experiments are done.
        table = outcome.table.drop(columns=["key", "seconds", "start_s"], errors="ignore")
        table = table.assign(status=table["status"].replace({"skipped": "done"}))
        self.table.update(table if outcome.failed else table.drop(columns=["error"], errors="ignore"))
        before = f"; {self.before} of them done before this run" if self.before else ""
        self.log(f"sweep: {outcome.seconds:.0f} s{before}")

    def _status_line(self) -> str:
        n, done, running = len(self.experiments), len(self.records), len(self.epochs)
        before = f" ({self.before} done before)" if self.before else ""
        return (
            f"{done} of {_count(n, 'experiment')} done{before}, {running} running, "
            f"{time.perf_counter() - self.t0:.0f} s"
        )

    def _figure(self) -> Any:
        if not self.records:
            return Pretty("the final-accuracy figure appears here when the first experiment is done")
        return figures.final_accuracy_figure(store.frame(list(self.records.values())))

    def _table(self) -> pd.DataFrame:
        rows = []
        for exp in self.experiments:
            record, at = self.records.get(exp.key()), self.epochs.get(exp.key())
            status = "done" if record else (f"epoch {at[0]:g} of {at[1]}" if at else "waiting")
            rows.append(table_row(exp, self.config.grid, status, record))
        return pd.DataFrame(rows)


def run_sweep(config: SweepConfig, progress: bool = True) -> SweepOutcome:
    """``sweep.run_sweep(config, progress)``, drawn live in a Jupyter kernel, where the live table
    replaces the progress bar."""
    from IPython import get_ipython

    if not hasattr(get_ipython(), "kernel"):  # not in Jupyter (JupyterLab, Colab, papermill): no displays
        return _run_sweep(config, progress=progress)
    view = LiveView(config)
    outcome = _run_sweep(
        config, progress=False, log=view.log, on_result=view.update, on_progress=view.progress
    )
    view.finish(outcome)
    return outcome
