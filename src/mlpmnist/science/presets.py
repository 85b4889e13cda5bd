"""The two settings of the science notebook: the full run, and a quick smoke run of every study on
a data subset (what the tests execute).

Every study runs on two disjoint seed sets, each making every choice (the lr grid's extension, the
fastest lr to a target, the recipe) from its own seeds alone and trained in sweeps of its own, so
the second set is a real rerun: each headline number is the first set's, with its interval over
seeds, and the second set's value stands beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from mlpmnist.parameters import check_bool, check_int, read_seeds
from mlpmnist.science.recipe import REFERENCE_RECIPE, Recipe

SQRT2 = math.sqrt(2)


def sqrt2_grid(low: float, n: int) -> tuple[float, ...]:
    """``n`` learning rates from ``low`` up, each sqrt(2) times the one before (6 significant digits)."""
    return tuple(float(f"{low * SQRT2**k:.6g}") for k in range(n))


@dataclass(frozen=True)
class Preset:
    """Every choice of one science run.

    ``sets``: the two disjoint seed sets. Tuning: ``batch_sizes``, the first lr grid
    ``start_lrs`` (sqrt(2) apart; each batch size's grid then grows until its best lr has a tried
    neighbour on both sides) and ``tune_epochs``, the budget per run. Steps to target: the
    validation ``targets`` (fractions; each run stops at the highest), on ``steps_batch_sizes``,
    for at most ``max_epochs``, validated after steps spaced by ``eval_ratio`` from ``eval_from``
    images on. ``ceiling``: the per-seed study at one batch size: its ``batch_size``, ``drop``
    (a seed fails at an lr when its final validation accuracy is more than this below the tuned
    lr's median, stated in advance), the control's ``inputs`` and λ_max's ``n_examples``;
    ``sharpness``: λ_max during the first epoch (``snapshots`` in epochs, ``seeds``, and ``lrs`` as
    multiples of the tuned lr). ``noise``: the noise-scale runs (batch size, epochs, the two batch
    sizes of the estimator, big batches per estimate). ``candidates`` and ``reference``: the tuned
    recipes (each set chooses on its own validation split) and the reference recipe. ``tail``:
    the causal test of batch 8's tail (the study's setting: batch, lr, epochs, its seed
    experiments). ``common``: ``TrainConfig`` fields of every run (data limit, validation split,
    threads). ``n_resamples``: bootstrap resamples per interval.
    """

    quick: bool
    sets: tuple[tuple[int, ...], tuple[int, ...]]
    batch_sizes: tuple[int, ...]
    start_lrs: tuple[float, ...]
    tune_epochs: int
    steps_batch_sizes: tuple[int, ...]
    targets: tuple[float, ...]
    max_epochs: int
    eval_ratio: float
    eval_from: int
    ceiling: dict[str, Any]
    sharpness: dict[str, Any]
    noise: dict[str, Any]
    candidates: tuple[Recipe, ...]
    reference: Recipe
    tail: dict[str, Any]
    common: dict[str, Any] = field(default_factory=dict)
    n_resamples: int = 500

    @property
    def all_seeds(self) -> tuple[int, ...]:
        """Both seed sets, the first first."""
        return self.sets[0] + self.sets[1]

    def describe(self) -> str:
        """One line: mode, seed sets, batch sizes, targets."""
        a, b = self.sets
        return (
            f"quick={self.quick}; seed sets {a[0]}-{a[-1]} and {b[0]}-{b[-1]} ({len(a)} + {len(b)}); "
            f"batch sizes {list(self.batch_sizes)}; targets {[f'{t:.0%}' for t in self.targets]}"
        )


#: The full run (about 60 minutes on 2 CPU cores from an empty store; see the notebook's timings).
FULL = Preset(
    quick=False,
    sets=(tuple(range(10)), tuple(range(10, 20))),
    batch_sizes=(8, 16, 32, 64, 128, 256, 512, 1024),
    start_lrs=sqrt2_grid(0.0125, 6),
    tune_epochs=2,
    steps_batch_sizes=(8, 16, 32, 64, 128, 256, 512),
    targets=(0.96, 0.97),
    max_epochs=30,
    eval_ratio=1.05,
    # No run here reaches 96% before ~100,000 images, so validating from 32,768 on loses nothing.
    eval_from=32_768,
    ceiling={"batch_size": 128, "drop": 0.10, "inputs": "centered", "n_examples": 5000},
    sharpness={
        "snapshots": (0, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 3 / 16, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1),
        "seeds": 2,
        "lrs": (0.5, 1.0, 2.0),
    },
    noise={"batch_size": 128, "epochs": (0, 1, 2, 3, 5, 8), "b_small": 64, "b_big": 4096, "n_big": 16},
    candidates=(Recipe(epochs=20), Recipe(epochs=20, max_shift=1)),
    reference=REFERENCE_RECIPE,
    tail={"batch_size": 8, "lr": 0.1, "epochs": 15, "seeds": (tuple(range(10)), tuple(range(10, 60)))},
)
#: A smoke run of every study (about two minutes): 20,000 images (2,000 of them validation),
#: 3 batch sizes, 3 + 3 seeds, lower targets, short runs.
QUICK = replace(
    FULL,
    quick=True,
    sets=((0, 1, 2), (3, 4, 5)),
    batch_sizes=(32, 128, 512),
    start_lrs=sqrt2_grid(0.05, 3),
    tune_epochs=1,
    steps_batch_sizes=(32, 128, 512),
    targets=(0.88, 0.9),
    max_epochs=6,
    eval_from=1024,
    ceiling={"batch_size": 128, "drop": 0.10, "inputs": "centered", "n_examples": 500},
    sharpness={"snapshots": (0, 1 / 8, 1 / 2, 1), "seeds": 1, "lrs": (1.0, 2.0)},
    noise={"batch_size": 128, "epochs": (0, 1, 2), "b_small": 32, "b_big": 256, "n_big": 4},
    candidates=(Recipe(epochs=2), Recipe(epochs=2, max_shift=1)),
    reference=replace(REFERENCE_RECIPE, epochs=2),
    tail={"batch_size": 64, "lr": 0.1, "epochs": 2, "seeds": ((0, 1, 2),)},
    common={"train_limit": 20_000, "holdout": 2_000},
    n_resamples=100,
)


def preset(quick: object, sets: object = None, threads: object = 1) -> Preset:
    """``QUICK`` or ``FULL`` with these two seed sets (None: the preset's; each a list or text such
    as ``"0-9"``, as run.ipynb reads seeds) and ``threads`` per run (None: torch's default).
    ``ValueError`` naming the parameter: ``quick`` not True or False, sets that are not two, not
    seeds or not disjoint, ``threads`` not an integer >= 1."""
    base = QUICK if check_bool("quick", quick) else FULL
    if sets is None:
        chosen = base.sets
    elif isinstance(sets, (list, tuple)) and len(sets) == 2:
        chosen = (read_seeds("sets[0]", sets[0]) or (), read_seeds("sets[1]", sets[1]) or ())
    else:
        raise ValueError(f"sets must be None or two seed sets such as ['0-9', '10-19']; got {sets!r}")
    if shared := sorted(set(chosen[0]) & set(chosen[1])):
        raise ValueError(f"sets must be disjoint (two independent seed sets); both hold {shared}")
    threads = check_int("threads", threads, 1, none=True)
    return replace(base, sets=(chosen[0], chosen[1]), common={**base.common, "threads": threads})
