"""Figures from real MNIST and short real trainings: every study figure from a small real
results frame (including 1 epoch, 1 seed and 1 batch size, where matplotlib and seaborn
warnings are errors), the model and data figures of a briefly trained MLP, and saving."""

from __future__ import annotations

import matplotlib.image as mpimg
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection, QuadMesh

from mlpmnist.figures import compose, model, registry
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


def _axes(fig) -> list:
    return [a for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"]


def test_study_figures_from_a_real_frame(real, tmp_path):
    figs = compose.study_figures(real)
    assert list(figs) == registry.names("results")
    paths = compose.save_figures(figs, tmp_path)
    assert [p.name for p in paths] == [f"{name}.png" for name in figs]
    for p in paths:
        assert mpimg.imread(p).shape[1] >= 800  # wide enough for a README


@pytest.mark.filterwarnings("error")
def test_study_figures_of_one_seed_after_one_epoch_at_one_batch_size(mnist):
    cfg = TrainConfig(batch_size=128, epochs=1, seeds=(0,), train_limit=1000, threads=1)
    df = frame([make_record(train(cfg, mnist, progress=False, verbose=False))])
    figs = compose.study_figures(df)
    assert list(figs) == registry.names("results")
    for name, fig in figs.items():
        assert "1 seed" in fig.get_suptitle() and "median of" not in fig.get_suptitle(), name
        fig.draw_without_rendering()
    for name in ("accuracy_vs_epoch", "train_vs_test", "dead_units"):
        for ax in _axes(figs[name]):
            assert not [c for c in ax.collections if isinstance(c, PolyCollection)], name  # no band
            lines = [line for line in ax.lines if len(line.get_xdata()) == 1]
            assert lines and all(line.get_marker() not in ("None", "", None) for line in lines), name
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks == [1], (name, ticks)  # one epoch: the one tick, no fractions
    (ax,) = _axes(figs["final_accuracy_vs_batch"])
    assert not ax.containers  # neither a box nor a median's CI from one seed
    assert [t.get_text() for t in ax.get_xticklabels()] == ["128\nn=1"]


# ---------------------------------------------------------------------------- model figures


def test_sample_digits(mnist):
    fig = model.sample_digits(mnist.train, mnist.spec, n=12, ncols=6)
    axes = [a for a in fig.axes if a.images]
    assert len(axes) == 12
    assert [a.get_title() for a in axes] == [f"label {int(v)}" for v in mnist.train.y[:12]]
    assert axes[0].images[0].get_array().shape == (28, 28)


def test_confusion_matrix_counts_every_test_image(models, mnist):
    fig = model.confusion_matrix(models[0], mnist.test, mnist.spec, "seed 0")
    ax = fig.axes[0]
    correct, wrong = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert correct.get_array().size == wrong.get_array().size == 100
    assert correct.get_array().count() == 10  # the diagonal, drawn apart from the errors
    assert sum(int(t.get_text()) for t in ax.texts) == len(mnist.test)
    pred = model.predict(models[0], mnist.test.x).argmax(1)
    errors = int((pred != mnist.test.y.numpy()).sum())
    assert f"{errors:,} of {len(mnist.test):,}" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == list(mnist.spec.classes)
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"


def test_misclassified_shows_only_wrong_predictions(models, mnist):
    fig = model.misclassified(models[0], mnist.test, mnist.spec, n=12, ncols=6)
    axes = [a for a in fig.axes if a.images]
    assert len(axes) == 12
    for ax in axes:
        true, pred = ax.get_title().split()[0].split("→")
        assert true != pred


def test_predictions_last10(models, mnist):
    fig = model.predictions_last10(models[0], mnist.test, mnist.spec)
    axes = [a for a in fig.axes if a.images]
    assert len(axes) == 10
    for ax, y in zip(axes, mnist.test.y[-10:].tolist(), strict=True):
        assert f"true {y}" in ax.get_title() and "pred " in ax.get_title()


def test_pick_model_takes_the_median_seed(models, mnist):
    y = mnist.test.y.numpy()
    acc = {s: (model.predict(m, mnist.test.x).argmax(1) == y).mean() for s, m in models.items()}
    seed, _ = model.pick_model(models, mnist.test)
    assert seed == min(acc, key=lambda s: (acc[s], s))  # two seeds: the lower one


@pytest.mark.slow
def test_model_and_data_figures_are_the_registrys(models, mnist, tmp_path):
    seed, _ = model.pick_model(models, mnist.test)
    figs = compose.model_figures(models, mnist, "batch 128")
    assert list(figs) == registry.names("model")
    assert f"batch 128, seed {seed} (median of 2 seeds)" in figs["confusion_matrix"].axes[0].get_title()
    figs |= compose.data_figures(mnist)
    assert set(figs) == set(registry.names("model", "data"))
    paths = compose.save_figures(figs, tmp_path)
    assert {p.name for p in paths} == {f"{n}.png" for n in figs}
    assert all(p.stat().st_size > 5_000 for p in paths)
