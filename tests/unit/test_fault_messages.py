"""Keys that never collide unseen, and every parameter checked before the work, in one line that
names it (issue 23: W4, W5, W6, W6b, W10, W11, W21, W22). No data, no process."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import nbformat
import pytest
import torch

from mlpmnist import cli
from mlpmnist.cli.args import parse_assignments
from mlpmnist.config import MAX_HIDDEN, TrainConfig
from mlpmnist.science import presets, runs, summary
from mlpmnist.sweep.backends import check_address
from mlpmnist.sweep.run import MAX_WORKERS, SweepConfig, plan_jobs
from mlpmnist.training import health, memory
from mlpmnist.workbench import publish
from mlpmnist.workbench.study import Study

# ------------------------------------------------------------------------ W4: keys


def w4(wd: float) -> TrainConfig:
    """The issue's two weight decays, whose 32-bit keys collide."""
    return TrainConfig(batch_size=64, lr=0.1, epochs=1, seeds=(0,), train_limit=2000, weight_decay=wd)


def test_keys_have_64_bits_and_name_their_non_default_fields():
    a, b = w4(0.116274), w4(0.143149)
    assert a.legacy_key() == b.legacy_key() == "bs0064-lr0.1-e1-s1-45a94b3a"  # what stores hold
    assert a.key() != b.key()
    assert a.key() == "bs0064-lr0.1-e1-s1-wd0.116274-n2000-45a94b3a858a9796"
    adam = TrainConfig(batch_size=32, epochs=2, seeds=(0, 1), optimizer="adam")
    assert adam.key().startswith("bs0032-lr0.1-e2-s2-adam-") and len(adam.key().rsplit("-", 1)[1]) == 16
    assert TrainConfig().key() == "bs0090-lr0.1-e15-s10-cc2492222c805e69"  # defaults: no tags
    # Where and how fast it runs names nothing.
    assert TrainConfig(device="cpu", threads=2).key() == TrainConfig().key()


class ShortKeys(TrainConfig):
    """A config whose keys keep 32 bits, as keys did: two computations can then share one."""

    def key(self) -> str:
        return self.legacy_key()


def test_a_sweep_refuses_two_configs_with_one_key():
    base = ShortKeys(batch_size=64, lr=0.1, epochs=1, seeds=(0,), train_limit=2000)
    with pytest.raises(ValueError) as e:
        SweepConfig(base=base, grid={"weight_decay": [0.116274, 0.143149]})
    assert "share the key bs0064-lr0.1-e1-s1-45a94b3a" in str(e.value)
    assert "weight_decay 0.116274 and 0.143149" in str(e.value)
    # With today's keys the same grid is two experiments.
    sweep = SweepConfig(base=w4(0.0), grid={"weight_decay": [0.116274, 0.143149]})
    assert len({e.key() for e in sweep.experiments()}) == 2


# ------------------------------------------------- W10, W22: how a replica ended, in words


def row(**kw: object) -> dict:
    base = {"seed": 0, "lr": 0.1, "epoch": 1, "step": 20, "train_loss": 2.5, "train_acc": 0.1}
    return {**base, "test_acc": 0.08, "dead_1": 0.02, "diverged": False, "collapsed": True, **kw}


CONFIG = TrainConfig(batch_size=100, epochs=1, seeds=(0,))


def test_never_learned_is_told_from_fell_to_chance():
    never = health.outcome_message(CONFIG, [row()])
    assert never and "[0] never learned" in never and "raise the learning rate or train longer" in never
    assert "lower" not in never
    for blown in ([row(train_loss=320.0)], [row(epoch=1, test_acc=0.9, collapsed=False), row(epoch=2)]):
        fell = health.outcome_message(CONFIG, blown)
        assert fell and "fell to chance level" in fell and "lower the learning rate" in fell
    dead = health.outcome_message(CONFIG, [row(dead_1=0.9)])
    assert dead and "fell to chance" in dead


def test_divergence_names_its_first_bad_step_and_weight_decay():
    at = health.outcome_message(
        CONFIG, [row(diverged=True, collapsed=False, train_loss=math.nan, diverged_at=2)]
    )
    assert at and "seed 0 (lr 0.1) diverged at step 2: its loss became NaN/inf" in at
    assert "lower the learning rate" in at
    by = health.outcome_message(CONFIG, [row(diverged=True, collapsed=False, step=2000)])
    assert by and "diverged by step 2000" in by
    decay = dataclasses.replace(CONFIG, weight_decay=1e30)
    rows = [row(seed=s, diverged=True, collapsed=False, train_loss=math.nan, diverged_at=2) for s in (0, 1)]
    said = health.outcome_message(decay, rows)
    assert said and "seeds [0, 1] (lr 0.1) diverged at step 2" in said
    assert "weight decay 1e+30 with lr 0.1 makes every step enlarge the weights" in said
    assert "lower the weight decay" in said and "lower the learning rate" not in said


