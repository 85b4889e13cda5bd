"""A tuned recipe for the unchanged 784-64-64-10 MLP: momentum, a schedule, weight decay, more
epochs and optionally random translations; candidates are chosen on validation accuracy.

Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from mlpmnist.config import TrainConfig
from mlpmnist.data import loader as mdata
from mlpmnist.science.common import REFERENCE_LR, check_seeds, final_rows, science_config
from mlpmnist.training.loop import train
from mlpmnist.training.many import train_many


@dataclass(frozen=True)
class Recipe:
    """A training recipe for the unchanged MLP; ``config`` turns it into a ``TrainConfig``.

    ``max_shift``: random translations of every training image by up to that many pixels in
    each direction, drawn afresh each time the image is used (0 = no augmentation).
    ``drop_last``: every epoch takes only full batches (n // B steps), as the rest of the
    science does; False ends it with the remainder as a smaller batch, like the reference.
    """

    batch_size: int = 128
    epochs: int = 30
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    max_shift: int = 0
    drop_last: bool = True

    def __post_init__(self) -> None:
        self.config((0,))  # TrainConfig's checks and messages, e.g. for max_shift

    def config(self, seeds: Sequence[int], **fields: Any) -> TrainConfig:
        """The validated ``TrainConfig`` of this recipe for ``seeds``; ``fields`` are further
        ``TrainConfig`` fields (holdout, train_limit, threads, device, ...)."""
        # Every Recipe field is a TrainConfig field of the same name.
        return science_config(**asdict(self), seeds=tuple(seeds), **fields)

    def describe(self) -> str:
        """The recipe in words."""
        aug = f", random shifts of up to {self.max_shift} px" if self.max_shift else ", no augmentation"
        last = "" if self.drop_last else ", ragged last batch kept"
        return (
            f"batch {self.batch_size}, {self.epochs} epochs, SGD lr {self.lr:g} momentum {self.momentum:g}, "
            f"weight decay {self.weight_decay:g}, {self.schedule} schedule{aug}{last}"
        )


#: The reference study's recipe: plain SGD, lr 0.1, batch 90, 15 epochs (here, like every
#: science recipe, on full batches only unless ``drop_last=False`` is set).
REFERENCE_RECIPE = Recipe(
    batch_size=90, epochs=15, lr=REFERENCE_LR, momentum=0.0, weight_decay=0.0, schedule="constant"
)


def train_tuned(
    recipe: Recipe, seeds: Sequence[int], data: mdata.Data | None = None, **fields: Any
) -> pd.DataFrame:
    """Train ``recipe`` for every seed in lockstep with ``train``; returns its per-epoch history
    (seed, lr, epoch, step, train/val/test loss and accuracy, ..., diverged).

    With ``max_shift`` > 0 the shifts come from one generator seeded from the seeds together,
    so an augmented replica depends on which seeds it trains with (its init and order do not).
    """
    config = recipe.config(check_seeds(seeds), **fields)
    return train(config, data, progress=False, verbose=False).history


@dataclass(frozen=True)
class RecipeRun:
    """One recipe trained: ``history`` (``train_tuned``'s) and ``last``, each seed's final row."""

    recipe: Recipe
    history: pd.DataFrame
    last: pd.DataFrame

    def line(self) -> str:
        """The recipe and its final validation and test accuracy (%, mean ± std over seeds)."""
        va, te = 100 * self.last["val_acc"], 100 * self.last["test_acc"]
        return (
            f"{self.recipe.describe()}: val {va.mean():.2f}% ± {va.std():.2f}, "
            f"test {te.mean():.2f}% ± {te.std():.2f}"
        )


def run_recipe(
    recipe: Recipe, seeds: Sequence[int], data: mdata.Data | None = None, **fields: Any
) -> RecipeRun:
    """``train_tuned`` as a ``RecipeRun``."""
    history = train_tuned(recipe, seeds, data, **fields)
    return RecipeRun(recipe, history, final_rows(history))


def run_recipes(
    recipes: Sequence[Recipe],
    seeds: Sequence[int],
    data: mdata.Data | None = None,
    *,
    progress: bool = False,
    concurrency: int | None = None,
    **fields: Any,
) -> list[RecipeRun]:
    """Every recipe with the same seeds, trained at the same time where the device allows
    (``trainer.train_many``); the runs in the order of ``recipes``."""
    configs = [r.config(check_seeds(seeds), **fields) for r in recipes]
    data = data if data is not None else mdata.load(dataset=configs[0].dataset)
    runs = [
        RecipeRun(recipe, res.history, final_rows(res.history))
        for recipe, res in zip(recipes, train_many(configs, data, concurrency=concurrency), strict=True)
    ]
    if progress:
        for run in runs:
            print(run.line(), flush=True)
    return runs


def select_recipe(runs: Sequence[RecipeRun]) -> RecipeRun:
    """The run with the highest mean final validation accuracy over seeds (the first on a tie);
    test accuracy plays no part. ``ValueError`` when ``runs`` is empty or a run has no
    validation accuracy."""
    if not runs:
        raise ValueError("no recipe runs to choose from")
    if not all("val_acc" in r.last for r in runs):
        raise ValueError("recipes are chosen on validation accuracy: train them with holdout > 0")
    return max(runs, key=lambda r: r.last["val_acc"].mean())


def tuned_report(runs: Sequence[RecipeRun], chosen: RecipeRun, reference: RecipeRun) -> str:
    """The numbers behind the tuned-recipe claims as text: the chosen recipe's test accuracy
    (%) per seed, every candidate's, and the reference recipe's on the same split and seeds."""
    acc, ref = 100 * chosen.last["test_acc"], 100 * reference.last["test_acc"]
    return "\n".join(
        [
            f"tuned recipe chosen on validation: {chosen.recipe.describe()}",
            f"tuned recipe test accuracy over {len(acc)} seeds: {acc.mean():.2f}% ± {acc.std():.2f} (std); "
            f"per seed {acc.round(2).tolist()}; min {acc.min():.2f}%",
            *(f"  for comparison, {r.line()}" for r in runs),
            f"reference recipe ({reference.recipe.describe()}), same split and seeds: test "
            f"{ref.mean():.2f}% ± {ref.std():.2f}; per seed {ref.round(2).tolist()}; "
            f"val {100 * reference.last['val_acc'].mean():.2f}%",
        ]
    )
