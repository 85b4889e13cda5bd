"""Every figure of the study as a function: a tidy results frame (or a model and data) in,
a matplotlib ``Figure`` out; ``save_all`` writes them all as PNGs.

Figures are built on ``matplotlib.figure.Figure`` directly rather than through pyplot: no
backend is selected or switched, nothing accumulates in pyplot's figure registry (so there is
nothing to close), and Jupyter's inline formatter still displays a returned Figure.

Accuracies are drawn in percent, losses in nats (mean cross-entropy). Spread over seeds is a
95% confidence interval of the mean (Student t), the same as ``results.summary``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from scipy import stats
from torch import nn

from . import data as mdata
from .results import load_models, models_path

DPI = 150
MODEL_BATCH_SIZE = 90
# Sized so that at ~800 px display width tick labels stay around 11 px high.
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
ERROR_RED = "#c0392b"


def _figure(width: float, height: float, **kwargs) -> Figure:
    # rc settings are applied while artists are created, so the style sticks to this figure
    # only and the caller's rcParams are left untouched.
    with mpl.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained", **kwargs)


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of replicas that did not diverge (their metrics are NaN or null)."""
    if df.empty:
        raise ValueError("the results frame is empty; run a sweep first")
    return df[~df["diverged"].astype(bool)]


def _ci95(values: pd.Series) -> float:
    n = values.count()
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


