"""The composition step: which figures the study shows, made from what the caller loaded.

The CLI and the notebooks load the frame, the data, the models or the embedding, call these,
and save with ``save_figures``. Nothing here loads or trains; the study's statistics are
computed here once, by ``stats``, and handed to the plot functions, which only draw.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from mlpmnist import figures as plots
from mlpmnist.analysis import stats
from mlpmnist.analysis.columns import dead_columns
from mlpmnist.data.loader import Split
from mlpmnist.figures.embed import CV_FOLDS, KNN_K, Embeddings


def study_figures(df: pd.DataFrame) -> dict[str, Figure]:
    """Name -> figure of the study drawn from the results frame ``df``: accuracy_vs_epoch,
    final_accuracy_vs_batch, heatmap_batch_epoch, train_vs_test, and dead_units when the
    frame has dead-unit columns (records made before they were stored lack them). The
    statistics are computed here, once (flags, final rows, summary, per-epoch medians), and
    each figure draws what it is given."""
    curves = stats.mark_failed(df)
    fin, summ, per = stats.final(curves), stats.summary(curves), stats.per_epoch(curves)
    figs = {
        "accuracy_vs_epoch": plots.accuracy_vs_epoch(curves, summ),
        "final_accuracy_vs_batch": plots.final_accuracy_vs_batch(fin, summ),
        "heatmap_batch_epoch": plots.heatmap_batch_epoch(per, summ),
        "train_vs_test": plots.train_vs_test(curves, summ),
    }
    if dead_columns(curves):
        figs["dead_units"] = plots.dead_units(curves, summ)
    return figs


def final_accuracy_figure(df: pd.DataFrame) -> Figure:
    """The final-accuracy figure alone (``final_accuracy_vs_batch``) of the results frame
    ``df``: what the sweep's live view redraws as each experiment finishes."""
    curves = stats.mark_failed(df)
    return plots.final_accuracy_vs_batch(stats.final(curves), stats.summary(curves))


def data_figures(train: Split) -> dict[str, Figure]:
    """{'sample_digits': the first training images with their labels}."""
    return {"sample_digits": plots.sample_digits(train)}


def model_figures(models: Mapping[int, nn.Module], test: Split, label: str = "") -> dict[str, Figure]:
    """Name -> figure of the median seed's model (``plots.pick_model``: median test accuracy
    of ``models``, seed -> model) on ``test``: confusion_matrix, misclassified and
    predictions_last10. ``label`` (e.g. 'batch 90') starts each title, then the seed."""
    seed, model = plots.pick_model(models, test)
    who = ", ".join(p for p in (label, f"seed {seed}") if p)
    if len(models) > 1:
        who += f" (median of {len(models)} seeds)"
    return {
        "confusion_matrix": plots.confusion_matrix(model, test, who),
        "misclassified": plots.misclassified(model, test, label=who),
        "predictions_last10": plots.predictions_last10(model, test, who),
    }


def tsne_figures(emb: Embeddings, label: str = "") -> dict[str, Figure]:
    """{'tsne_epochs': the t-SNE panels of ``emb``}. ``label`` (e.g. 'batch 64, lr 0.05') names
    the trained configuration in the title (default: its batch size)."""
    title = None
    if label:
        n = int(emb.points.groupby("epoch").size().iloc[0])
        seed = "" if emb.seed is None else f" (seed {emb.seed})"
        title = (
            f"t-SNE of the last hidden layer while {label} trains{seed}, the same {n:,} test images in "
            f"every panel\nkNN: {KNN_K}-NN accuracy in 2-D ({CV_FOLDS}-fold CV); silh.: silhouette of "
            "the classes in 2-D"
        )
    return {"tsne_epochs": plots.plot_tsne(emb, title=title)}


def save_figures(figs: Mapping[str, Figure], media_dir: str | os.PathLike) -> list[Path]:
    """Write each figure as ``<media_dir>/<name>.png`` (``plots.save``: atomic, and the
    figure is released, so display it first); returns the paths in ``figs``' order."""
    return [plots.save(fig, Path(media_dir) / f"{name}.png") for name, fig in figs.items()]
