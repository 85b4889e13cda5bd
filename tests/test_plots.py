"""Figures: study figures from synthetic frames (measured seed outcomes) and from small real
frames, including 1 epoch, 1 seed and 1 batch size (matplotlib and seaborn warnings are errors
there); model figures from real MNIST and a briefly trained MLP; saving."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib as mpl
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.figure import Figure
from test_stats import B8, B16, B128, make_history

from mlpmnist import figures as plots
from mlpmnist.analysis import columns, stats
from mlpmnist.figures import compose as figures
from mlpmnist.model import MLP
from mlpmnist.store import frame, make_record
from mlpmnist.training.loop import TrainConfig, train

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


def drawn(df: pd.DataFrame) -> SimpleNamespace:
    """What ``figures.study_figures`` hands the plot functions: the flagged history (curves),
    the final rows, the summary and the per-epoch medians."""
    curves = stats.mark_failed(df)
    return SimpleNamespace(
        curves=curves, fin=stats.final(curves), summ=stats.summary(curves), per=stats.per_epoch(curves)
    )


@pytest.fixture(scope="module")
def study() -> SimpleNamespace:
    """Batch 8 with two outliers and a collapsed seed, batch 16 with one outlier, batch 128
    with ordinary jitter; 4 epochs."""
    return drawn(make_history({8: [*B8, 10.1], 16: B16, 128: B128}, epochs=4))


@pytest.fixture(scope="module")
def study15() -> SimpleNamespace:
    """``study`` over the reference study's 15 epochs (at its lr, 0.1), so its values apply."""
    return drawn(make_history({8: [*B8, 10.1], 16: B16, 128: B128}, epochs=15))


