"""Figures of one trained model (or of the data) on a split of the dataset whose spec gives the
images' shape and the class names. Ink dark on white; probabilities are softmax outputs in %."""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib as mpl
import numpy as np
import seaborn as sns
import torch
from matplotlib.figure import Figure
from torch import nn

from mlpmnist.data import loader as mdata
from mlpmnist.data.specs import DatasetSpec
from mlpmnist.figures.style import ERROR_RED, figure


def _short_names(spec: DatasetSpec) -> bool:
    """Whether every class name is a few letters at most (digits, KMNIST's syllables); longer ones
    (Fashion-MNIST's 'Ankle boot') get smaller type and lines of their own over their image."""
    return max(len(c) for c in spec.classes) <= 5


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 10_000) -> np.ndarray:
    """Class probabilities [N, classes] (softmax of the logits) of ``model`` on ``x``, on the CPU."""
    model = model.eval().cpu()
    return np.concatenate([torch.softmax(model(xb), 1).numpy() for xb in x.cpu().split(batch)])


def _image_grid(
    fig: Figure, x: torch.Tensor, spec: DatasetSpec, titles: list[str], ncols: int, colors: list | None = None
) -> None:
    """``x`` [N, pixels] as images of ``spec``'s shape, ``ncols`` a row, under their titles."""
    images = x.detach().cpu().reshape(-1, *spec.image_shape).numpy()
    axes = fig.subplots(max(1, math.ceil(len(images) / ncols)), ncols, squeeze=False)  # no image: one row
    fontsize = 10 if _short_names(spec) else 8
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(images):
            continue
        ax.imshow(images[i], cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(titles[i], fontsize=fontsize, color=colors[i] if colors else "black", pad=3)


def sample_digits(split: mdata.Split, spec: DatasetSpec, n: int = 40, ncols: int = 10) -> Figure:
    """The first ``n`` training images of ``split`` with their class names ('label 5'; a long name
    alone)."""
    n = min(n, len(split))
    names = [spec.classes[int(v)] for v in split.y[:n]]
    titles = [f"label {c}" for c in names] if _short_names(spec) else names  # long names alone fit
    with figure(0.8 * ncols, 0.95 * math.ceil(n / ncols) + 0.5) as fig:
        _image_grid(fig, split.x[:n], spec, titles, ncols)
        fig.suptitle(f"The first {n} training images with their labels")
    return fig


def confusion_matrix(model: nn.Module, split: mdata.Split, spec: DatasetSpec, label: str = "") -> Figure:
    """Counts of (true, predicted) class of ``model`` on ``split``, annotated: errors coloured from
    0 to the largest error count (so they stay visible), the diagonal grey, off that scale."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    pred = predict(model, split.x).argmax(1)
    true = split.y.cpu().numpy()
    cm = sk_confusion(true, pred, labels=range(spec.n_classes))
    diag = np.eye(len(cm), dtype=bool)
    errors = int(cm[~diag].sum())
    names = list(spec.classes)
    common = dict(
        annot=True,
        fmt="d",
        square=True,
        linewidths=0.5,
        linecolor="white",
        xticklabels=names,
        yticklabels=names,
    )
    with figure(7.2, 6.2) as fig:
        ax = fig.add_subplot()
        sns.heatmap(
            cm,
            ax=ax,
            mask=~diag,
            cmap=mpl.colors.ListedColormap(["#d9dde0"]),
            cbar=False,
            annot_kws={"fontsize": 9, "color": "black", "fontweight": "bold"},
            **common,
        )
        sns.heatmap(
            cm,
            ax=ax,
            mask=diag,
            cmap="rocket_r",
            vmin=0,
            vmax=max(int(cm[~diag].max()), 1),
            annot_kws={"fontsize": 9},
            cbar_kws={"label": "misclassified test images", "shrink": 0.8},
            **common,
        )
        colorbar = ax.collections[-1].colorbar
        assert colorbar is not None  # the second heatmap draws one
        colorbar.ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.grid(False)
        ax.set(xlabel="predicted class", ylabel="true class")
        ax.tick_params(axis="y", rotation=0)
        # Names wider than their column (about 5.5 inches shared) are slanted so they do not overlap.
        if max(map(len, names)) * 0.08 > 5.5 / len(names):
            ax.tick_params(axis="x", rotation=40)
            for t in ax.get_xticklabels():
                t.set_horizontalalignment("right")
        who = f"{label}\n" if label else ""
        ax.set_title(
            f"{who}{errors:,} of {len(true):,} test images wrong ({100 * errors / len(true):.2f}%);"
            " diagonal: correct"
        )
    return fig


def misclassified(
    model: nn.Module, split: mdata.Split, spec: DatasetSpec, label: str = "", n: int = 30, ncols: int = 10
) -> Figure:
    """The first ``n`` images of ``split`` that ``model`` gets wrong, each titled true → predicted
    class with the prediction's softmax probability (%)."""
    proba = predict(model, split.x)
    pred = proba.argmax(1)
    true = split.y.cpu().numpy()
    wrong = np.flatnonzero(pred != true)
    shown = wrong[:n]
    nrows = max(1, math.ceil(len(shown) / ncols))
    # Short names share one line ('3→5 87%'); long ones take a line each.
    sep, end, lines = ("", " ", 1) if _short_names(spec) else ("\n", "\n", 3)
    with figure(0.85 * ncols, (0.85 + 0.2 * lines) * nrows + 0.6) as fig:
        c = spec.classes
        titles = [f"{c[true[i]]}{sep}→{c[pred[i]]}{end}{100 * proba[i, pred[i]]:.0f}%" for i in shown]
        _image_grid(fig, split.x[shown], spec, titles, ncols)
        who = f"{label}: " if label else ""
        fig.suptitle(
            f"{who}the first {len(shown)} of {len(wrong):,} misclassified test images\n"
            "titles: true→predicted class, softmax confidence of the prediction"
        )
    return fig


def predictions_last10(model: nn.Module, split: mdata.Split, spec: DatasetSpec, label: str = "") -> Figure:
    """The last 10 images of ``split``: true and predicted class and the prediction's softmax
    probability (%); wrong ones in red."""
    x, y = split.x[-10:], split.y[-10:].cpu().numpy()
    proba = predict(model, x)
    pred = proba.argmax(1)
    first = len(split) - 10
    c = spec.classes
    titles = [
        f"#{first + i}\ntrue {c[y[i]]}\npred {c[pred[i]]}\n{100 * proba[i, pred[i]]:.1f}%" for i in range(10)
    ]
    colors = ["black" if p == t else ERROR_RED for p, t in zip(pred, y, strict=True)]
    with figure(9, 1.8) as fig:
        _image_grid(fig, x, spec, titles, 10, colors)
        who = f"{label}: " if label else ""
        fig.suptitle(
            f"{who}the last 10 test images, true and predicted class, confidence "
            f"({int((pred == y).sum())}/10 right)",
            fontsize=11,
        )
    return fig


def pick_model(models: Mapping[int, nn.Module], split: mdata.Split) -> tuple[int, nn.Module]:
    """The (seed, model) whose accuracy on ``split`` is the median of the seeds (the lower middle
    one of an even count)."""
    if not models:
        raise ValueError("no models given")
    y = split.y.cpu().numpy()
    acc = {seed: float((predict(m, split.x).argmax(1) == y).mean()) for seed, m in models.items()}
    ranked = sorted(acc, key=lambda s: (acc[s], str(s)))
    seed = ranked[(len(ranked) - 1) // 2]
    return seed, models[seed]
