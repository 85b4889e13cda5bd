"""The notebooks as a user's workbench: relative paths read from the repository root whatever
folder a kernel starts in, a run's outputs under its own results folder, the study's parameters
checked and honoured (model point, t-SNE configuration), the committed copies made only by
``make``, commands that refuse what they would ignore, and the sweep's live view in a real
kernel."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from mlpmnist import TrainConfig, paths, train
from mlpmnist import store as results
from mlpmnist.data import loader as mdata
from mlpmnist.figures import embed
from mlpmnist.training.groups import plan_groups
from mlpmnist.workbench import publish
from mlpmnist.workbench.study import Study

ROOT = Path(__file__).resolve().parents[1]


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
    assert study.media_dir == ROOT / "results" / "studies" / study.key()
    assert study.key().startswith("4exp-e1-s1-")
    assert study.key() == Study.from_parameters(**SMALL, grid={"lr": [0.1, 0.05]}).key()  # same experiments
    assert study.key() != Study.from_parameters(**SMALL).key()
    explicit = Study.from_parameters(**SMALL, media_dir=tmp_path / "m", results_dir="elsewhere")
    assert explicit.media_dir == tmp_path / "m" and Path(explicit.sweep.results_dir) == ROOT / "elsewhere"
    assert study.describe().startswith(
        "4 experiments (batch_size [32, 64], lr [0.05, 0.1]), 1 seed each, 1 epoch\n"
    )
    assert study.describe().endswith(f"figures and summary in results/studies/{study.key()}")


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
    assert "of the 2 finished experiments at batch 64; set model_where (e.g. {'lr': 0.05})" in chosen.why
    other = 0.05 if chosen.config.lr == 0.1 else 0.1
    pinned = dataclasses.replace(study, model_where={"lr": other}).choose_model(df)
    assert pinned.config.lr == other and pinned.why == f"Models of batch 64, lr {other:g} ({pinned.key})."
    alone = study.choose_model(df[df["key"] == pinned.key])  # the other one did not finish
    assert (
        alone.key == pinned.key and "the only one of the 2 experiments at batch 64 that finished" in alone.why
    )
    with pytest.raises(ValueError, match="no finished experiment at batch 64, lr"):
        study.choose_model(df[df["key"] == "none"])


def test_tsne_trains_the_chosen_configuration(two_lrs, mnist):
    study, df = two_lrs
    chosen = study.choose_model(df)
    cfg = embed.snapshot_config(chosen.config, epochs=[0, 1])
    assert cfg == dataclasses.replace(chosen.config, seeds=(0,), epochs=1, snapshots=(0, 1))  # lr, ... kept
    models = embed.train_snapshots(mnist, epochs=[0, 1], base=chosen.config)
    saved = results.frame([results.make_record(train(chosen.config, mnist, progress=False, verbose=False))])
    acc = float((models[1](mnist.test.x).argmax(1) == mnist.test.y).double().mean())
    assert acc == pytest.approx(saved["test_acc"].iloc[-1], abs=2e-4)
    per_seed = embed.snapshot_config(TrainConfig(seeds=(3, 4), lr=(0.01, 0.2)), epochs=[0, 5], seed=4)
    assert (per_seed.seeds, per_seed.lr, per_seed.epochs) == ((4,), 0.2, 5)
    with pytest.raises(ValueError, match="t-SNE epochs must be"):
        embed.snapshot_config(None, epochs=[0, 1.5])


def test_the_networks_cell_follows_hidden():
    study = Study.from_parameters(**SMALL, grid={"hidden": [(64, 64), (32,)]})
    text = study.networks()
    assert "784-64-64-10 ReLU MLP, 55,050 trainable parameters" in text
    assert "784-32-10 ReLU MLP, 25,450 trainable parameters" in text


# ---------------------------------------------------------------------------- make's copies


@pytest.mark.slow
def test_publish_drops_the_injected_parameters(tmp_path):
    import papermill as pm

    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [
        nbformat.v4.new_code_cell("media_dir = None  # the default", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(media_dir)"),
    ]
    nbformat.write(nb, tmp_path / "in.ipynb")
    pm.execute_notebook(
        str(tmp_path / "in.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters={"media_dir": "media"},
        progress_bar=False,
    )
    assert publish.main([str(tmp_path / "out.ipynb"), str(tmp_path / "committed.ipynb")]) == 0
    done = nbformat.read(tmp_path / "committed.ipynb", as_version=4)
    assert [c.source for c in done.cells] == ["media_dir = None  # the default", "print(media_dir)"]
    assert done.cells[1].outputs[0]["text"] == "media\n"  # what make ran, on record
    assert done.metadata.papermill.parameters == {"media_dir": "media"}
    assert publish.main([str(tmp_path / "in.ipynb"), str(tmp_path / "x.ipynb")]) == 2  # not executed
    assert not (tmp_path / "x.ipynb").exists()


# ---------------------------------------------------------------------------- the command line


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlpmnist", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv,words",
    [
        (
            ["--batch-size", "32"],
            "--batch-size 32 is not used by sweep: the batch sizes are the sweep's grid axis",
        ),
        (["--batch-size", "32", "--batch-sizes", "8", "16"], "did you mean --batch-sizes 32?"),
        (["--lr", "0.1", "--grid", "lr=0.03,0.1"], "--lr 0.1 is not used by sweep: lr is a grid axis"),
        (["--batchsizes", "8"], "unrecognized arguments: --batchsizes 8 (did you mean --batch-sizes?)"),
    ],
    ids=["batch-size", "beside-batch-sizes", "lr-axis", "typo"],
)
def test_sweep_refuses_a_flag_it_would_ignore(tmp_path, argv, words):
    p = cli("sweep", *argv, "--results", str(tmp_path / "res"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert words in p.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "res").exists()  # refused before anything was made


@pytest.mark.slow
def test_help_is_plain_text_and_suggestions_are_the_commands_own():
    p = cli("--help")
    assert p.returncode == 0 and "`" not in p.stdout
    p = cli("figures", "--batch-size", "7")
    assert "(did you mean --model-batch-size?)" in p.stderr
    p = cli("figures", "--help")
    for words in (
        "results folder to read (default: results)",
        "(default: RESULTS/media)",
        "(default: 90 when",
    ):
        assert words in " ".join(p.stdout.split()), words


# ---------------------------------------------------------------------------- the live view


LIVE = """
import json
from mlpmnist.workbench import live
from mlpmnist.sweep.run import SweepConfig
from mlpmnist.config import TrainConfig
cfg = SweepConfig(
    base=TrainConfig(epochs=1, seeds=(0,), train_limit=1000),
    grid={{"batch_size": [50, 100]}},
    results_dir={results!r},
    workers=2,
)
outcome = live.run_sweep(cfg, progress=False)
print(json.dumps(sorted(outcome.table["status"])))
"""


@pytest.mark.slow
def test_the_sweep_draws_itself_in_a_kernel(tmp_path):
    """In a real kernel, as JupyterLab shows it: the figure and the table are displayed, then
    updated once per finished experiment, and end as the sweep's outcome."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        kc.execute("%matplotlib inline\n" + textwrap.dedent(LIVE.format(results=str(tmp_path / "res"))))
        msgs, t0 = [], time.time()
        while time.time() - t0 < 300:
            msg = kc.get_iopub_msg(timeout=300)
            msgs.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert not errors, errors
    shown = [m for m in msgs if m["msg_type"] == "display_data"]
    updates = [m for m in msgs if m["msg_type"] == "update_display_data"]
    assert len(shown) == 3  # the status line, the figure, the table
    figure_id = shown[1]["content"]["transient"]["display_id"]
    figures = [m for m in updates if m["content"]["transient"]["display_id"] == figure_id]
    # One redraw per finished experiment, then the final one; each after the first has the figure.
    assert len(figures) == 3 and all("image/png" in m["content"]["data"] for m in figures)
    status = [
        m["content"]["data"]["text/plain"]
        for m in updates
        if "experiments finished" in str(m["content"]["data"])
    ]
    assert status[0].startswith("1 of 2 experiments finished") and status[-1].startswith(
        "2 of 2 experiments finished"
    )
    out = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
    assert '["done", "done"]' in out


