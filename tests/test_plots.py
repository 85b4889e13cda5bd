"""Figures drawn from a small real results frame (real MNIST, real training runs)."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure

from mlpmnist import plots
from mlpmnist.model import MLP
from mlpmnist.results import frame, make_record, models_path, save_models
from mlpmnist.train import TrainConfig, train

BATCH_SIZES = (32, 128)
SEEDS = (0, 1)
EPOCHS = 3
ALL_PNGS = {
    "accuracy_vs_epoch.png",
    "final_accuracy_vs_batch.png",
    "heatmap_batch_epoch.png",
    "train_vs_test.png",
    "sample_digits.png",
    "confusion_matrix.png",
    "misclassified.png",
    "predictions_last10.png",
}


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
def df(runs):
    return frame([make_record(r) for r in runs])


@pytest.fixture(scope="module")
def models(runs) -> dict[int, MLP]:
    out = {}
    for seed, sd in zip(SEEDS, runs[-1].state_dicts):
        m = MLP()
        m.load_state_dict(sd)
        out[seed] = m.eval()
    return out


def _ax(fig: Figure):
    return [a for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"]


def test_seed_stats_match_a_plain_groupby(df):
    st = plots.seed_stats(df, "test_acc")
    assert len(st) == len(BATCH_SIZES) * EPOCHS
    assert (st["n"] == len(SEEDS)).all()
    expected = df.groupby(["batch_size", "epoch"])["test_acc"].mean().to_numpy()
    np.testing.assert_allclose(st["mean"].to_numpy(), expected)
    assert (st["ci95"] > 0).all()


def test_batch_colors_are_ordered_by_size():
    colors = plots.batch_colors([150, 8, 90, 8])
    assert list(colors) == [8, 90, 150]
    assert len(set(colors.values())) == 3


def test_accuracy_vs_epoch(df):
    fig = plots.accuracy_vs_epoch(df)
    assert isinstance(fig, Figure)
    (ax,) = _ax(fig)
    assert ax.get_xlabel() == "epoch"
    assert ax.get_ylabel() == "test accuracy (%)"
    assert len(ax.lines) == len(BATCH_SIZES)  # one mean line per batch size
    assert len(ax.collections) == len(BATCH_SIZES)  # one CI band each
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(b) for b in BATCH_SIZES]
    y = ax.lines[0].get_ydata()
    assert np.all((y > 1) & (y <= 100))  # drawn in percent
    assert ax.get_ylim()[1] <= 100


def test_final_accuracy_vs_batch(df):
    fig = plots.final_accuracy_vs_batch(df)
    (ax,) = _ax(fig)
    assert ax.get_xscale() == "log"
    assert "batch size" in ax.get_xlabel()
    assert "(%)" in ax.get_ylabel()
    assert f"epoch {EPOCHS}" in ax.get_ylabel()
    seeds = [c for c in ax.collections if c.get_offsets().shape[0] == len(SEEDS)]
    assert len(seeds) == len(BATCH_SIZES)  # one dot per seed per batch size
    last = df[df["epoch"] == EPOCHS].groupby("batch_size")["test_acc"].mean()
    mean_line = ax.containers[0].lines[0]  # the errorbar's data line
    np.testing.assert_allclose(np.asarray(mean_line.get_ydata(), float), 100 * last.to_numpy(), rtol=1e-6)


def test_heatmap_batch_epoch(df):
    fig = plots.heatmap_batch_epoch(df)
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert mesh.get_array().size == len(BATCH_SIZES) * EPOCHS
    assert ax.get_xlabel() == "epoch"
    assert ax.get_ylabel() == "batch size"
    annotated = sorted(float(t.get_text()) for t in ax.texts)
    expected = 100 * df.groupby(["batch_size", "epoch"])["test_acc"].mean()
    np.testing.assert_allclose(annotated, sorted(expected.round(1)), atol=0.051)
    # The colour floor is a quantile of the cells, so the top cells span the colour range.
    assert mesh.norm.vmin > expected.min() - 1e-9
    assert mesh.norm.vmax == pytest.approx(expected.max())


def test_heatmap_shows_a_subset_of_many_epochs(df):
    fig = plots.heatmap_batch_epoch(df, max_epochs=2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", str(EPOCHS)]
    assert "subset" in ax.get_xlabel()


def test_train_vs_test(df):
    fig = plots.train_vs_test(df)
    axes = _ax(fig)
    assert len(axes) == 2 * len(BATCH_SIZES)  # accuracy and loss per batch size
    assert all(len(ax.lines) == 2 for ax in axes)  # train and test
    assert {ax.get_title() for ax in axes if ax.get_title()} == {f"batch {b}" for b in BATCH_SIZES}
    assert {ax.get_ylabel() for ax in axes} >= {"accuracy (%)", "loss (nats)"}
    loss_axes = [ax for ax in axes if ax.get_xlabel() == "epoch"]
    assert len(loss_axes) == len(BATCH_SIZES)
    assert all(ax.get_ylim()[0] >= 0 for ax in loss_axes)


def test_train_vs_test_wraps_and_hides_spare_panels(df):
    fig = plots.train_vs_test(df, ncols=1)
    assert len(_ax(fig)) == 2 * len(BATCH_SIZES)


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
    assert len(ax.texts) == 100
    assert sum(int(t.get_text()) for t in ax.texts) == len(mnist.test)
    assert ax.get_xlabel() == "predicted digit"
    assert ax.get_ylabel() == "true digit"
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
    for ax, y in zip(axes, mnist.test.y[-10:].tolist()):
        assert f"true {y}" in ax.get_title()
        assert "pred " in ax.get_title() and "%" in ax.get_title()


def test_pick_model_takes_the_median_seed(models, mnist):
    y = mnist.test.y.numpy()
    acc = {s: (plots.predict(m, mnist.test.x).argmax(1) == y).mean() for s, m in models.items()}
    seed, _ = plots.pick_model(models, mnist.test)
    assert seed == min(acc, key=lambda s: (acc[s], s))  # two seeds: the lower one


def _check_pngs(paths, names):
    assert {p.name for p in paths} == names
    for p in paths:
        assert p.stat().st_size > 5_000
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[1] >= 800  # wide enough for a README


def test_save_all_with_models(df, models, mnist, tmp_path):
    paths = plots.save_all(df, tmp_path / "media", models=models, data=mnist)
    _check_pngs(paths, ALL_PNGS)


def test_save_all_finds_the_sweeps_models(df, runs, mnist, tmp_path):
    save_models(runs[-1], models_path(tmp_path / "results", BATCH_SIZES[-1]))
    paths = plots.save_all(
        df, tmp_path / "media", results_dir=tmp_path / "results", batch_size=BATCH_SIZES[-1], data=mnist
    )
    assert {p.name for p in paths} == ALL_PNGS


def test_save_all_without_models_skips_model_figures(df, tmp_path, capsys):
    paths = plots.save_all(df, tmp_path, data_dir=None)  # the CLI's call
    _check_pngs(paths, ALL_PNGS - {"confusion_matrix.png", "misclassified.png", "predictions_last10.png"})
    assert "skipped confusion_matrix" in capsys.readouterr().out