def seed_stats(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per batch size and epoch: ``mean``, ``ci95`` (half-width, Student t over seeds; NaN for
    one seed) and ``n`` of ``column``, in the column's own units."""
    g = _ok(df).groupby(["batch_size", "epoch"])[column]
    return pd.DataFrame({"mean": g.mean(), "ci95": g.agg(_ci95), "n": g.count()}).reset_index()


def batch_colors(batch_sizes) -> dict[int, tuple]:
    """Batch size -> colour on viridis by log2(batch size), so the colour order is the size order.

    The pale yellow end of viridis is left out; it disappears on a white background.
    """
    sizes = sorted({int(b) for b in batch_sizes})
    logs = np.log2(sizes)
    span = (logs.max() - logs.min()) or 1.0
    cmap = mpl.colormaps["viridis"]
    return {b: cmap(0.9 * (lg - logs.min()) / span) for b, lg in zip(sizes, logs)}


def _n_seeds_text(df: pd.DataFrame) -> str:
    n = _ok(df).groupby("batch_size")["seed"].nunique()
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"


def _band(ax, s: pd.DataFrame, color, scale: float = 1.0, clip=(0.0, np.inf), **line_kw):
    """Mean line with a 95% CI band, the band clipped to the metric's possible range ``clip``
    (accuracy 0..100%, loss >= 0); returns the line."""
    (line,) = ax.plot(s["epoch"], scale * s["mean"], color=color, **line_kw)
    if s["ci95"].notna().any():
        lo = (scale * (s["mean"] - s["ci95"])).clip(*clip)
        hi = (scale * (s["mean"] + s["ci95"])).clip(*clip)
        ax.fill_between(s["epoch"], lo, hi, color=color, alpha=0.2, linewidth=0)
    return line


def _limits_from_means(values, top: float = np.inf, pad: float = 0.08) -> tuple[float, float]:
    """Axis limits that fit the mean curves (not the CI bands, which with few seeds can be
    wide enough to flatten every curve); bands reaching further run off the axes."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = float(v.min()), float(v.max())
    margin = pad * (hi - lo) or 0.5
    return max(lo - margin, 0.0), min(hi + margin, top)


def _epoch_ticks(ax, epochs: np.ndarray) -> None:
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True, nbins=8))
    ax.set_xlim(epochs.min() - 0.3, epochs.max() + 0.3)


# --------------------------------------------------------------------------- results figures


def accuracy_vs_epoch(df: pd.DataFrame) -> Figure:
    """Mean test accuracy (%) over seeds against epoch, one line per batch size with a 95% CI
    band; colours ordered by batch size."""
    st = seed_stats(df, "test_acc")
    colors = batch_colors(st["batch_size"])
    fig = _figure(8, 5)
    with mpl.rc_context(STYLE):
        ax = fig.add_subplot()
        for bs, s in st.groupby("batch_size"):
            _band(ax, s, colors[bs], 100, (0, 100), label=str(bs), linewidth=1.8, marker="o", markersize=3)
        _epoch_ticks(ax, st["epoch"].to_numpy())
        ax.set_ylim(*_limits_from_means(100 * st["mean"], top=100))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Test accuracy by epoch (mean of {_n_seeds_text(df)} seeds, band: 95% CI)")
        ax.legend(title="batch size", loc="lower right", ncols=2)
    return fig


def final_accuracy_vs_batch(df: pd.DataFrame) -> Figure:
    """Test accuracy (%) after the last epoch against batch size (log2 axis): each seed as a
    point, the mean with a 95% CI error bar."""
    ok = _ok(df)
    last = ok[ok["epoch"] == ok.groupby("batch_size")["epoch"].transform("max")]
    st = (
        last.groupby("batch_size")["test_acc"]
        .agg(mean="mean", ci95=_ci95, epoch="size")
        .reset_index()
        .rename(columns={"epoch": "n"})
    )
    epochs = sorted(last["epoch"].unique())
    colors = batch_colors(st["batch_size"])
    fig = _figure(8, 4.8)
    with mpl.rc_context(STYLE):
        ax = fig.add_subplot()
        # Seeds are spread sideways by a fixed offset (no random jitter) so the figure is
        # the same every time it is drawn.
        for bs, g in last.groupby("batch_size"):
            k = len(g)
            offsets = (np.arange(k) - (k - 1) / 2) * 0.035
            ax.scatter(
                bs * 2**offsets,
                100 * g["test_acc"],
                s=22,
                color=colors[bs],
                alpha=0.7,
                edgecolor="none",
                zorder=2,
            )
        ax.errorbar(
            st["batch_size"],
            100 * st["mean"],
            yerr=100 * st["ci95"].fillna(0),
            fmt="o-",
            color="black",
            markersize=5,
            capsize=4,
            linewidth=1.2,
            zorder=3,
            label="mean ± 95% CI",
        )
        ax.set_ylim(*_limits_from_means(100 * last["test_acc"], top=100))
        ax.set_xscale("log", base=2)
        ax.set_xticks(st["batch_size"], [str(b) for b in st["batch_size"]])
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax.set_xlabel("batch size (log2 scale)")
        ep = f"epoch {epochs[0]}" if len(epochs) == 1 else "the last epoch"
        ax.set_ylabel(f"test accuracy after {ep} (%)")
        n = last.groupby("batch_size")["seed"].nunique()
        seeds = f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"
        ax.set_title(f"Final test accuracy by batch size ({seeds} seeds; dots: single seeds)")
        ax.legend(loc="best")
    return fig


def heatmap_batch_epoch(df: pd.DataFrame, vmin_quantile: float = 0.2, max_epochs: int = 16) -> Figure:
    """Mean test accuracy (%) over seeds for each batch size (rows) and epoch (columns),
    annotated. The colour range starts at the ``vmin_quantile`` of the cells, so the small
    differences among the best cells get most of the colour scale; lower cells share the
    darkest colour but keep their number. With more than ``max_epochs`` epochs, evenly
    spaced epochs (always the first and last) are shown so the numbers stay readable."""
    st = seed_stats(df, "test_acc")
    table = st.pivot(index="batch_size", columns="epoch", values="mean") * 100
    epochs = list(table.columns)
    subset = len(epochs) > max_epochs
    if subset:
        keep = np.unique(np.linspace(0, len(epochs) - 1, max_epochs).round().astype(int))
        table = table[[epochs[i] for i in keep]]
    values = table.to_numpy()
    vmin = float(np.nanquantile(values, vmin_quantile))
    vmax = float(np.nanmax(values))
    n_rows, n_cols = table.shape
    fig = _figure(max(6.0, 1.6 + 0.55 * n_cols), 1.4 + 0.42 * n_rows)
    with mpl.rc_context(STYLE):
        ax = fig.add_subplot()
        sns.heatmap(
            table,
            ax=ax,
            annot=True,
            fmt=".1f",
            annot_kws={"fontsize": 9},
            cmap="mako",
            vmin=vmin,
            vmax=vmax,
            linewidths=0.5,
            linecolor="white",
            cbar_kws={"label": f"mean test accuracy (%), ≤{vmin:.1f} darkest", "shrink": 0.9},
        )
        ax.grid(False)
        ax.set_xlabel("epoch (evenly spaced subset)" if subset else "epoch")
        ax.set_ylabel("batch size")
        ax.tick_params(axis="y", rotation=0)
        ax.set_title(f"Mean test accuracy (%) by batch size and epoch ({_n_seeds_text(df)} seeds)")
    return fig


def train_vs_test(df: pd.DataFrame, ncols: int = 4) -> Figure:
    """Small multiples, one column per batch size (wrapped after ``ncols``): accuracy (%) on
    top, loss (nats) below, each with train and test curves (mean over seeds, 95% CI band).

    Train values are the running averages over each epoch's batches that the trainer logs,
    so they lag the end-of-epoch weights a little (most visibly in epoch 1).
    """
    batch_sizes = sorted(_ok(df)["batch_size"].unique())
    n = len(batch_sizes)
    ncols = min(ncols, n)
    nblocks = math.ceil(n / ncols)
    stats_ = {c: seed_stats(df, c) for c in ("train_acc", "test_acc", "train_loss", "test_loss")}
    fig = _figure(2.6 * ncols + 0.6, 4.4 * nblocks + 0.6)
    colors = {"train": "#e67e22", "test": "#2c3e50"}
    with mpl.rc_context(STYLE):
        axes = fig.subplots(2 * nblocks, ncols, sharex=True, squeeze=False)
        acc_axes, loss_axes = [], []
        for i in range(nblocks * ncols):
            ax_acc, ax_loss = axes[2 * (i // ncols), i % ncols], axes[2 * (i // ncols) + 1, i % ncols]
            if i >= n:
                ax_acc.set_visible(False)
                ax_loss.set_visible(False)
                continue
            bs = batch_sizes[i]
            for split in ("train", "test"):
                for metric, ax, scale, clip in (
                    ("acc", ax_acc, 100, (0, 100)),
                    ("loss", ax_loss, 1, (0, np.inf)),
                ):
                    st = stats_[f"{split}_{metric}"]
                    _band(ax, st[st["batch_size"] == bs], colors[split], scale, clip, label=split, lw=1.6)
            ax_acc.set_title(f"batch {bs}")
            if i + ncols >= n:  # the lowest panel in its column
                ax_loss.set_xlabel("epoch")
                ax_loss.tick_params(axis="x", labelbottom=True)
            acc_axes.append(ax_acc)
            loss_axes.append(ax_loss)
            if i % ncols == 0:
                ax_acc.set_ylabel("accuracy (%)")
                ax_loss.set_ylabel("loss (nats)")
        # Shared ranges per metric so the panels can be compared at a glance.
        acc_means = pd.concat([100 * stats_["train_acc"]["mean"], 100 * stats_["test_acc"]["mean"]])
        loss_means = pd.concat([stats_["train_loss"]["mean"], stats_["test_loss"]["mean"]])
        for group, lims in (
            (acc_axes, _limits_from_means(acc_means, 100)),
            (loss_axes, _limits_from_means(loss_means)),
        ):
            for a in group:
                a.set_ylim(*lims)
                a.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True, nbins=4))
        handles, labels = acc_axes[0].get_legend_handles_labels()
        fig.legend(
            handles,
            ["train (running mean over the epoch)", "test (after the epoch)"],
            loc="outside lower center",
            ncols=2,
        )
        fig.suptitle(f"Train vs test, accuracy and loss, mean of {_n_seeds_text(df)} seeds (band: 95% CI)")
    return fig


# ----------------------------------------------------------------------------- model figures


def _images(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().reshape(-1, 28, 28).numpy()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 10_000) -> np.ndarray:
    """Class probabilities [N, 10] (softmax of the logits) of ``model`` on ``x``, on the CPU."""
    model = model.eval().cpu()
    return np.concatenate([torch.softmax(model(xb), 1).numpy() for xb in x.cpu().split(batch)])


def _digit_grid(
    fig: Figure, images: np.ndarray, titles: list[str], ncols: int, colors: list[str] | None = None
) -> None:
    nrows = math.ceil(len(images) / ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(images):
            continue
        ax.imshow(images[i], cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(titles[i], fontsize=10, color=colors[i] if colors else "black", pad=3)


def sample_digits(split: mdata.Split, n: int = 40, ncols: int = 10, what: str = "training") -> Figure:
    """The first ``n`` images of ``split`` with their labels (ink dark on white); ``what``
    names the split in the title."""
    n = min(n, len(split))
    nrows = math.ceil(n / ncols)
    fig = _figure(0.8 * ncols, 0.95 * nrows + 0.5)
    with mpl.rc_context(STYLE):
        _digit_grid(fig, _images(split.x[:n]), [f"label {int(v)}" for v in split.y[:n]], ncols)
        fig.suptitle(f"The first {n} {what} images with their labels")
    return fig


def confusion_matrix(model: nn.Module, split: mdata.Split, label: str = "") -> Figure:
    """Counts of (true, predicted) digits of ``model`` on ``split``, every cell annotated.
    Errors (off the diagonal) are coloured on a scale from 0 to the largest error count so
    they stay visible; the correct (diagonal) cells are grey, off that scale. ``label`` names
    the model in the title."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    pred = predict(model, split.x).argmax(1)
    true = split.y.cpu().numpy()
    cm = sk_confusion(true, pred, labels=range(mdata.N_CLASSES))
    diag = np.eye(len(cm), dtype=bool)
    errors = int(cm[~diag].sum())
    common = {"annot": True, "fmt": "d", "square": True, "linewidths": 0.5, "linecolor": "white"}
    fig = _figure(7.2, 6.2)
    with mpl.rc_context(STYLE):
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
        ax.collections[-1].colorbar.ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.grid(False)
        ax.set_xlabel("predicted digit")
        ax.set_ylabel("true digit")
        ax.tick_params(axis="y", rotation=0)
        who = f"{label}\n" if label else ""
        ax.set_title(
            f"{who}{errors:,} of {len(true):,} test images wrong ({100 * errors / len(true):.2f}%);"
            " diagonal: correct"
        )
    return fig


def misclassified(
    model: nn.Module, split: mdata.Split, n: int = 30, ncols: int = 10, label: str = ""
) -> Figure:
    """The first ``n`` images of ``split`` (in split order) that ``model`` gets wrong, each
    titled true → predicted with the predicted class's softmax probability (%)."""
    proba = predict(model, split.x)
    pred = proba.argmax(1)
    true = split.y.cpu().numpy()
    wrong = np.flatnonzero(pred != true)
    shown = wrong[:n]
    nrows = max(1, math.ceil(len(shown) / ncols))
    fig = _figure(0.85 * ncols, 1.05 * nrows + 0.6)
    with mpl.rc_context(STYLE):
        titles = [f"{true[i]}→{pred[i]} {100 * proba[i, pred[i]]:.0f}%" for i in shown]
        _digit_grid(fig, _images(split.x[shown]), titles, ncols)
        who = f"{label}: " if label else ""
        fig.suptitle(
            f"{who}the first {len(shown)} of {len(wrong):,} misclassified test images\n"
            "titles: true→predicted digit, softmax confidence of the prediction"
        )
    return fig


def predictions_last10(model: nn.Module, split: mdata.Split, label: str = "") -> Figure:
    """The last 10 images of ``split``: true label, predicted label and the softmax
    probability (%) of the prediction; wrong predictions in red."""
    x, y = split.x[-10:], split.y[-10:].cpu().numpy()
    proba = predict(model, x)
    pred = proba.argmax(1)
    first = len(split) - 10
    titles = [f"#{first + i}\ntrue {y[i]}\npred {pred[i]}\n{100 * proba[i, pred[i]]:.1f}%" for i in range(10)]
    colors = ["black" if p == t else ERROR_RED for p, t in zip(pred, y)]
    fig = _figure(9, 1.8)
    with mpl.rc_context(STYLE):
        _digit_grid(fig, _images(x), titles, 10, colors)
        who = f"{label}: " if label else ""
        fig.suptitle(
            f"{who}the last 10 test images, true and predicted digit, confidence "
            f"({int((pred == y).sum())}/10 right)",
            fontsize=11,
        )
    return fig


# ----------------------------------------------------------------------------------- save_all

FIGURES = {
    "accuracy_vs_epoch": accuracy_vs_epoch,
    "final_accuracy_vs_batch": final_accuracy_vs_batch,
    "heatmap_batch_epoch": heatmap_batch_epoch,
    "train_vs_test": train_vs_test,
}
MODEL_FIGURES = ("sample_digits", "confusion_matrix", "misclassified", "predictions_last10")


def save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``DPI`` and release its memory; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    fig.clear()
    return path


def pick_model(models: Mapping[int, nn.Module], split: mdata.Split) -> tuple[int, nn.Module]:
    """The (seed, model) whose accuracy on ``split`` is the median of the seeds (the lower
    middle one for an even count): a representative replica, neither the best nor the worst."""
    if not models:
        raise ValueError("no models given")
    y = split.y.cpu().numpy()
    acc = {seed: float((predict(m, split.x).argmax(1) == y).mean()) for seed, m in models.items()}
    ranked = sorted(acc, key=lambda s: (acc[s], str(s)))
    seed = ranked[(len(ranked) - 1) // 2]
    return seed, models[seed]


def _resolve_models(
    models: Mapping[int, nn.Module] | nn.Module | None,
    results_dir: str | os.PathLike | None,
    batch_size: int,
) -> tuple[Mapping[int, nn.Module] | None, str]:
    if isinstance(models, nn.Module):
        return {None: models}, "the given model"
    if models is not None:
        return models, "the given models"
    if results_dir is None:
        return None, "no models given and no results_dir to find them in"
    path = models_path(results_dir, batch_size)
    if not path.is_file():
        return None, f"{path} does not exist (the sweep saves it after training batch {batch_size})"
    return load_models(path), str(path)


def save_all(
    df: pd.DataFrame,
    media_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    models: Mapping[int, nn.Module] | nn.Module | None = None,
    *,
    results_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    data: mdata.MNIST | None = None,
) -> list[Path]:
    """Write every figure into ``media_dir`` as ``<name>.png``; returns the paths written.

    The results figures (``accuracy_vs_epoch``, ``final_accuracy_vs_batch``,
    ``heatmap_batch_epoch``, ``train_vs_test``) come from ``df``. ``sample_digits`` needs the
    data only. The model figures (``confusion_matrix``, ``misclassified``,
    ``predictions_last10``) use ``models`` (seed -> MLP, or one MLP) if given, else the final
    weights of batch ``batch_size`` (default 90) that the sweep saved under ``results_dir`` (default:
    ``df.attrs["results_dir"]`` if set); of several seeds the median one is drawn. Without
    models those three are skipped with a printed note. MNIST is ``data`` if given, else
    read from ``data_dir`` (default ``$MLPMNIST_DATA`` or ./data).
    """
    media = Path(media_dir)
    written = [save(make(df), media / f"{name}.png") for name, make in FIGURES.items()]

    data = data if data is not None else mdata.load(data_dir)
    written.append(save(sample_digits(data.train), media / "sample_digits.png"))

    if results_dir is None:
        results_dir = df.attrs.get("results_dir")
    found, source = _resolve_models(models, results_dir, batch_size or MODEL_BATCH_SIZE)
    if not found:
        print(f"note: skipped confusion_matrix, misclassified, predictions_last10: {source}")
        return written
    seed, model = pick_model(found, data.test)
    # Name the batch size when it is known: read from the sweep's file, or passed with models.
    batch = "" if models is not None and batch_size is None else f"batch {batch_size or MODEL_BATCH_SIZE}"
    label = ", ".join(p for p in (batch, "" if seed is None else f"seed {seed}") if p)
    if len(found) > 1:
        label += f" (median of {len(found)} seeds)"
    written.append(save(confusion_matrix(model, data.test, label), media / "confusion_matrix.png"))
    written.append(save(misclassified(model, data.test, label=label), media / "misclassified.png"))
    written.append(save(predictions_last10(model, data.test, label), media / "predictions_last10.png"))
    return written
