"""What one ``train`` call returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from mlpmnist.config import TrainConfig


@dataclass
class TrainResult:
    """``history``: one row per replica and evaluation (see ``train``). ``state_dicts``: final weights
    per replica (None where it diverged or stopped early). ``snapshots``: epoch (float; 0 = the init)
    -> state dicts. ``seconds``: the call's wall time; ``first_step_at``: ``time.time()`` after step 1."""

    config: TrainConfig
    history: pd.DataFrame
    state_dicts: list[dict | None]
    snapshots: dict[float, list[dict | None]] = field(default_factory=dict)
    device: str = "cpu"
    seconds: float = 0.0
    first_step_at: float | None = None

    def _last_flag(self, column: str) -> list[int]:
        if self.history.empty:
            return []
        last = self.history.groupby(["seed", "lr"]).tail(1)
        return sorted(last.loc[last[column].astype(bool), "seed"].unique().tolist())

    @property
    def diverged(self) -> list[int]:
        """Seeds of the replicas that diverged."""
        return self._last_flag("diverged")

    @property
    def collapsed(self) -> list[int]:
        """Seeds of the replicas whose last evaluation was at chance level."""
        return self._last_flag("collapsed")
