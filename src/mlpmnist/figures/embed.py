"""t-SNE of the last hidden layer while one model trains: does the network pull the classes
apart, and when? The same test images at every snapshot, with the same t-SNE settings; each
panel also gets numbers that do not depend on reading a picture: kNN accuracy and silhouette of
the classes in 2-D, and, free of t-SNE's distortions, the kNN accuracy in the hidden layer."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mlpmnist.config import TrainConfig
from mlpmnist.data import loader as mdata
from mlpmnist.data.specs import DatasetSpec
from mlpmnist.model import MLP
from mlpmnist.training.loop import train

N_POINTS = 2_000
SUBSET_SEED = 0
TSNE_SEED = 0
# Measured on the batch-90 snapshots (2,000 points), from 500 to 1,000 iterations the 2-D kNN
# accuracy moves by under 0.1 point while the silhouette still rises by ~0.03 (compare
# silhouettes only between maps made alike); 500 keeps seven panels under a minute on two cores.
TSNE_MAX_ITER = 500
KNN_K = 10
CV_FOLDS = 5


def subset_indices(n_total: int, n: int = N_POINTS, seed: int = SUBSET_SEED) -> np.ndarray:
    """``n`` distinct sorted indices into ``n_total`` images, the same for ``seed`` on every machine."""
    if not 1 <= n <= n_total:
        raise ValueError(f"n must be in [1, {n_total}]; got {n}")
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    return np.sort(perm[:n].numpy())


@torch.no_grad()
def hidden_features(model: MLP, x: torch.Tensor) -> np.ndarray:
    """Last-hidden-layer activations (after ReLU) of ``model`` on ``x``: float32 [N, 64]."""
    return model.eval().cpu().features(x.cpu()).numpy()


def tsne(features: np.ndarray, max_iter: int = TSNE_MAX_ITER) -> np.ndarray:
    """2-D Barnes-Hut t-SNE of ``features`` [N, d] (PCA initialisation): float32 [N, 2].
    Single-threaded: t-SNE amplifies the last-bit difference of another summation order (OpenMP
    threads, whatever ``n_jobs`` says) into a visibly different map."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(30.0, (len(features) - 1) / 3)  # sklearn requires perplexity < N
    model = TSNE(init="pca", perplexity=perplexity, max_iter=max_iter, random_state=TSNE_SEED, n_jobs=1)
    with threadpool_limits(limits=1):  # OpenMP (the gradient) and BLAS (the PCA init)
        emb = model.fit_transform(np.asarray(features, dtype=np.float32))
    return emb.astype(np.float32)


def separation(points: np.ndarray, labels: np.ndarray, k: int = KNN_K, folds: int = CV_FOLDS) -> dict:
    """How well the classes separate in ``points`` [N, d]: ``knn_acc`` (k-NN vote, stratified
    ``folds``-fold cross-validation, no shuffling) and ``silhouette`` (Euclidean, in [-1, 1])."""
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels)
    folds = min(folds, int(np.unique(labels, return_counts=True)[1].min()))  # classes present only
    knn = cross_val_score(KNeighborsClassifier(k), points, labels, cv=StratifiedKFold(folds))
    return {"knn_acc": float(knn.mean()), "silhouette": float(silhouette_score(points, labels))}


@dataclass
class Embeddings:
    """``points``: per epoch and image, epoch, index (into the test set), label (class index), x, y
    (t-SNE units). ``scores``: per epoch, test_acc (whole test set), knn_acc_2d, silhouette_2d,
    knn_acc_64d and tsne_seconds. ``batch_size``, ``seed``: the trained model's, where known."""

    points: pd.DataFrame
    scores: pd.DataFrame
    spec: DatasetSpec
    batch_size: int | None = None
    seed: int | None = None


def _panel(features: np.ndarray, labels: np.ndarray, max_iter: int) -> tuple:
    t0 = time.perf_counter()
    emb = tsne(features, max_iter=max_iter)
    seconds = time.perf_counter() - t0
    return emb, separation(emb, labels), separation(features, labels)["knn_acc"], seconds


def embed_models(
    models: Mapping[int, MLP],
    data: mdata.Data,
    n: int = N_POINTS,
    max_iter: int = TSNE_MAX_ITER,
    n_jobs: int = 2,
    progress: bool = False,
) -> Embeddings:
    """t-SNE of the last hidden layer of each model (epoch -> model) on the same ``n`` images of
    ``data``'s test split, with separation scores. Panels run in ``n_jobs`` processes, which does
    not change the result."""
    from joblib import Parallel, delayed
    from scipy.linalg import orthogonal_procrustes

    test = data.test
    idx = subset_indices(len(test), n)
    x, labels = test.x[idx], test.y[idx].numpy()
    epochs = sorted(models)
    feats = [hidden_features(models[e], x) for e in epochs]
    jobs = (delayed(_panel)(f, labels, max_iter) for f in feats)
    run = Parallel(n_jobs=min(n_jobs, len(feats)), return_as="generator")(jobs)
    panels = list(tqdm(run, total=len(feats), desc="t-SNE panels", unit="panel", disable=not progress))

    points, scores, previous = [], [], None
    for epoch, (emb, sep, knn64, secs) in zip(epochs, panels, strict=True):
        emb = emb - emb.mean(0)
        if previous is not None:  # rotated/reflected onto the previous panel, so a class stays in place
            r, _ = orthogonal_procrustes(emb, previous - previous.mean(0))
            emb = (emb @ r).astype(np.float32)
        previous = emb
        points.append(
            pd.DataFrame({"epoch": epoch, "index": idx, "label": labels, "x": emb[:, 0], "y": emb[:, 1]})
        )
        with torch.no_grad():
            pred = models[epoch].eval().cpu()(test.x).argmax(1)
        scores.append(
            {
                "epoch": epoch,
                "test_acc": float((pred == test.y).double().mean()),
                "knn_acc_2d": sep["knn_acc"],
                "silhouette_2d": sep["silhouette"],
                "knn_acc_64d": knn64,
                "tsne_seconds": secs,
            }
        )
    return Embeddings(pd.concat(points, ignore_index=True), pd.DataFrame(scores), data.spec)