# --------------------------------------------- W11: sizes bounded, memory checked first


def test_hidden_and_workers_are_bounded_before_anything_is_allocated():
    with pytest.raises(
        ValueError, match=rf"hidden must be at most 100 layers of at most {MAX_HIDDEN:,} units"
    ):
        TrainConfig(hidden=(100_000, 100_000))
    for name in ("workers", "concurrency"):
        with pytest.raises(
            ValueError, match=rf"{name} \(--{name}\) must be an integer in \[1, {MAX_WORKERS}\]"
        ):
            SweepConfig(**{name: 100_000_000})
    assert len(plan_jobs([TrainConfig(epochs=1)], 10**8)) == 1  # never one list per worker asked for


def test_a_run_that_cannot_fit_is_refused_with_its_numbers():
    huge = TrainConfig(hidden=(MAX_HIDDEN, MAX_HIDDEN), seeds=tuple(range(100)))
    need = sum(memory.estimate(huge).values())
    assert need > 1e12  # 100 x 4.3e9 parameters: more than any machine here
    with pytest.raises(MemoryError) as e:
        memory.check(huge, torch.device("cpu"))
    text = str(e.value)
    assert "100 seeds of a 784-65536-65536-10 MLP" in text and "need about" in text and "are left" in text
    assert "use fewer seeds" in text
    memory.check(TrainConfig(), torch.device("cpu"))  # the study's own run fits


# ------------------------------------------------------------ W21: name the flag or parameter


@pytest.mark.parametrize(
    "address,words",
    [
        (
            "tcp://127.0.0.1:99999",
            ["--scheduler tcp://127.0.0.1:99999", "PORT in 1-65535", "Port out of range"],
        ),
        ("tcp://[::1", ["--scheduler tcp://[::1", "tcp://HOST:PORT", "Invalid IPv6 URL"]),
        ("http://x:80", ["--scheduler http://x:80 must be tcp://HOST:PORT"]),
        ("tcp://host", ["--scheduler tcp://host must be"]),
    ],
)
def test_a_scheduler_address_is_read_before_anything_is_made(tmp_path, address, words, capsys):
    with pytest.raises(ValueError) as e:
        check_address(address)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    res = tmp_path / "res"
    assert cli.main(["sweep", "--epochs", "1", "--results", str(res), "--scheduler", address]) == 2
    assert capsys.readouterr().err.startswith(f"error: --scheduler {address}")
    assert not res.exists()  # refused before the results folder is made


def test_an_empty_grid_value_is_named(capsys):
    assert cli.main(["sweep", "--grid", "lr=,"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: grid axis 'lr=,' must look like NAME=V1,V2") and "(e.g. lr=0.03,0.1)" in err
    with pytest.raises(ValueError, match="grid axis 'lr=0.1,' must look like NAME=V1,V2, a value"):
        parse_assignments(["lr=0.1,"], "grid axis")


def test_a_bogus_matplotlib_backend_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MPLBACKEND", "bogus")
    assert cli.main(["figures", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MPLBACKEND='bogus' is not a matplotlib backend") and "agg" in err


STUDY = dict(batch_sizes=[64], epochs=1, seeds="0-1", lr=0.1, model_batch_size=64)


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"grid": [("lr", [0.1])]}, "grid must be a dict such as {'lr': [0.03, 0.1]}; got [('lr', [0.1])]"),
        ({"config": "momentum=0.9"}, "config must be a dict such as {'momentum': 0.9}; got 'momentum=0.9'"),
        ({"workers": "two"}, "workers (--workers) must be an integer in [1, 256]; got 'two'"),
        ({"results_dir": 3}, "results_dir must be a folder path (text); got 3"),
        ({"data_dir": 3}, "data_dir must be None or a folder path (text); got 3"),
    ],
)
def test_run_notebook_parameters_of_the_wrong_type_are_named(tmp_path, changes, words):
    with pytest.raises(ValueError) as e:
        Study.from_parameters(**{**STUDY, "results_dir": str(tmp_path / "r"), **changes})
    assert words in str(e.value)


# ------------------------------------------------- W5: every path the notebook writes, first