@pytest.fixture(scope="module")
def two_lrs() -> SimpleNamespace:
    return drawn(
        pd.concat(
            [
                make_history({8: B8[8:], 64: B128}, epochs=15, lr=0.1),
                make_history({8: B16, 64: B128}, epochs=15, lr=0.03),
            ],
            ignore_index=True,
        )
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
    assert [t for t, _ in plots.facets(two_lrs.curves)] == ["lr 0.03", "lr 0.1"]
    assert [t for t, _ in plots.facets(study.curves)] == [""]
    assert columns.varying_axes(two_lrs.curves) == ["batch_size", "lr"]
    # The summary rows of each panel: those at its lr.
    for _, g in plots.facets(two_lrs.fin):
        rows = plots.panel_rows(two_lrs.summ, g, ["lr"])
        assert len(rows) == 2 and (rows["lr"] == g["lr"].iloc[0]).all()


@pytest.mark.parametrize(("epochs", "ticks"), [([1], [1]), ([1, 2, 3], [1, 2, 3]), (range(1, 16), None)])
def test_epoch_ticks_are_integers(epochs, ticks):
    with plots.figure(4, 3) as fig:
        ax = fig.add_subplot()
        ax.plot(list(epochs), list(epochs))
        plots.epoch_axis(ax, epochs)
        fig.canvas.draw()
    shown = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert all(float(t).is_integer() for t in shown)
    if ticks is not None:
        assert shown == ticks and [t.get_text() for t in ax.get_xticklabels()] == [str(t) for t in ticks]


# ---------------------------------------------------------------------------- study figures


def test_accuracy_vs_epoch_medians_and_quartile_bands(study):
    fig = plots.accuracy_vs_epoch(study.curves, study.summ)
    (ax,) = _axes(fig)
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "test accuracy (%)"
    lines = [line for line in ax.lines if len(line.get_xdata()) == 4]
    assert len(lines) == 3  # one median line per batch size
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 3  # quartile bands
    expected = 100 * np.median(B128) / 100
    assert lines[-1].get_ydata()[-1] == pytest.approx(expected)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["8", "16", "128"]
    assert "median of 10–21 seeds" in fig.get_suptitle() and "quartiles" in fig.get_suptitle()


def test_accuracy_vs_epoch_facets_by_lr(two_lrs):
    axes = _axes(plots.accuracy_vs_epoch(two_lrs.curves, two_lrs.summ))
    assert [a.get_title() for a in axes] == ["lr 0.03", "lr 0.1"]


def test_final_accuracy_vs_batch_shows_seeds_failures_outliers_and_the_reference(study15):
    fig = plots.final_accuracy_vs_batch(study15.fin, study15.summ)
    (ax,) = _axes(fig)
    (failed,) = _gid(ax, "failed")  # failed seeds: one artist of their own...
    assert len(failed.get_offsets()) == 1  # the collapsed seed, 10.1 at batch 8
    (outliers,) = _gid(ax, "outlier")  # ...and outliers another
    assert len(outliers.get_offsets()) == 3  # 48.79, 61.42 at batch 8; 89.04 at batch 16
    lo = ax.get_ylim()[0]
    assert 61.42 < lo < 80.72  # fitted to the seeds that neither failed nor are outliers...
    assert any(t.get_text() == "below: 10.1, 48.8, 61.4" for t in ax.texts)  # ...the others printed
    (ref,) = _gid(ax, "reference")
    assert sorted(np.round(ref.get_offsets()[:, 1], 2)) == [91.48, 94.0, 97.11]
    (headline,) = _gid(ax, "reference_headline")
    assert headline.get_ydata()[0] == pytest.approx(97.64)
    medians = ax.containers[-1].lines[0].get_ydata()
    assert np.allclose(medians, [np.median([*B8, 10.1]), np.median(B16), np.median(B128)])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "seed" and "median, 95% bootstrap CI" in labels
    assert "failed seed (collapsed to chance)" in labels
    assert "outlier (finished far below its median)" in labels
    assert any(label.startswith("reference study, epoch 15") for label in labels)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8\nn=21", "16\nn=10", "128\nn=10"]


def test_final_accuracy_vs_batch_draws_no_reference_outside_its_setup(study):
    (ax,) = _axes(plots.final_accuracy_vs_batch(study.fin, study.summ))  # 4 epochs, not 15
    assert not _gid(ax, "reference") and not _gid(ax, "reference_headline")
    fashion = drawn(make_history({8: B8, 128: B128}, epochs=15, dataset="fashion-mnist"))
    (ax,) = _axes(plots.final_accuracy_vs_batch(fashion.fin, fashion.summ))
    assert not _gid(ax, "reference") and not _gid(ax, "reference_headline")


def test_final_accuracy_vs_batch_facets_and_puts_the_reference_at_its_lr(two_lrs):
    axes = _axes(plots.final_accuracy_vs_batch(two_lrs.fin, two_lrs.summ))
    assert [a.get_title() for a in axes] == ["lr 0.03", "lr 0.1"]
    assert not _gid(axes[0], "reference") and len(_gid(axes[1], "reference")) == 1
    assert not _gid(axes[0], "reference_headline") and len(_gid(axes[1], "reference_headline")) == 1


def test_heatmap_of_medians(study):
    fig = plots.heatmap_batch_epoch(study.per, study.summ)
    ax = _axes(fig)[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert mesh.get_array().size == 3 * 4
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "batch size"
    expected = 100 * study.curves.groupby(["batch_size", "epoch"])["test_acc"].median()
    np.testing.assert_allclose(sorted(float(t.get_text()) for t in ax.texts), sorted(expected), atol=0.051)
    assert mesh.norm.vmin > expected.min() and mesh.norm.vmax == pytest.approx(expected.max())


def test_heatmap_shows_a_subset_of_many_epochs_and_facets(study, two_lrs):
    ax = _axes(plots.heatmap_batch_epoch(study.per, study.summ, max_epochs=2))[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4"]
    assert "subset" in ax.get_xlabel()
    titles = [a.get_title() for a in _axes(plots.heatmap_batch_epoch(two_lrs.per, two_lrs.summ))]
    assert titles == ["lr 0.03", "lr 0.1"]


def test_train_vs_test(study, two_lrs):
    axes = _axes(plots.train_vs_test(study.curves, study.summ))
    assert len(axes) == 2 * 3  # accuracy and loss per batch size
    assert all(len(ax.lines) == 2 for ax in axes)  # train and test medians
    assert {ax.get_title() for ax in axes if ax.get_title()} == {"batch 8", "batch 16", "batch 128"}
    assert {ax.get_ylabel() for ax in axes} >= {"accuracy (%)", "loss (nats)"}
    titles = {
        ax.get_title()
        for ax in _axes(plots.train_vs_test(two_lrs.curves, two_lrs.summ, ncols=2))
        if ax.get_title()
    }
    assert titles == {"batch 8, lr 0.03", "batch 8, lr 0.1", "batch 64, lr 0.03", "batch 64, lr 0.1"}


def test_dead_units_marks_failed_runs_and_outliers_apart(study, two_lrs):
    fig = plots.dead_units(study.curves, study.summ)
    axes = _axes(fig)
    assert [a.get_title() for a in axes] == ["hidden layer 1", "hidden layer 2"]
    for ax in axes:
        # The failed (collapsed) seed: a dashed line and a red cross at its end...
        failed = _gid(ax, "failed")
        assert len(failed) == 2 and {a.get_linestyle() for a in failed} == {"--", "None"}
        # ...each of the three outliers a dotted line and a red ring.
        outliers = _gid(ax, "outlier")
        assert len(outliers) == 2 * 3 and {a.get_linestyle() for a in outliers} == {":", "None"}
        assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 3
    assert axes[0].get_ylabel() == "dead units (% of the layer)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "failed seed (collapsed to chance), one line each" in labels
    assert "outlier (finished far below its median), one line each" in labels
    assert len(_axes(plots.dead_units(two_lrs.curves, two_lrs.summ))) == 2 * 2  # layers x lrs


def test_dead_units_needs_the_dead_columns(study):
    with pytest.raises(ValueError, match="no dead-unit columns"):
        plots.dead_units(study.curves.drop(columns=["dead_1", "dead_2"]), study.summ)


def test_plots_need_the_flags_of_mark_failed(study):
    with pytest.raises(ValueError, match="stats.mark_failed"):
        plots.accuracy_vs_epoch(study.curves.drop(columns=["failed", "outlier"]), study.summ)


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
    assert "dead_units" not in figures.study_figures(study.curves.drop(columns=["dead_1", "dead_2"]))


# ------------------------------------------------------- 1 epoch, 1 seed, 1 batch size


def _bands(ax) -> list:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


@pytest.mark.filterwarnings("error")
def test_study_figures_of_one_seed_after_one_epoch_at_one_batch_size(mnist):
    cfg = TrainConfig(batch_size=128, epochs=1, seeds=(0,), train_limit=1000, threads=1)
    df = frame([make_record(train(cfg, mnist, progress=False, verbose=False))])
    figs = figures.study_figures(df)
    assert list(figs) == [
        "accuracy_vs_epoch",
        "final_accuracy_vs_batch",
        "heatmap_batch_epoch",
        "train_vs_test",
        "dead_units",
    ]
    for name, fig in figs.items():
        assert "1 seed" in fig.get_suptitle() and "median of" not in fig.get_suptitle(), name
        fig.draw_without_rendering()
    for name in ("accuracy_vs_epoch", "train_vs_test", "dead_units"):
        for ax in _axes(figs[name]):
            assert not _bands(ax), name  # no band pretends a spread
            lines = [line for line in ax.lines if len(line.get_xdata()) == 1]
            assert lines and all(line.get_marker() not in ("None", "", None) for line in lines), name
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks == [1], (name, ticks)  # one epoch: the one tick, no fractions
    (ax,) = _axes(figs["final_accuracy_vs_batch"])
    assert not ax.containers  # neither a box nor a median's CI from one seed
    assert [t.get_text() for t in ax.get_xticklabels()] == ["128\nn=1"]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    "df",
    [
        make_history({32: [26.6]}, epochs=1),  # 1 seed, 1 epoch, 1 batch size
        make_history({32: [26.6], 64: [30.0]}, epochs=1),  # 1 seed each
        make_history({32: [97.0, 97.2, 96.8]}, epochs=1),  # 1 epoch, 3 seeds
        make_history({32: B128}, epochs=3),  # 1 batch size
        make_history({32: [10.0, 11.0, 10.5], 64: [float("nan")] * 2}, epochs=4),  # every seed failed
    ],
    ids=["1seed-1epoch-1batch", "1seed-2batches", "1epoch", "1batch", "all-failed"],
)
def test_study_figures_of_small_frames_draw_without_warnings(df):
    figs = figures.study_figures(df)
    assert len(figs) == 5
    for fig in figs.values():
        fig.draw_without_rendering()  # layout and every artist, as saving would


def test_train_vs_test_after_one_epoch_shows_points():
    d = drawn(make_history({32: [97.0, 97.2, 96.8]}, epochs=1))
    for ax in _axes(plots.train_vs_test(d.curves, d.summ)):
        assert len(ax.lines) == 2 and all(line.get_marker() == "o" for line in ax.lines)
        assert all(len(line.get_xdata()) == 1 for line in ax.lines)


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
