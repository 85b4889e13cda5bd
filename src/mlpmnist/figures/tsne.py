"""The t-SNE figure: small multiples of an ``embed.Embeddings`` (computed by ``embed``)."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from mlpmnist.figures.embed import CV_FOLDS, KNN_K, Embeddings
from mlpmnist.figures.style import figure


def class_colors(n: int) -> np.ndarray:
    """[n, 4] RGBA, a distinct colour per class: tab10 up to 10, tab20 up to 20, else spaced hues."""
    if n <= 20:
        return mpl.colormaps["tab10" if n <= 10 else "tab20"](range(n))
    return mpl.colormaps["hsv"](np.linspace(0, 1, n, endpoint=False))


def plot_tsne(emb: Embeddings, label: str = "", ncols: int = 4) -> Figure:
    """One panel per epoch, points coloured by true class, titled with the snapshot's test accuracy
    and the 2-D kNN accuracy and silhouette; ``label`` names the configuration (default: batch)."""
    epochs = sorted(emb.points["epoch"].unique())
    ncols = min(ncols, len(epochs) + 1)
    nrows = -(-(len(epochs) + 1) // ncols)  # one extra cell for the legend
    classes = emb.spec.classes
    colors = class_colors(len(classes))
    scores = emb.scores.set_index("epoch")
    # At least 9.5 inches wide, so the two-line title fits over few panels.
    with figure(max(2.6 * ncols, 9.5), 2.75 * nrows + 0.4) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, epoch in zip(axes, epochs, strict=False):  # spare cells stay empty
            p = emb.points[emb.points["epoch"] == epoch]
            ax.scatter(p["x"], p["y"], c=colors[p["label"]], s=3, alpha=0.7, linewidths=0, rasterized=True)
            ax.set(xticks=[], yticks=[])
            ax.grid(False)
            ax.set_aspect("equal", adjustable="datalim")
            ax.spines[["top", "right"]].set_visible(True)
            s = scores.loc[epoch]
            name = "before training" if epoch == 0 else f"epoch {epoch}"
            ax.set_title(
                f"{name} · test {100 * s['test_acc']:.1f}%\n"
                f"kNN {100 * s['knn_acc_2d']:.1f}% · silh. {s['silhouette_2d']:.2f}",
                fontsize=10,
            )
        for ax in axes[len(epochs) :]:
            ax.set_axis_off()
        handles = [
            mpl.lines.Line2D([], [], marker="o", linestyle="", color=colors[i], markersize=7, label=name)
            for i, name in enumerate(classes)
        ]
        axes[len(epochs)].legend(
            handles=handles, title="true class", ncols=2, loc="center", frameon=False, fontsize=11
        )
        n = emb.points.groupby("epoch").size().iloc[0]
        who = label or (None if emb.batch_size is None else f"batch {emb.batch_size}")
        seed = "" if emb.seed is None else f" (seed {emb.seed})"
        run = "" if who is None else f" while {who} trains{seed}"
        fig.suptitle(
            f"t-SNE of the last hidden layer{run}, the same {n:,} test images in every panel\n"
            f"kNN: {KNN_K}-NN accuracy in 2-D ({CV_FOLDS}-fold CV); silh.: silhouette of the classes in 2-D",
            fontsize=11,
        )
    return fig
