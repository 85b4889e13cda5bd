"""The sweep stage: a grid of ``TrainConfig`` fields planned into groups and jobs, each job one
executed experiment notebook (papermill) on a local kernel or a Dask worker; resumable."""

from mlpmnist.errors import SweepError
from mlpmnist.sweep.run import REFERENCE_BATCH_SIZES, SweepConfig, SweepOutcome, run_sweep

__all__ = ["REFERENCE_BATCH_SIZES", "SweepConfig", "SweepError", "SweepOutcome", "run_sweep"]
