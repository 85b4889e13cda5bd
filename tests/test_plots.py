"""Figures: study figures from synthetic frames (measured seed outcomes) and from a small real
frame; model figures from real MNIST and a briefly trained MLP; saving."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.figure import Figure
from test_stats import B8, B16, B128, make_history

from mlpmnist import figures, plots, stats
from mlpmnist.model import MLP
from mlpmnist.results import frame, make_record
from mlpmnist.train import TrainConfig, train

BATCH_SIZES = (32, 128)
SEEDS = (0, 1)
EPOCHS = 3

# ``mnist`` (real MNIST, session-wide) and one torch thread per test come from conftest.py.


@pytest.fixture(scope="module")
def runs(mnist):
    return [
        train(
            TrainConfig(batch_size=b, epochs=EPOCHS, seeds=SEEDS, train_limit=3000, threads=1),
            mnist,
            progress=False,
            verbose=False,
        )
        for b in BATCH_SIZES
    ]


@pytest.fixture(scope="module")
def real(runs) -> pd.DataFrame:
    return frame([make_record(r) for r in runs])


@pytest.fixture(scope="module")
def models(runs) -> dict[int, MLP]:
    return {s: MLP.from_state_dict(sd) for s, sd in zip(SEEDS, runs[-1].state_dicts, strict=True)}


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    """Batch 8 with its two failed seeds and a collapsed one, batch 16 with one outlier,
    batch 128 with ordinary jitter; 4 epochs."""
    return make_history({8: [*B8, 10.1], 16: B16, 128: B128}, epochs=4)


@pytest.fixture(scope="module")
def two_lrs() -> pd.DataFrame:
    return pd.concat(
        [
            make_history({8: B8[8:], 64: B128}, epochs=3, lr=0.1),
            make_history({8: B16, 64: B128}, epochs=3, lr=0.03),
        ],
        ignore_index=True,
    )


def _axes(fig: Figure) -> list:
    return [a for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"]


def _gid(ax, gid: str) -> list:
    return [a for a in ax.get_children() if a.get_gid() == gid]


# ------------------------------------------------------------------------------------ style


def test_batch_colors_are_ordered_by_size():
    colors = plots.batch_colors([150, 8, 90, 8])
    assert list(colors) == [8, 90, 150]
    assert len(set(colors.values())) == 3


def test_figure_applies_the_style_inside_the_block_only():
    before = mpl.rcParams["font.size"]
    with plots.figure(4, 3) as fig:
        assert mpl.rcParams["font.size"] == plots.STYLE["font.size"]
        ax = fig.add_subplot()
        title = ax.set_title("t")
    assert isinstance(fig, Figure) and fig.get_size_inches().tolist() == [4, 3]
    assert title.get_fontsize() == plots.STYLE["axes.titlesize"]
    assert mpl.rcParams["font.size"] == before


def test_save_writes_a_png_atomically_and_releases_the_figure(tmp_path):
    target = tmp_path / "media" / "f.png"
    with plots.figure(4, 3) as fig:
        fig.add_subplot().plot([0, 1], [0, 1])
    assert plots.save(fig, target) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(target).shape[:2] == (3 * plots.DPI, 4 * plots.DPI)
    assert not fig.axes  # released
    assert [p.name for p in target.parent.iterdir()] == ["f.png"]  # no temporary file left
    # A figure that fails to render leaves the existing file as it was.
    old = target.read_bytes()
    with plots.figure(4, 3) as broken:
        broken.add_subplot()

    def fail(*args, **kwargs):
        raise RuntimeError("rendering failed")

    broken.savefig = fail
    with pytest.raises(RuntimeError):
        plots.save(broken, target)
    assert target.read_bytes() == old
    assert [p.name for p in target.parent.iterdir()] == ["f.png"]


def test_facets_find_the_second_grid_axis(two_lrs, study):
    assert [t for t, _ in plots.facets(two_lrs)] == ["lr 0.03", "lr 0.1"]
    assert [t for t, _ in plots.facets(study)] == [""]
    assert stats.varying_axes(two_lrs) == ["batch_size", "lr"]


# ---------------------------------------------------------------------------- study figures


def test_accuracy_vs_epoch_medians_and_quartile_bands(study):
    fig = plots.accuracy_vs_epoch(study)
    (ax,) = _axes(fig)
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "test accuracy (%)"
    lines = [line for line in ax.lines if len(line.get_xdata()) == 4]
    assert len(lines) == 3  # one median line per batch size
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 3  # quartile bands
    expected = 100 * np.median(B128) / 100
    assert lines[-1].get_ydata()[-1] == pytest.approx(expected)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["8", "16", "128"]
    assert "median" in fig.get_suptitle() and "quartiles" in fig.get_suptitle()


def test_accuracy_vs_epoch_facets_by_lr(two_lrs):
    axes = _axes(plots.accuracy_vs_epoch(two_lrs))
    assert [a.get_title() for a in axes] == ["lr 0.03", "lr 0.1"]


def test_final_accuracy_vs_batch_shows_seeds_failures_and_the_reference(study):
    fig = plots.final_accuracy_vs_batch(study)
    (ax,) = _axes(fig)
    (failed,) = _gid(ax, "failed")  # failed seeds: one artist of their own
    assert len(failed.get_offsets()) == 4  # 48.79, 61.42, 10.1 at batch 8; 89.04 at batch 16
    lo = ax.get_ylim()[0]
    assert 61.42 < lo < 80.72  # fitted to the seeds that did not fail...
    assert any(t.get_text() == "below: 10.1, 48.8, 61.4" for t in ax.texts)  # ...the others printed
    (ref,) = _gid(ax, "reference")
    assert sorted(np.round(ref.get_offsets()[:, 1], 2)) == [91.48, 94.0, 97.11]
    (headline,) = _gid(ax, "reference_headline")
    assert headline.get_ydata()[0] == pytest.approx(97.64)
    medians = ax.containers[-1].lines[0].get_ydata()
    assert np.allclose(medians, [np.median([*B8, 10.1]), np.median(B16), np.median(B128)])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "seed" and "median, 95% bootstrap CI" in labels
    assert any(label.startswith("failed seed") for label in labels)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8\nn=21", "16\nn=10", "128\nn=10"]


def test_final_accuracy_vs_batch_facets_and_puts_the_reference_at_its_lr(two_lrs):
    axes = _axes(plots.final_accuracy_vs_batch(two_lrs))
    assert [a.get_title() for a in axes] == ["lr 0.03", "lr 0.1"]
    assert not _gid(axes[0], "reference") and len(_gid(axes[1], "reference")) == 1


def test_heatmap_of_medians(study):
    fig = plots.heatmap_batch_epoch(study)
    ax = _axes(fig)[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert mesh.get_array().size == 3 * 4
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "batch size"
    expected = 100 * study.groupby(["batch_size", "epoch"])["test_acc"].median()
    np.testing.assert_allclose(sorted(float(t.get_text()) for t in ax.texts), sorted(expected), atol=0.051)
    assert mesh.norm.vmin > expected.min() and mesh.norm.vmax == pytest.approx(expected.max())


def test_heatmap_shows_a_subset_of_many_epochs_and_facets(study, two_lrs):
    ax = _axes(plots.heatmap_batch_epoch(study, max_epochs=2))[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4"]
    assert "subset" in ax.get_xlabel()
    assert [a.get_title() for a in _axes(plots.heatmap_batch_epoch(two_lrs))] == ["lr 0.03", "lr 0.1"]


def test_train_vs_test(study, two_lrs):
    axes = _axes(plots.train_vs_test(study))
    assert len(axes) == 2 * 3  # accuracy and loss per batch size
    assert all(len(ax.lines) == 2 for ax in axes)  # train and test medians
    assert {ax.get_title() for ax in axes if ax.get_title()} == {"batch 8", "batch 16", "batch 128"}
    assert {ax.get_ylabel() for ax in axes} >= {"accuracy (%)", "loss (nats)"}
    titles = {ax.get_title() for ax in _axes(plots.train_vs_test(two_lrs, ncols=2)) if ax.get_title()}
    assert titles == {"batch 8, lr 0.03", "batch 8, lr 0.1", "batch 64, lr 0.03", "batch 64, lr 0.1"}


def test_dead_units_marks_failed_runs(study, two_lrs):
    fig = plots.dead_units(study)
    axes = _axes(fig)
    assert [a.get_title() for a in axes] == ["hidden layer 1", "hidden layer 2"]
    for ax in axes:
        # Each of the four failed seeds: a dashed line and a red cross at its end.
        assert len(_gid(ax, "failed")) == 2 * 4
        assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 3
    assert axes[0].get_ylabel() == "dead units (% of the layer)"
    assert "failed seed (one line each)" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(_axes(plots.dead_units(two_lrs))) == 2 * 2  # layers x lrs


def test_dead_units_needs_the_dead_columns(study):
    with pytest.raises(ValueError, match="no dead-unit columns"):
        plots.dead_units(study.drop(columns=["dead_1", "dead_2"]))


def test_study_figures_from_a_real_frame(real, tmp_path):
    figs = figures.study_figures(real)
    assert list(figs) == [
        "accuracy_vs_epoch",
        "final_accuracy_vs_batch",
        "heatmap_batch_epoch",
        "train_vs_test",
        "dead_units",
    ]
    paths = figures.save_figures(figs, tmp_path)
    assert [p.name for p in paths] == [f"{name}.png" for name in figs]
    for p in paths:
        assert mpimg.imread(p).shape[1] >= 800  # wide enough for a README


def test_study_figures_skip_dead_units_without_the_columns(study):
    assert "dead_units" not in figures.study_figures(study.drop(columns=["dead_1", "dead_2"]))


# ---------------------------------------------------------------------------- model figures


def test_sample_digits(mnist):
    fig = plots.sample_digits(mnist.train, n=12, ncols=6)
    axes = [a for a in fig.axes if a.images]
    assert len(axes) == 12
    assert [a.get_title() for a in axes] == [f"label {int(v)}" for v in mnist.train.y[:12]]
    assert axes[0].images[0].get_array().shape == (28, 28)


def test_confusion_matrix_counts_every_test_image(models, mnist):
    fig = plots.confusion_matrix(models[0], mnist.test, "seed 0")
    ax = fig.axes[0]
    correct, wrong = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert correct.get_array().size == wrong.get_array().size == 100
    assert correct.get_array().count() == 10  # the diagonal, drawn apart from the errors
    assert sum(int(t.get_text()) for t in ax.texts) == len(mnist.test)
    pred = plots.predict(models[0], mnist.test.x).argmax(1)
    errors = int((pred != mnist.test.y.numpy()).sum())
    assert f"{errors:,} of {len(mnist.test):,}" in ax.get_title()


def test_misclassified_shows_only_wrong_predictions(models, mnist):
    fig = plots.misclassified(models[0], mnist.test, n=12, ncols=6)
    axes = [a for a in fig.axes if a.images]
    assert len(axes) == 12
    for ax in axes:
        true, pred = ax.get_title().split()[0].split("→")
        assert true != pred


def test_predictions_last10(models, mnist):
    fig = plots.predictions_last10(models[0], mnist.test)
    axes = [a for a in fig.axes if a.images]
    assert len(axes) == 10
    for ax, y in zip(axes, mnist.test.y[-10:].tolist(), strict=True):
        assert f"true {y}" in ax.get_title() and "pred " in ax.get_title()


def test_pick_model_takes_the_median_seed(models, mnist):
    y = mnist.test.y.numpy()
    acc = {s: (plots.predict(m, mnist.test.x).argmax(1) == y).mean() for s, m in models.items()}
    seed, _ = plots.pick_model(models, mnist.test)
    assert seed == min(acc, key=lambda s: (acc[s], s))  # two seeds: the lower one


@pytest.mark.slow
def test_model_figures_of_the_median_seed(models, mnist, tmp_path):
    seed, _ = plots.pick_model(models, mnist.test)
    figs = figures.model_figures(models, mnist.test, "batch 128")
    assert list(figs) == ["confusion_matrix", "misclassified", "predictions_last10"]
    assert f"batch 128, seed {seed} (median of 2 seeds)" in figs["confusion_matrix"].axes[0].get_title()
    figs |= figures.data_figures(mnist.train)
    paths = figures.save_figures(figs, tmp_path)
    assert {p.name for p in paths} == {f"{n}.png" for n in figs}
    assert all(p.stat().st_size > 5_000 for p in paths)
