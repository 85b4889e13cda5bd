"""t-SNE of the last hidden layer on real MNIST, with a short real training run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from mlpmnist.config import TrainConfig
from mlpmnist.figures import compose, embed, registry, tsne

N = 400  # test images per panel here; the study uses 2,000
MAX_ITER = 250  # scikit-learn's minimum


# ``mnist`` (real MNIST, session-wide) and one torch thread per test come from conftest.py.


@pytest.fixture(scope="module")
def models(mnist):
    return embed.train_snapshots(
        embed.snapshot_config(TrainConfig(batch_size=90, threads=1, train_limit=10_000), (0, 2)), mnist
    )


@pytest.fixture(scope="module")
def emb(models, mnist) -> embed.Embeddings:
    return embed.embed_models(models, mnist, n=N, max_iter=MAX_ITER, n_jobs=1)


def test_train_snapshots_returns_the_requested_epochs(models):
    assert sorted(models) == [0, 2]
    w0, w2 = (models[e].layers[0].weight for e in (0, 2))
    assert not torch.equal(w0, w2)


def test_hidden_features_shape(models, mnist):
    f = embed.hidden_features(models[2], mnist.test.x[:7])
    assert f.shape == (7, 64) and f.dtype == np.float32
    assert (f >= 0).all()  # after ReLU


def test_tsne_is_deterministic(models, mnist):
    x = mnist.test.x[embed.subset_indices(len(mnist.test), 300)]
    f = embed.hidden_features(models[2], x)
    a = embed.tsne(f, max_iter=MAX_ITER)
    b = embed.tsne(f, max_iter=MAX_ITER)
    assert a.shape == (300, 2)
    assert np.array_equal(a, b)


def test_embed_models_output(emb, mnist):
    assert set(emb.points.columns) >= {"epoch", "index", "label", "x", "y"}
    assert len(emb.points) == 2 * N
    assert emb.points.groupby("epoch")["index"].apply(tuple).nunique() == 1  # same images
    idx = emb.points.loc[emb.points["epoch"] == 0, "index"].to_numpy()
    assert np.array_equal(idx, embed.subset_indices(len(mnist.test), N))
    labels = emb.points.loc[emb.points["epoch"] == 0, "label"].to_numpy()
    assert np.array_equal(labels, mnist.test.y.numpy()[idx])
    assert list(emb.scores["epoch"]) == [0, 2]
    assert emb.spec is mnist.spec


def test_separation_rises_with_training(emb):
    s = emb.scores.set_index("epoch")
    assert s.loc[2, "test_acc"] > s.loc[0, "test_acc"]
    assert s.loc[2, "knn_acc_2d"] > s.loc[0, "knn_acc_2d"]
    assert s.loc[2, "silhouette_2d"] > s.loc[0, "silhouette_2d"]
    assert s.loc[2, "knn_acc_64d"] > s.loc[0, "knn_acc_64d"]


@pytest.mark.slow
def test_parallel_panels_give_the_same_result(models, mnist):
    one = embed.embed_models(models, mnist, n=200, max_iter=MAX_ITER, n_jobs=1)
    two = embed.embed_models(models, mnist, n=200, max_iter=MAX_ITER, n_jobs=2)
    pd.testing.assert_frame_equal(one.points, two.points)


def test_plot_tsne(emb):
    fig = tsne.plot_tsne(emb)
    assert isinstance(fig, Figure)
    panels = [a for a in fig.axes if a.collections]
    assert len(panels) == 2
    assert panels[0].get_title().startswith("before training")
    assert panels[1].get_title().startswith("epoch 2")
    assert all("kNN" in a.get_title() and "silh." in a.get_title() for a in panels)
    assert all(a.collections[0].get_offsets().shape == (N, 2) for a in panels)
    (legend,) = [a.get_legend() for a in fig.axes if a.get_legend()]
    assert [t.get_text() for t in legend.get_texts()] == [str(d) for d in range(10)]
    assert legend.get_title().get_text() == "true class"
    figs = compose.tsne_figures(emb, "batch 90, lr 0.1")
    assert list(figs) == registry.names("embedding")
    assert "while batch 90, lr 0.1 trains" in figs["tsne_epochs"].get_suptitle()
