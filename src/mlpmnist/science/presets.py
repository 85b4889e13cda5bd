"""The two settings of the science notebook: the full run, and a quick smoke run of every study on
a data subset (what the tests execute).

Every study trains two disjoint seed sets together (their replicas are independent, so this
costs what two runs cost, in one): the first gives each headline number and its interval over
seeds, the second repeats the run a reader would make with other seeds, and its value is shown
beside the first's interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from mlpmnist.science.common import HOLDOUT, check_seeds
from mlpmnist.science.recipe import REFERENCE_RECIPE, Recipe

#: The coarse learning rates: a factor 2 apart from 0.0125 to 0.4 (0.1, the reference's, among
#: them); the search then refines around each batch size's best to a factor sqrt(2).
COARSE_LRS = (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4)


@dataclass(frozen=True)
class Preset:
    """Every choice of one science run.

    ``batch_sizes``/``lrs``/``tune_epochs``/``halving``: the lr search (``lrs`` its coarse grid),
    its budget per run and the margin by which an lr behind the best stops after the first
    epoch; ``steps_batch_sizes``: the batch sizes that race to the target; ``seeds`` and
    ``second_seeds``: the two disjoint seed sets of the search, the steps to target and the
    recipes; ``target`` (validation accuracy, a fraction), ``max_epochs`` and
    ``eval_from_examples`` (images seen before the first validation): steps to target;
    ``noise``: ``noise_scale_during_training``'s keywords (other than lr and seeds), on
    ``noise_seeds`` of each set; ``sharpness``: batch sizes, epochs and images of the lambda_max
    measurements; ``control``: the inputs and batch sizes of the control run; ``candidates``:
    the tuned recipes (chosen on the first seed set), trained with ``reference``;
    ``train_limit``/``holdout``/``threads``: the data and threads of every run; ``concurrency``:
    runs trained at once (None: ``outputs.concurrency``); ``n_resamples``: bootstrap resamples
    per interval.
    """

    quick: bool
    batch_sizes: tuple[int, ...]
    steps_batch_sizes: tuple[int, ...]
    lrs: tuple[float, ...]
    tune_epochs: int
    halving: float
    seeds: tuple[int, ...]
    second_seeds: tuple[int, ...]
    target: float
    max_epochs: float
    eval_from_examples: int
    noise: dict[str, Any]
    noise_seeds: int
    sharpness: dict[str, Any]
    control: dict[str, Any]
    candidates: tuple[Recipe, ...]
    reference: Recipe
    train_limit: int | None = None
    holdout: int = HOLDOUT
    threads: int | None = 1
    concurrency: int | None = None
    n_resamples: int = 500

    @property
    def common(self) -> dict[str, Any]:
        """The ``TrainConfig`` fields every run of this preset shares."""
        return {"holdout": self.holdout, "train_limit": self.train_limit, "threads": self.threads}

    @property
    def all_seeds(self) -> tuple[int, ...]:
        """Both seed sets, the first first."""
        return self.seeds + self.second_seeds

    def describe(self) -> str:
        """One line: mode, batch sizes, lr grid, seed sets and target."""
        return (
            f"quick={self.quick}; batch sizes {list(self.batch_sizes)}; coarse lrs {list(self.lrs)}; "
            f"seeds {list(self.seeds)} and, as a second run, {list(self.second_seeds)}; "
            f"target {self.target:.0%}"
        )


#: The full run (13.8 and 14.3 minutes in two runs on 2 CPU cores: see the notebook's timings).
FULL = Preset(
    quick=False,
    batch_sizes=(8, 16, 32, 64, 128, 256, 512, 1024),
    steps_batch_sizes=(8, 16, 32, 64, 128, 256, 512),
    lrs=COARSE_LRS,
    tune_epochs=2,
    halving=0.05,
    seeds=tuple(range(6)),
    second_seeds=tuple(range(6, 12)),
    target=0.97,
    max_epochs=30,
    # No run here reaches 97% before ~130,000 images (E_min), so validating from 32,768 on loses
    # nothing and halves the evaluations (steps_to_target warns if one ever reaches it sooner).
    eval_from_examples=32_768,
    noise={"batch_size": 128, "epochs": (0, 1, 2, 3, 5, 8), "b_small": 64, "b_big": 4096, "n_big": 16},
    noise_seeds=2,
    sharpness={"batch_sizes": (8, 64, 512), "epochs": (0, 1, 2), "n_examples": 5000},
    control={"inputs": "centered", "batch_sizes": (32, 256), "lrs": (0.1, 0.2, 0.4, 0.8, 1.6)},
    candidates=(Recipe(epochs=20), Recipe(epochs=20, max_shift=1)),
    reference=REFERENCE_RECIPE,
)
#: A smoke run of every study (about a minute): 20,000 images (2,000 of them validation),
#: 4 batch sizes, 2 + 2 seeds, a lower target, short recipes.
QUICK = replace(
    FULL,
    quick=True,
    batch_sizes=(16, 64, 256, 1024),
    steps_batch_sizes=(16, 64, 256),
    lrs=(0.025, 0.05, 0.1, 0.2, 0.4),
    tune_epochs=1,
    seeds=(0, 1),
    second_seeds=(2, 3),
    target=0.92,
    max_epochs=6,
    eval_from_examples=1024,
    noise={"batch_size": 64, "epochs": (0, 1, 2), "b_small": 32, "b_big": 512, "n_big": 4},
    noise_seeds=1,
    sharpness={"batch_sizes": (16, 256), "epochs": (0, 1), "n_examples": 500},
    control={"inputs": "centered", "batch_sizes": (64,), "lrs": (0.1, 0.4, 1.6)},
    candidates=(Recipe(epochs=2), Recipe(epochs=2, max_shift=1)),
    reference=replace(REFERENCE_RECIPE, epochs=2),
    train_limit=20_000,
    holdout=2_000,
    n_resamples=200,
)


def preset(
    quick: bool,
    seeds: Sequence[int] | None = None,
    second_seeds: Sequence[int] | None = None,
    target: float | None = None,
    threads: int | None = 1,
    concurrency: int | None = None,
) -> Preset:
    """``QUICK`` or ``FULL`` with these seed sets (None: the preset's), ``target`` (a validation
    accuracy; None: the preset's, 97% full, 92% quick), ``threads`` and ``concurrency``.
    ``ValueError`` when the two seed sets share a seed."""
    base = QUICK if quick else FULL
    first = base.seeds if seeds is None else check_seeds(seeds)
    second = base.second_seeds if second_seeds is None else check_seeds(second_seeds)
    if set(first) & set(second):
        raise ValueError(f"the two seed sets must be disjoint; both hold {sorted(set(first) & set(second))}")
    if target is not None and not 0 < target <= 1:
        raise ValueError(f"target must be an accuracy in (0, 1]; got {target!r}")
    return replace(
        base,
        seeds=first,
        second_seeds=second,
        target=base.target if target is None else float(target),
        threads=threads,
        concurrency=concurrency,
    )
