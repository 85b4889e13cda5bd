"""A tuned recipe for the unchanged 784-64-64-10 MLP: momentum, a schedule, weight decay, more
epochs and optionally random translations; each seed set chooses among the candidates on its
own validation accuracy, and only then is the chosen recipe's test accuracy read.

Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mlpmnist.science.runs import Runner


@dataclass(frozen=True)
class Recipe:
    """A training recipe for the unchanged MLP: every field is a ``TrainConfig`` field of the same
    name. ``max_shift``: random translations of every training image by up to that many pixels in
    each direction (0 = none). ``drop_last``: only full batches, as the rest of the science."""

    batch_size: int = 128
    epochs: int = 30
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    max_shift: int = 0
    drop_last: bool = True

    def describe(self) -> str:
        """The recipe in words."""
        aug = f", random shifts of up to {self.max_shift} px" if self.max_shift else ", no augmentation"
        return (
            f"batch {self.batch_size}, {self.epochs} epochs, SGD lr {self.lr:g} momentum {self.momentum:g}, "
            f"weight decay {self.weight_decay:g}, {self.schedule} schedule{aug}"
        )


#: The reference study's recipe: plain SGD, lr 0.1, batch 90, 15 epochs (here, like every
#: science recipe, on full batches only).
REFERENCE_RECIPE = Recipe(
    batch_size=90, epochs=15, lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant"
)


@dataclass(frozen=True)
class RecipeRun:
    """One recipe trained on one seed set: ``last``, each seed's final row (val_acc, test_acc, ...)."""

    recipe: Recipe
    last: pd.DataFrame

    def line(self) -> str:
        """The recipe and its final validation and test accuracy (%, median and quartiles over seeds)."""

        def spread(v: pd.Series) -> str:
            q1, q2, q3 = (100 * v).quantile([0.25, 0.5, 0.75])
            return f"{q2:.2f}% [{q1:.2f}, {q3:.2f}]"

        return (
            f"{self.recipe.describe()}: val {spread(self.last['val_acc'])}, test "
            f"{spread(self.last['test_acc'])} "
            f"(median [quartiles], {len(self.last)} seeds)"
        )


def run_recipes(
    runner: Runner, recipes: Sequence[Recipe], sets: Sequence[Sequence[int]], what: str
) -> list[list[RecipeRun]]:
    """Every recipe with every seed set, in one sweep; per set, the runs in the order of ``recipes``."""
    from mlpmnist.science.runs import final_rows

    configs = [[runner.config(**asdict(r), seeds=tuple(s)) for r in recipes] for s in sets]
    frame = final_rows(runner.train([c for cs in configs for c in cs], what))
    return [
        [
            RecipeRun(r, frame[frame["key"] == c.key()].reset_index(drop=True))
            for r, c in zip(recipes, cs, strict=True)
        ]
        for cs in configs
    ]


def select_recipe(runs: Sequence[RecipeRun]) -> RecipeRun:
    """The run with the highest mean final validation accuracy over its seeds (the first on a
    tie); test accuracy plays no part. ``ValueError`` when ``runs`` is empty or has no validation."""
    if not runs:
        raise ValueError("no recipe runs to choose from")
    if not all("val_acc" in r.last for r in runs):
        raise ValueError("recipes are chosen on validation accuracy: train them with holdout > 0")
    return max(runs, key=lambda r: r.last["val_acc"].mean())
