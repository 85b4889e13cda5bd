"""The two settings of the science notebook: the full run, and a quick smoke run of every study on
a data subset (what the tests execute)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .common import BATCH_SIZES, HOLDOUT, check_seeds
from .lr_tuning import lr_grid
from .recipe import REFERENCE_RECIPE, Recipe


@dataclass(frozen=True)
class Preset:
    """Every choice of one science run.

    ``batch_sizes``/``lrs``/``tune_epochs``: the lr-tuning grid and budget; ``seeds``: the
    replicas of tuning and steps to target; ``target`` (validation accuracy, a fraction) and
    ``max_epochs``: steps to target; ``noise``: keyword arguments of
    ``noise_scale_during_training`` other than lr; ``candidates``: the tuned recipes, trained
    on ``tuned_seeds`` with ``reference``; ``train_limit``/``holdout``/``threads``: the data and
    threads of every run (see ``common``).
    """

    quick: bool
    batch_sizes: tuple[int, ...]
    lrs: tuple[float, ...]
    tune_epochs: int
    seeds: tuple[int, ...]
    tuned_seeds: tuple[int, ...]
    target: float
    max_epochs: float
    noise: dict[str, Any]
    candidates: tuple[Recipe, ...]
    reference: Recipe
    train_limit: int | None = None
    holdout: int = HOLDOUT
    threads: int | None = None

    @property
    def common(self) -> dict[str, Any]:
        """The ``TrainConfig`` fields every run of this preset shares."""
        return {"holdout": self.holdout, "train_limit": self.train_limit, "threads": self.threads}

    def describe(self) -> str:
        """One line: mode, batch sizes, lr grid, seeds and target."""
        return (
            f"quick={self.quick}; batch sizes {list(self.batch_sizes)}; lr grid {self.lrs}; "
            f"seeds {list(self.seeds)}; tuned seeds {list(self.tuned_seeds)}; target {self.target:.0%}"
        )


#: The full run: every batch size, the 7-lr grid, 3 seeds (5 for the recipes), 97%.
FULL = Preset(
    quick=False,
    batch_sizes=BATCH_SIZES,
    lrs=lr_grid(),
    tune_epochs=2,
    seeds=(0, 1, 2),
    tuned_seeds=(0, 1, 2, 3, 4),
    target=0.97,
    max_epochs=100,
    noise={"batch_size": 128, "epochs": (0, 1, 2, 3, 5, 8, 12), "b_small": 64, "b_big": 4096, "n_big": 32},
    candidates=(Recipe(), Recipe(max_shift=1)),
    reference=REFERENCE_RECIPE,
)
#: A smoke run of every study (about a minute): 20,000 images (2,000 of them validation),
#: 4 batch sizes, 4 lrs, 2 seeds, a lower target, 3-epoch recipes.
QUICK = replace(
    FULL,
    quick=True,
    batch_sizes=(16, 64, 256, 1024),
    lrs=lr_grid(below=2, above=1),
    seeds=(0, 1),
    tuned_seeds=(0, 1),
    target=0.92,
    max_epochs=8,
    noise={"batch_size": 64, "epochs": (0, 1, 2, 4), "b_small": 32, "b_big": 1024, "n_big": 8},
    candidates=(Recipe(epochs=3), Recipe(epochs=3, max_shift=1)),
    reference=replace(REFERENCE_RECIPE, epochs=2),
    train_limit=20_000,
    holdout=2_000,
)


def preset(
    quick: bool,
    seeds: Sequence[int] = FULL.seeds,
    tuned_seeds: Sequence[int] = FULL.tuned_seeds,
    target: float | None = None,
    threads: int | None = None,
) -> Preset:
    """``QUICK`` or ``FULL`` with these seeds (quick: the first 2 of each list), ``target`` (a
    validation accuracy; None: the preset's, 97% full, 92% quick) and ``threads``."""
    base = QUICK if quick else FULL
    keep = len(base.seeds) if quick else None
    seeds, tuned_seeds = check_seeds(seeds)[:keep], check_seeds(tuned_seeds)[:keep]
    if target is not None and not 0 < target <= 1:
        raise ValueError(f"target must be an accuracy in (0, 1]; got {target!r}")
    target = base.target if target is None else float(target)
    return replace(base, seeds=seeds, tuned_seeds=tuned_seeds, target=target, threads=threads)
