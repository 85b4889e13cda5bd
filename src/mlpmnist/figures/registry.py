"""The one registry of every figure: its name (its file's, without the suffix), its source and the
function that draws it (its docstring says what it shows); a new figure is its function and one
entry below. A source's ``draw`` takes: ``results`` a ``StudyFrames``; ``data`` a training split and
its ``DatasetSpec``; ``model`` a model, the split it is shown on, its spec and a label (titles);
``embedding`` an ``embed.Embeddings`` and a label; ``science`` the frames of ``mlpmnist.science``
its parameters name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, get_args

import pandas as pd
from matplotlib.figure import Figure

from mlpmnist.analysis import stats
from mlpmnist.analysis.columns import dead_columns
from mlpmnist.figures import model, science, study, tsne

Source = Literal["results", "data", "model", "embedding", "science"]
SOURCES: tuple[Source, ...] = get_args(Source)
#: The sources of the study's figures: what ``compose`` draws for the CLI and run.ipynb.
STUDY_SOURCES: tuple[Source, ...] = ("results", "data", "model", "embedding")


class StudyFrames:
    """The statistics of the results frame ``df`` that the study's figures draw, each computed on
    first use but ``curves`` (``stats.mark_failed``)."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.curves = stats.mark_failed(df)

    @cached_property
    def fin(self) -> pd.DataFrame:
        return stats.final(self.curves)

    @cached_property
    def summ(self) -> pd.DataFrame:
        return stats.summary(self.curves)

    @cached_property
    def per(self) -> pd.DataFrame:
        return stats.per_epoch(self.curves)


@dataclass(frozen=True)
class Entry:
    """One figure: ``draw`` (inputs -> ``Figure``; its docstring says what it shows), ``when`` it is drawn."""

    name: str
    source: Source
    draw: Callable[..., Figure]
    when: Callable[..., bool] = lambda *inputs: True


FIGURES: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("accuracy_vs_epoch", "results", lambda f: study.accuracy_vs_epoch(f.curves, f.summ)),
        Entry("final_accuracy_vs_batch", "results", lambda f: study.final_accuracy_vs_batch(f.fin, f.summ)),
        Entry("heatmap_batch_epoch", "results", lambda f: study.heatmap_batch_epoch(f.per, f.summ)),
        Entry("train_vs_test", "results", lambda f: study.train_vs_test(f.curves, f.summ)),
        Entry(
            "dead_units",
            "results",
            lambda f: study.dead_units(f.curves, f.summ),
            when=lambda f: bool(dead_columns(f.curves)),  # records made before they were stored lack them
        ),
        Entry("sample_digits", "data", model.sample_digits),
        Entry("confusion_matrix", "model", model.confusion_matrix),
        Entry("misclassified", "model", model.misclassified),
        Entry("predictions_last10", "model", model.predictions_last10),
        Entry("tsne_epochs", "embedding", tsne.plot_tsne),
        Entry("science_lr_tuning", "science", science.lr_tuning),
        Entry("science_steps_to_target", "science", science.steps_to_target),
        Entry("science_ceiling", "science", science.ceiling),
        Entry("science_sharpness", "science", science.sharpness),
        Entry("science_noise_scale", "science", science.noise_scale),
        Entry("science_recipes", "science", science.recipes),
        Entry("science_tail", "science", science.tail),
        Entry("science_headlines", "science", science.headlines),
    )
}


def entries(*sources: Source) -> list[Entry]:
    """The entries drawn from any of ``sources`` (all when none is given), in the registry's order."""
    if unknown := [s for s in sources if s not in SOURCES]:
        raise ValueError(f"unknown figure source(s) {unknown}; known: {', '.join(SOURCES)}")
    return [e for e in FIGURES.values() if not sources or e.source in sources]


def names(*sources: Source) -> list[str]:
    """The names of ``entries(*sources)``."""
    return [e.name for e in entries(*sources)]


def entry(name: str, source: Source | None = None) -> Entry:
    """The entry called ``name`` (drawn from ``source``, when given); ``ValueError`` otherwise."""
    e = FIGURES.get(name)
    if e is None or (source is not None and e.source != source):
        known = names(*(() if source is None else (source,)))
        raise ValueError(f"no figure {name!r} in the registry; known: {', '.join(known)}")
    return e


def draw(source: Source, *inputs: Any) -> dict[str, Figure]:
    """Name -> figure of every entry drawn from ``source`` whose ``when`` holds for ``inputs``."""
    return {e.name: e.draw(*inputs) for e in entries(source) if e.when(*inputs)}