def default_snapshots(epochs: int) -> tuple[int, ...]:
    """The epochs t-SNE embeds by default: 0, 1, a third, two thirds and the last (15: 0 1 5 10 15)."""
    return tuple(sorted({0, min(1, epochs), round(epochs / 3), round(2 * epochs / 3), epochs}))


def snapshot_config(base: TrainConfig | None = None, epochs: Sequence[int] | None = None) -> TrainConfig:
    """The one-seed experiment whose snapshots t-SNE embeds: ``base`` (default: the defaults) with
    only its first seed, at that seed's lr, and ``snapshots`` at ``epochs``
    (default ``default_snapshots``). ``ValueError`` for epochs that are not integers in [0, the
    run's epochs]: the snapshots come from the run the study made, never from training past it."""
    base = TrainConfig() if base is None else base
    epochs = default_snapshots(base.epochs) if epochs is None else epochs
    if not epochs or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in epochs):
        raise ValueError(f"t-SNE epochs must be a non-empty list of integers >= 0; got {list(epochs)!r}")
    if max(epochs) > base.epochs:
        raise ValueError(
            f"t-SNE epochs {list(epochs)} go past the run's {base.epochs} epochs; choose epochs within "
            f"0-{base.epochs} (or None: {list(default_snapshots(base.epochs))})"
        )
    snapshots = tuple(sorted({float(e) for e in epochs}))
    return dataclasses.replace(base, seeds=base.seeds[:1], lr=base.lrs[0], snapshots=snapshots)


def train_snapshots(cfg: TrainConfig, data: mdata.Data, progress: bool = False) -> dict[int, MLP]:
    """Epoch -> MLP of the snapshot experiment ``cfg`` (``snapshot_config``'s) trained here on
    ``data`` (0 = the initialisation); ``progress``: train's bar."""
    snapshots = train(cfg, data, progress=progress, verbose=False).snapshots
    states = {int(e): snapshots.get(float(e), [None])[0] for e in cfg.snapshots}
    models = {e: None if sd is None else MLP.from_state_dict(sd, cfg.activation) for e, sd in states.items()}
    return _every_epoch(cfg, models)


def stored_snapshots(
    cfg: TrainConfig, results_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None
) -> dict[int, MLP]:
    """``train_snapshots``, but from the store under ``results_dir``, trained there first by a sweep
    of it alone when it is not stored yet: an experiment like any other, so a rerun trains nothing."""
    from mlpmnist import store
    from mlpmnist.sweep.run import SweepConfig, run_sweep

    found, _ = store.find(results_dir, cfg)
    if found is None:
        grid = {"batch_size": [cfg.batch_size]}
        sweep = SweepConfig(base=cfg, grid=grid, results_dir=results_dir, data_dir=data_dir, workers=1)
        outcome = run_sweep(sweep, progress=False, log=lambda line: None)
        if outcome.failed:
            raise RuntimeError(f"the t-SNE run {cfg.key()} failed: {outcome.failed[cfg.key()]}")
        found = store.trusted(results_dir, cfg)
    return _every_epoch(cfg, {int(e): found.models(float(e)).get(cfg.seeds[0]) for e in cfg.snapshots})


def _every_epoch(cfg: TrainConfig, models: dict[int, MLP | None]) -> dict[int, MLP]:
    """``models`` (epoch -> model, None where the run had diverged); ``RuntimeError`` at a None."""
    if missing := [e for e, m in models.items() if m is None]:
        raise RuntimeError(f"batch {cfg.batch_size}, seed {cfg.seeds[0]} diverged before epoch {missing[0]}")
    return {e: m for e, m in models.items() if m is not None}


def tsne_epochs(
    data: mdata.Data | None = None,
    epochs: Sequence[int] | None = None,
    n: int = N_POINTS,
    *,
    config: TrainConfig | None = None,
    results_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
    **embed_kw,
) -> Embeddings:
    """The snapshots of ``config``'s first seed at ``epochs`` (``snapshot_config``), each embedded
    (``embed_models``): from the store under ``results_dir`` (``stored_snapshots``), else trained
    here. ``data`` defaults to ``mdata.load()``."""
    cfg = snapshot_config(config, epochs)
    data = data if data is not None else mdata.load(data_dir, dataset=cfg.dataset)
    if results_dir is not None:
        models = stored_snapshots(cfg, results_dir, data_dir)
    else:
        models = train_snapshots(cfg, data, progress)
    emb = embed_models(models, data, n=n, progress=progress, **embed_kw)
    return dataclasses.replace(emb, batch_size=cfg.batch_size, seed=cfg.seeds[0])