# ---------------------------------------------------------------------------- bad input in a notebook


@pytest.mark.slow
def test_a_bad_parameter_ends_in_one_line(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(
            str(ROOT / "run.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={"batch_sizes": [32, 64], "model_batch_size": 7, "results_dir": str(tmp_path / "r")},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(tmp_path),
        )
    shown = "\n".join(e.value.traceback)
    assert "model_batch_size 7 is not one of batch_sizes [32, 64]" in shown
    assert "Traceback" not in shown and "study.py" not in shown and len(e.value.traceback) == 1
    assert not (tmp_path / "r").exists()  # refused before anything was made


@pytest.mark.slow
def test_other_errors_keep_their_traceback(tmp_path):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        kc.execute_interactive(
            "from mlpmnist.workbench import notebook\nassert notebook.one_line_errors()", timeout=60
        )
        replies = {}
        for code in ("int('x')", "from mlpmnist import TrainConfig\nTrainConfig(batch_size=0)"):
            errors = []
            kc.execute_interactive(code, timeout=60, output_hook=lambda m, errors=errors: errors.append(m))
            (err,) = [m["content"] for m in errors if m["msg_type"] == "error"]
            replies[code] = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err["traceback"]))  # no colours
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert "invalid literal for int()" in replies["int('x')"] and "Cell In[" in replies["int('x')"]
    config_error = replies["from mlpmnist import TrainConfig\nTrainConfig(batch_size=0)"]
    assert "batch_size must be" in config_error and "Cell In[" not in config_error


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
