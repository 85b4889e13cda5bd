"""The notebooks as a user's workbench: relative paths read from the repository root whatever
folder a kernel starts in, a run's outputs under its own results folder, the study's parameters
checked and honoured (the model point: the best median unless pinned; t-SNE within the study's
epochs), and commands that refuse what they would ignore (in-process)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from mlpmnist import TrainConfig, cli, paths, train
from mlpmnist import store as results
from mlpmnist.data import loader as mdata
from mlpmnist.figures import embed
from mlpmnist.training.groups import plan_groups
from mlpmnist.workbench.study import Study, sweep_key

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- paths


def test_relative_paths_are_read_from_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")  # where JupyterLab starts the science notebook's kernel
    assert paths.project_root() == ROOT
    assert paths.resolve("results/science") == ROOT / "results" / "science"
    assert paths.resolve(tmp_path / "x") == tmp_path / "x"
    assert paths.shown(ROOT / "results" / "a.png") == "results/a.png"
    monkeypatch.chdir(tmp_path)  # outside a checkout (Colab): the working folder
    assert paths.project_root() is None
    assert paths.resolve("results") == tmp_path.resolve() / "results"
    assert paths.shown(tmp_path / "a.png") == str((tmp_path / "a.png").resolve())


def test_a_relative_data_variable_works_from_notebooks(mnist, monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")
    monkeypatch.setenv(mdata.ENV_VAR, os.path.relpath(mnist.root, ROOT))  # as set at the root
    assert mdata.ensure(download=False) == Path(mnist.root).resolve()


def test_the_missing_data_hint_names_the_value_already_set(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")
    monkeypatch.setenv(mdata.ENV_VAR, "no/such/data")
    with pytest.raises(mdata.DataError) as e:
        mdata.ensure(download=False)
    msg = str(e.value)
    assert str(ROOT / "no" / "such" / "data" / "MNIST" / "raw") in msg
    assert f"(it is 'no/such/data', read from the repository root {ROOT})" in msg


# ---------------------------------------------------------------------------- the study


SMALL = dict(batch_sizes=[32, 64], epochs=1, seeds=[0], lr=0.1, model_batch_size=64)


def test_a_run_writes_under_its_results_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")
    study = Study.from_parameters(**SMALL, grid={"lr": [0.05, 0.1]})
    assert Path(study.sweep.results_dir) == ROOT / "results"
    assert study.media_dir == ROOT / "results" / "studies" / sweep_key(study.sweep)
    assert sweep_key(study.sweep).startswith("4exp-e1-s1-")
    assert sweep_key(study.sweep) == sweep_key(
        Study.from_parameters(**SMALL, grid={"lr": [0.1, 0.05]}).sweep
    )  # same experiments
    assert sweep_key(study.sweep) != sweep_key(Study.from_parameters(**SMALL).sweep)
    explicit = Study.from_parameters(**SMALL, media_dir=tmp_path / "m", results_dir="elsewhere")
    assert explicit.media_dir == tmp_path / "m" and Path(explicit.sweep.results_dir) == ROOT / "elsewhere"
    assert study.describe().startswith(
        "4 experiments (batch_size [32, 64], lr [0.05, 0.1]), 1 seed each, 1 epoch\n"
    )
    assert study.describe().endswith(f"figures and summary in results/studies/{sweep_key(study.sweep)}")


@pytest.mark.parametrize(
    "where,words",
    [
        ({"lr": 0.2}, "model_where lr=0.2 is not one of the grid's values [0.05, 0.1]"),
        ({"momentum": 0.9}, "'momentum', which is not a grid axis; the grid's other axes are ['lr']"),
        ({"batch_size": 32}, "with model_batch_size, not in model_where"),
        ([0.1], "model_where must be a dict"),
    ],
)
def test_model_where_is_checked_before_anything_runs(where, words):
    with pytest.raises(ValueError) as e:
        Study.from_parameters(**SMALL, grid={"lr": [0.05, 0.1]}, model_where=where)
    assert words in str(e.value)


@pytest.fixture(scope="module")
def two_lrs(mnist) -> tuple[Study, object]:
    """The study of batch 32 and 64 x lr 0.05 and 0.1 with its batch-64 experiments trained."""
    study = Study.from_parameters(**SMALL, grid={"lr": [0.05, 0.1]}, config={"train_limit": 2000})
    recs = []
    for cfg in study.model_candidates():
        res = train(cfg, mnist, progress=False, verbose=False)
        recs.append(results.make_record(res))
    return study, results.frame(recs)


def test_the_model_cells_show_the_best_point_or_the_one_asked_for(two_lrs):
    study, df = two_lrs
    finals = df.groupby("key")["test_acc"].last()
    chosen = study.choose_model(df)
    assert chosen.key == finals.idxmax() and chosen.label == f"batch 64, lr {chosen.config.lr:g}"
    assert f"Models of {chosen.label} ({chosen.key}): the highest median final test accuracy" in chosen.why
    other = 0.05 if chosen.config.lr == 0.1 else 0.1
    # The hint names a point that is not the one shown (it used to suggest the grid's first value).
    assert (
        f"of the 2 finished experiments at batch 64; set model_where (e.g. {{'lr': {other}}})" in chosen.why
    )
    pinned = dataclasses.replace(study, model_where={"lr": other}).choose_model(df)
    assert pinned.config.lr == other and pinned.why == f"Models of batch 64, lr {other:g} ({pinned.key})."
    alone = study.choose_model(df[df["key"] == pinned.key])  # the other one did not finish
    assert (
        alone.key == pinned.key and "the only one of the 2 experiments at batch 64 that finished" in alone.why
    )
    with pytest.raises(ValueError, match="no finished experiment at batch 64 to show"):
        study.choose_model(df[df["key"] == "none"])


def test_by_default_the_model_point_is_the_best_median_of_the_grid(two_lrs):
    # The m5: changing only batch_sizes must work (no model_batch_size 90 to trip over).
    study, df = two_lrs
    free = dataclasses.replace(study, model_batch_size=None)
    assert len(free.model_candidates()) == 4
    chosen = free.choose_model(df)  # only batch 64 finished here
    assert chosen.key == study.choose_model(df).key
    hint = "of the 2 finished experiments of the grid; set model_batch_size (e.g. 32) or model_where"
    assert hint in chosen.why
    only = Study.from_parameters(batch_sizes=[16, 48], epochs=1, seeds=[0], lr=0.1)
    assert only.model_batch_size is None and len(only.model_candidates()) == 2


def test_tsne_snapshots_lie_within_the_studys_epochs(two_lrs, mnist):
    study, df = two_lrs
    chosen = study.choose_model(df)
    cfg = embed.snapshot_config(chosen.config, epochs=[0, 1])
    assert cfg == dataclasses.replace(chosen.config, seeds=(0,), snapshots=(0, 1))  # lr, epochs... kept
    models = embed.train_snapshots(cfg, mnist)
    saved = results.frame([results.make_record(train(chosen.config, mnist, progress=False, verbose=False))])
    acc = float((models[1](mnist.test.x).argmax(1) == mnist.test.y).double().mean())
    assert acc == pytest.approx(saved["test_acc"].iloc[-1], abs=2e-4)  # the study's own model, not more
    per_seed = embed.snapshot_config(TrainConfig(seeds=(3, 4), lr=(0.2, 0.01)), epochs=[0, 5])
    assert (per_seed.seeds, per_seed.lr, per_seed.epochs, per_seed.snapshots) == ((3,), 0.2, 15, (0, 5))
    with pytest.raises(ValueError, match="t-SNE epochs must be"):
        embed.snapshot_config(None, epochs=[0, 1.5])
    # The m11: a study of 2 epochs never retrains to epoch 50.
    with pytest.raises(ValueError, match=r"t-SNE epochs \[0, 50\] go past the run's 2 epochs"):
        embed.snapshot_config(TrainConfig(epochs=2), epochs=[0, 50])
    assert embed.default_snapshots(15) == (0, 1, 5, 10, 15) and embed.default_snapshots(1) == (0, 1)
    assert embed.snapshot_config(TrainConfig(epochs=2)).snapshots == (0, 1, 2)


def test_a_stored_tsne_run_is_read_not_trained_again(tmp_path, mnist):
    cfg = embed.snapshot_config(TrainConfig(batch_size=100, epochs=2, seeds=(3, 4), train_limit=2000))
    assert (
        cli.main(
            ["train", "--results", str(tmp_path), "--no-progress", "--threads", "1"]
            + ["--batch-size", "100", "--epochs", "2", "--seeds", "3", "--train-limit", "2000"]
            + ["--snapshots", *(str(e) for e in cfg.snapshots)]
        )
        == 0
    )
    record = results.path(tmp_path, "runs", cfg.key())
    assert record.is_file()
    before = record.stat().st_mtime_ns
    models = embed.stored_snapshots(cfg, tmp_path)  # found: no sweep, no training
    assert sorted(models) == [0, 1, 2] and record.stat().st_mtime_ns == before
    trained = embed.train_snapshots(cfg, mnist)
    for e in models:
        for k, v in models[e].state_dict().items():
            assert (v == trained[e].state_dict()[k]).all(), (e, k)


def test_the_networks_cell_follows_hidden():
    study = Study.from_parameters(**SMALL, grid={"hidden": [(64, 64), (32,)]})
    text = study.networks()
    assert "784-64-64-10 ReLU MLP, 55,050 trainable parameters" in text
    assert "784-32-10 ReLU MLP, 25,450 trainable parameters" in text
    leaky = Study.from_parameters(**SMALL, grid={"activation": ["relu", "leaky_relu"]}).networks()
    assert "784-64-64-10 ReLU MLP" in leaky and "784-64-64-10 leaky ReLU MLP" in leaky


def test_more_seeds_add_experiments_at_their_batch_size(tmp_path):
    study = Study.from_parameters(
        batch_sizes=[8, 64], epochs=1, seeds="0-1", lr=0.1, model_batch_size=64,
        grid={"lr": [0.05, 0.1]}, more_seeds={8: "2-4", 16: "0-9"}, results_dir=tmp_path,
    )  # fmt: skip
    extra = study.sweep.extra
    assert [(e.batch_size, e.lr, e.seeds) for e in extra] == [(8, 0.05, (2, 3, 4)), (8, 0.1, (2, 3, 4))]
    assert len(study.sweep.experiments()) == 4 + 2 and len(study.sweep.grid_experiments()) == 4
    # One engine per batch size (lr varies per replica): the extra seeds train beside the grid's.
    groups = {g.config.batch_size: g for g in plan_groups(study.sweep.experiments())}
    assert sorted(groups) == [8, 64] and len(groups[8].config.seeds) == 2 * 2 + 2 * 3
    text = study.describe()
    assert (
        "4 experiments" in text
        and "3 more seeds at batch 8" in text
        and "batch 16: not in batch_sizes" in text
    )
    assert all(e.batch_size == 64 for e in study.model_candidates())