def test_run_notebook_output_folders_are_checked_before_the_sweep(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match=r"^media_dir .*afile is a file, not a folder; choose another path$"):
        Study.from_parameters(**STUDY, results_dir=str(tmp_path / "r"), media_dir=str(afile))
    with pytest.raises(ValueError, match=r"^results_dir .*afile/r cannot be created: .*afile is a file"):
        Study.from_parameters(**STUDY, results_dir=str(afile / "r"))
    media = tmp_path / "media"
    media.mkdir()
    os.mkfifo(media / "study_summary.csv")
    with pytest.raises(ValueError, match=r"media_dir .*study_summary\.csv is a FIFO"):
        Study.from_parameters(**STUDY, results_dir=str(tmp_path / "r"), media_dir=str(media))
    (media / "study_summary.csv").unlink()
    study = Study.from_parameters(**STUDY, results_dir=str(tmp_path / "r"), media_dir=str(media))
    assert study.media_dir == media and not (tmp_path / "r").exists()  # checked, nothing created


# ------------------------------------------------------------- W6: the science's parameters


SCIENCE = dict(quick=True, sets=None, threads=1, results_dir="r", data_dir=None, workers=None, media_dir=None)


def science_setup(root: Path, **changes: object) -> summary.Outputs:
    """What the science notebook's setup cell does with its parameters, before any training."""
    p = {**SCIENCE, **changes}
    pre = presets.preset(p["quick"], p["sets"], p["threads"])
    results = p["results_dir"] if not isinstance(p["results_dir"], str) else str(root / p["results_dir"])
    runner = runs.Runner(results, p["data_dir"], p["workers"], pre.common)
    return summary.Outputs.at(p["media_dir"], runner.results_dir)


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"quick": "false"}, "quick must be True or False; got 'false'"),
        ({"threads": 0}, "threads must be None or an integer >= 1; got 0"),
        ({"workers": "two"}, f"workers must be None or an integer in [1, {MAX_WORKERS}]; got 'two'"),
        ({"sets": ["zero", "1"]}, "sets[0] must be a list of integers in [0, 2**63) or text such as '0-9'"),
        ({"sets": [[0, 0], [1]]}, "sets[0] must be a list of integers in [0, 2**63) or text such as '0-9'"),
        ({"sets": [[0, 1], "1-2"]}, "sets must be disjoint (two independent seed sets); both hold [1]"),
        ({"sets": "0-9"}, "sets must be None or two seed sets such as ['0-9', '10-19']; got '0-9'"),
        ({"data_dir": 5}, "data_dir must be None or a folder path (text); got 5"),
        ({"results_dir": 5}, "results_dir must be a folder path (text); got 5"),
    ],
)
def test_science_parameters_are_checked_in_one_line(tmp_path, changes, words):
    with pytest.raises(ValueError) as e:
        science_setup(tmp_path, **changes)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_science_folders_are_checked_and_nothing_is_made_before_training(tmp_path):
    out = science_setup(tmp_path, media_dir=str(tmp_path / "m"))
    assert out.media == tmp_path / "m" and not out.media.exists() and not (tmp_path / "r").exists()
    assert science_setup(tmp_path).media == (tmp_path / "r" / "science" / "media").resolve()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"^media_dir .*afile is a file, not a folder"):
        science_setup(tmp_path, media_dir=str(tmp_path / "afile"))
    (tmp_path / "m2").mkdir()
    (tmp_path / "m2" / summary.SUMMARY).mkdir()
    with pytest.raises(ValueError, match=r"^media_dir .*science_summary\.json is a folder"):
        science_setup(tmp_path, media_dir=str(tmp_path / "m2"))


# --------------------------------------------------- W6b: publish only a finished notebook


def executed(statuses: list[str], error_in: int | None = None) -> nbformat.NotebookNode:
    """A notebook as papermill leaves it: each code cell with its status."""
    cells = []
    for i, status in enumerate(statuses):
        c = nbformat.v4.new_code_cell(f"step_{i}()")
        c.metadata["papermill"] = {"status": status}
        if i == error_in:
            c.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[])]
        cells.append(c)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["papermill"] = {"exception": error_in is not None, "parameters": {}}
    return nb


def test_publish_refuses_a_notebook_that_did_not_finish(tmp_path, capsys):
    src, out = tmp_path / "run.executed.ipynb", tmp_path / "run.ipynb"
    nbformat.write(executed(["completed", "failed", "pending"], error_in=1), src)
    assert publish.main([str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert "did not run to the end: cell 1 ('step_1()') raised an error" in err and not out.exists()
    nbformat.write(executed(["completed", "pending"]), src)
    assert publish.main([str(src), str(out)]) == 2
    assert "cell 1 ('step_1()') is pending" in capsys.readouterr().err
    nbformat.write(executed(["completed", "completed"]), src)
    stale = tmp_path / ".run.ipynb.dead1234.tmp"  # a killed publish's (W7): removed
    stale.write_text("{}")
    os.utime(stale, (0, 0))
    assert publish.main([str(src), str(out)]) == 0
    assert json.loads(out.read_text())["cells"] and not stale.exists()
