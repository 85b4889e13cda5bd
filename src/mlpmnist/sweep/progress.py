"""While a sweep's jobs run: which experiments are done (a record the store trusts, made by one of
this sweep's jobs) and where each running one stands (its job's heartbeat: epochs evaluated)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mlpmnist import store
from mlpmnist.sweep import experiment

#: ``run_sweep``'s ``on_progress``: key -> (epochs evaluated so far, epochs), for the
#: experiments whose epoch count moved since the last call.
OnProgress = Callable[[dict[str, tuple[float, int]]], None]


class Progress:
    """``poll`` calls ``on_result`` for each of ``keys`` that finished (see the module) and
    ``on_progress`` for those whose epochs moved."""

    def __init__(
        self, root: Path, keys: list[str], on_result: Callable[[str, dict], None], on_progress: OnProgress
    ) -> None:
        self.root, self.pending, self.on_result = root, set(keys), on_result
        self.on_progress = on_progress
        self.jobs: set[str] = set()
        self.epochs: dict[str, tuple[float, int]] = {}

    def poll(self) -> None:
        for key in sorted(self.pending):
            record, _ = store.problem(self.root, key)
            if record is not None and (record.get("job") or {}).get("id") in self.jobs:
                self.pending.discard(key)
                self.on_result(key, record)
        moved = {}  # the pending ones whose epoch moved (a heartbeat being rewritten: at the next look)
        for job in sorted(self.jobs):
            try:
                beat = json.loads(experiment.heartbeat_path(self.root, job).read_text())
                progress = dict(beat.get("progress") or {})
            except (OSError, ValueError, TypeError, AttributeError):
                continue
            for key, (epoch, epochs) in progress.items():
                now = (float(epoch), int(epochs))
                if key in self.pending and self.epochs.get(key) != now:
                    self.epochs[key] = moved[key] = now
        if moved:
            self.on_progress(moved)


def epoch_line(moved: dict[str, tuple[float, int]]) -> str:
    """'epochs: bs0008-... 7 of 15; bs0016-... 12 of 15': where running experiments stand."""
    return "epochs: " + "; ".join(f"{k} {e:g} of {n}" for k, (e, n) in sorted(moved.items()))
