"""The t-SNE helpers that need no data: the fixed subset, the separation scores, and that
``embed`` only computes."""

from __future__ import annotations

import numpy as np
import pytest

from mlpmnist.figures import embed


def test_subset_is_fixed_sorted_and_distinct():
    a = embed.subset_indices(10_000)
    assert a.shape == (embed.N_POINTS,)
    assert np.array_equal(a, embed.subset_indices(10_000))
    assert np.array_equal(a, np.unique(a))
    assert a.min() >= 0 and a.max() < 10_000
    assert not np.array_equal(embed.subset_indices(10_000, seed=1), a)
    small = embed.subset_indices(200, 150)  # a test split of 200 images (the toy dataset's)
    assert len(small) == 150 and small.max() < 200
    with pytest.raises(ValueError, match=r"n must be in \[1, 200\]"):
        embed.subset_indices(200, 201)
    with pytest.raises(ValueError, match="n must be"):
        embed.subset_indices(10_000, 0)


def test_separation_of_clear_and_of_mixed_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 30)
    centres = 50.0 * np.stack([np.cos(labels), np.sin(labels)], 1)
    clear = embed.separation(centres + rng.normal(size=(300, 2)), labels)
    mixed = embed.separation(rng.normal(size=(300, 2)), labels)
    assert clear["knn_acc"] == 1.0 and clear["silhouette"] > 0.8
    assert mixed["knn_acc"] < 0.3 and mixed["silhouette"] < 0.05
    # A class index with no point (labels 0, 1 and 3 of four classes) still scores.
    few = np.array([0, 1, 3] * 20)
    assert embed.separation(rng.normal(size=(60, 2)) + 10.0 * few[:, None], few)["knn_acc"] == 1.0


def test_embed_only_computes():
    # Figures live in mlpmnist.figures.tsne; embed neither draws nor writes files.
    assert not hasattr(embed, "plot_tsne") and not hasattr(embed, "save_tsne")
    assert not {"mpl", "plt", "Figure"} & set(vars(embed))
