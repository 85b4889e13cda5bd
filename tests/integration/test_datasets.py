"""A dataset is its spec: a synthetic 8x8 dataset of 4 classes (``synthetic.toy_*``), registered
in each test alone, trains with random shifts through ``mlpmnist.train`` and through the CLI
(in-process), and draws every figure of the study, with the image shape and the class names
its spec gives."""

from __future__ import annotations

import json
import math

import pytest
import torch
from synthetic import (
    TOY_CLASSES,
    TOY_SHAPE,
    TOY_TEST,
    register,
    synthetic_arrays,
    synthetic_spec,
    toy_root,
    write_raw,
)

import mlpmnist
from mlpmnist import TrainConfig, train
from mlpmnist import store as results
from mlpmnist.analysis import stats
from mlpmnist.figures import compose, embed, registry
from mlpmnist.sweep import experiment
from mlpmnist.training.health import chance_loss


def toy_config(**fields) -> TrainConfig:
    """A run on the toy dataset (registered first: a config checks its dataset's name), small
    enough to train in a second, with random shifts of one pixel; ``fields`` replace these."""
    base = dict(dataset="toy", epochs=3, seeds=(0, 1, 2), hidden=(16, 16), max_shift=1)
    return TrainConfig(**{**base, **fields})


@pytest.fixture
def toy(tmp_path, monkeypatch) -> mlpmnist.Data:
    """The toy dataset's files under ``tmp_path/data``, its spec registered for this test only."""
    spec, root = toy_root(tmp_path / "data")
    register(monkeypatch, spec)
    return mlpmnist.load(root, dataset="toy", download=False)


def test_the_toy_trains_with_shifts_and_draws_every_study_figure(toy, tmp_path):
    assert toy.spec.image_shape == TOY_SHAPE and toy.train.x.shape[1] == 64
    res = tmp_path / "results"
    for b in (20, 50):
        results.save_result(train(toy_config(batch_size=b), toy, progress=False, verbose=False), res)
    df = results.load(res)
    final = stats.final(df)
    assert final["test_acc"].min() > 0.5  # four classes: chance is 25%
    assert final["test_loss"].max() < chance_loss(toy.spec.n_classes) == pytest.approx(math.log(4))
    # The shifts are of 8x8 images, and they change what is learned.
    plain = train(toy_config(batch_size=50, max_shift=0), toy, progress=False, verbose=False)
    shifted = train(toy_config(batch_size=50), toy, progress=False, verbose=False)
    assert not torch.equal(plain.state_dicts[0]["layers.0.weight"], shifted.state_dicts[0]["layers.0.weight"])

    # Every registry entry that the study's inputs give: the results, the data, a model, an embedding.
    key = toy_config(batch_size=50).key()
    models = results.trusted(res, key).models()
    emb = embed.tsne_epochs(
        toy, config=toy_config(batch_size=50), epochs=(0, 2), n=150, max_iter=250, n_jobs=1
    )
    figs = compose.study_figures(df) | compose.data_figures(toy)
    figs |= compose.model_figures(models, toy, "batch 50")
    figs |= compose.tsne_figures(emb, "batch 50")
    assert list(figs) == registry.names(*registry.STUDY_SOURCES)
    for fig in figs.values():
        fig.draw_without_rendering()

    # The four classes, by their names, in every figure that shows classes.
    names = list(TOY_CLASSES)
    ax = figs["confusion_matrix"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert sum(int(t.get_text()) for t in ax.texts) == TOY_TEST  # 4 x 4 cells, every test image
    (legend,) = [a.get_legend() for a in figs["tsne_epochs"].axes if a.get_legend()]
    assert [t.get_text() for t in legend.get_texts()] == names
    images = [a for a in figs["sample_digits"].axes if a.images]
    assert all(a.images[0].get_array().shape == TOY_SHAPE for a in images)
    assert [a.get_title() for a in images] == [TOY_CLASSES[int(y)] for y in toy.train.y[: len(images)]]
    wrong = [a.get_title() for a in figs["misclassified"].axes if a.images]
    assert wrong and all(t.split("\n")[0] in names and t.split("\n")[1][1:] in names for t in wrong)
    last = [a.get_title().split("\n") for a in figs["predictions_last10"].axes if a.images]
    assert [t[1] for t in last] == [f"true {TOY_CLASSES[int(y)]}" for y in toy.test.y[-10:]]


def status(argv: list[str]) -> int:
    """The CLI's exit status for ``argv``, run in this process (argparse exits on bad flags)."""
    from mlpmnist import cli

    try:
        return cli.main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def test_the_toy_through_the_cli(toy, tmp_path, monkeypatch, capsys):

    root, out = toy.root, tmp_path / "toy.json"
    args = ["train", "--dataset", "toy", "--max-shift", "1", "--batch-size", "20", "--epochs", "3",
            "--seeds", "0", "1", "--hidden", "16", "16", "--data", str(root), "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert status(args) == 0, capsys.readouterr().err
    record = json.loads(out.read_text())
    assert record["config"]["dataset"] == "toy" and record["config"]["max_shift"] == 1
    assert min(r["history"][-1]["test_acc"] for r in record["replicas"]) > 0.5  # chance is 25%

    # The figures command on a results folder of toy runs: every study figure, in the format asked for.
    res, media = tmp_path / "results", tmp_path / "media"
    results.save_result(train(toy_config(batch_size=20), toy, progress=False, verbose=False), res)
    figures = [
        "figures",
        "--results",
        str(res),
        "--data",
        str(root),
        "--media",
        str(media),
        "--format",
        "svg",
    ]
    assert status(figures) == 0, capsys.readouterr().err
    assert sorted(p.name for p in media.iterdir()) == sorted(
        f"{n}.svg" for n in registry.names("results", "data", "model")
    )
    assert (media / "confusion_matrix.svg").read_text().startswith("<?xml")
    assert status([*figures, "--format", "jpg"]) == 2
    assert "invalid choice: 'jpg'" in capsys.readouterr().err

    # Its spec was this test's alone: once the registry is restored, 'toy' is unknown.
    monkeypatch.undo()
    assert status(["train", "--dataset", "toy", "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert "--dataset" in err and "toy" in err and err.count("\n") == 1


def test_one_job_trains_experiments_of_two_datasets(tmp_path, monkeypatch):
    # A sweep's job can hold a grid over dataset: each dataset's groups train on their own data.
    spec, root = toy_root(tmp_path / "data")
    register(monkeypatch, spec)
    arrays = synthetic_arrays()
    register(monkeypatch, synthetic_spec(arrays))
    write_raw(root, synthetic_spec(arrays), arrays)
    configs = (
        toy_config(batch_size=50, epochs=1),
        toy_config(dataset="synthetic-test", batch_size=50, epochs=1),
    )
    exp = experiment.Experiments(configs=configs, data_dir=str(root), results_dir=tmp_path / "results")
    table = experiment.run(exp, log=lambda line: None)
    assert table["status"].tolist() == ["done", "done"], table["error"].tolist()
    assert sorted(results.load(tmp_path / "results")["dataset"].unique()) == ["synthetic-test", "toy"]
