"""The command line as a researcher uses it, in-process (``cli.main``): its version and help, a
command's own help named in its errors, ``train --results`` writing into a store that the next
sweep trusts and skips, one meaning of "failed", the model figures' default (the best median),
and ``summary``: the table and its conclusions, exported as CSV, Markdown or JSON, and two
configurations compared by the difference test."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mlpmnist import TrainConfig, cli
from mlpmnist import store as results
from mlpmnist.analysis import compare, stats
from mlpmnist.sweep.run import SweepConfig, run_sweep
from mlpmnist.workbench import report

pytestmark = pytest.mark.slow  # each trains on real MNIST

SMALL = ["--epochs", "2", "--train-limit", "2000", "--threads", "1", "--no-progress"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse's --help, --version and refusals
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> object:
    """A store holding batch 100 and 200 at lr 0.1 (6 seeds) and batch 100 at lr 30 (all diverge),
    each written by ``train --results``."""
    root = tmp_path_factory.mktemp("store")
    for extra in (["--batch-size", "100"], ["--batch-size", "200"], ["--batch-size", "100", "--lr", "30"]):
        code = cli.main(["train", "--results", str(root), "--seeds", "0-5", *SMALL, *extra])
        assert code == (3 if "30" in extra else 0)
    return root


def test_version_and_help_say_what_the_program_is(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("mlpmnist ")
    code, out, _ = run(capsys, "--help")
    text = " ".join(out.split())
    assert code == 0 and "How batch size and epochs change what a small MLP learns on MNIST" in text
    for command in ("train", "sweep", "figures", "summary"):
        assert f" {command} " in text, command
    assert "Exit status: 0 done; 2 bad input" in text and "failed seeds" in text


def test_sweep_help_lists_only_what_sweep_takes(capsys):
    code, out, _ = run(capsys, "sweep", "--help")
    assert code == 0 and "--batch-sizes" in out and "--batch-size " not in out
    assert "one papermill experiment notebook per grid point" not in out
    assert "train every point of a grid" in " ".join(run(capsys, "--help")[1].split())


def test_a_commands_error_points_at_its_own_help(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--batchsize", "32")
    assert code == 2 and err.strip().endswith("(did you mean --batch-size?); see 'mlpmnist train --help'")
    code, _, err = run(capsys, "sweep", "--batch-size", "32", "--results", str(tmp_path / "r"))
    assert code == 2 and "did you mean --batch-sizes 32?" in err and not (tmp_path / "r").exists()
    code, _, err = run(capsys, "figures", "--batch-size", "7")
    assert code == 2 and "(did you mean --model-batch-size?); see 'mlpmnist figures --help'" in err


def test_train_writes_into_a_store_that_a_sweep_trusts_and_skips(store, capsys, tmp_path):
    config = TrainConfig(batch_size=200, epochs=2, seeds=tuple(range(6)), train_limit=2000)
    found, why = results.find(store, config)
    assert found is not None, why
    assert found.record["provenance"]["cpu"] and found.record["provenance"]["threads"] == 1
    # No lock file, checkpoint or empty working folder is left behind.
    assert sorted(p.name for p in store.iterdir()) == ["models", "runs"]
    outcome = run_sweep(
        SweepConfig(base=config, grid={"batch_size": [200]}, results_dir=store), progress=False
    )
    assert outcome.table["status"].tolist() == ["skipped"]
    code, out, _ = run(
        capsys, "train", "--results", str(store), "--batch-size", "200", "--seeds", "0-5", *SMALL
    )
    assert code == 0 and "is already stored in" in out and "nothing to train" in out


def test_failed_seeds_are_said_in_the_same_words_everywhere(store, capsys):
    # The m6: seeds that diverge or collapse are an outcome of a done experiment.
    config = TrainConfig(batch_size=100, epochs=2, seeds=tuple(range(6)), train_limit=2000, lr=30.0)
    assert results.find(store, config)[0] is not None  # stored: done
    code, _, err = run(capsys, "train", "--results", str(store), "--batch-size", "100", "--lr", "30",
                       "--seeds", "0-5", *SMALL)  # fmt: skip
    assert code == 3 and err.startswith("failed seeds: batch 100: seed 0 (lr 30) diverged")
    assert "error:" not in err
    outcome = run_sweep(
        SweepConfig(base=config, grid={"batch_size": [100]}, results_dir=store), progress=False
    )
    assert outcome.line() == (
        "1 of 1 experiment done, 0 failed; 6 failed seeds (diverged or collapsed to chance) in 1 experiment"
    )
    assert outcome.table.loc[0, "failed_seeds"] == 6 and not outcome.failed
    code, out, _ = run(capsys, "summary", "--results", str(store), "--where", "lr=30")
    assert "6 / 6 (6 diverged)" in out and "failed seeds / n" in out


def test_summary_exports_the_summary_and_its_conclusions(store, capsys, tmp_path):
    df = results.load(store, where={"lr": 0.1})
    summ = stats.summary(df)
    code, out, _ = run(capsys, "summary", "--results", str(store), "--where", "lr=0.1")
    assert code == 0 and "median [q1, q3] (%)" in out
    assert "Holm-adjusted over the 1 pair of configurations" in out
    code, out, _ = run(capsys, "summary", "--results", str(store), "--where", "lr=0.1", "--format", "csv",
                       "--out", str(tmp_path / "s.csv"))  # fmt: skip
    assert code == 0 and (tmp_path / "s.csv").read_text() == summ.to_csv(index=False, lineterminator="\n")
    assert report.read_summary(tmp_path / "s.csv")["median"].tolist() == summ["median"].tolist()
    code, out, _ = run(
        capsys, "summary", "--results", str(store), "--where", "lr=0.1", "--format", "markdown"
    )
    lines = out.splitlines()
    assert lines[0].startswith("| batch size | median [q1, q3] (%) |") and lines[2].startswith("| 100 |")
    assert lines[3].startswith("| 200 |") and len(lines) == 4
    code, out, _ = run(capsys, "summary", "--results", str(store), "--where", "lr=0.1", "--format", "json")
    rows = json.loads(out)
    assert [r["batch_size"] for r in rows] == [100, 200] and rows[0]["median"] == summ.loc[0, "median"]


def test_summary_compares_two_selections_by_the_difference_test(store, capsys):
    code, out, _ = run(capsys, "summary", "--results", str(store), "--a", "batch_size=100", "lr=0.1",
                       "--b", "batch_size=200")  # fmt: skip
    assert code == 0, out
    want = compare.two(
        results.load(store, where={"batch_size": 100, "lr": 0.1}),
        results.load(store, where={"batch_size": 200}),
    ).iloc[0]
    lines = out.strip().splitlines()
    assert lines[0].startswith("Median final test accuracy: batch 100, ") and "(6 seeds)" in lines[0]
    assert lines[1].startswith(
        f"batch 200 minus batch 100: {100 * want['difference']:+.2f} points (95% bootstrap CI"
    )
    assert "two-sided Mann-Whitney U p" in lines[1]
    code, out, _ = run(capsys, "summary", "--results", str(store), "--a", "lr=30", "--b", "lr=0.1",
                       "batch_size=100", "--format", "csv")  # fmt: skip
    row = pd.read_csv(pd.io.common.StringIO(out)).iloc[0]
    assert (row["a"], row["b"], row["failed_a"], row["failed_b"], row["n_a"]) == ("lr 30", "lr 0.1", 6, 0, 0)
    assert row["failed_p"] < 0.01 and pd.isna(row["p"])  # no finished seed at lr 30: no median test
    code, _, err = run(capsys, "summary", "--results", str(store), "--a", "batch_size=100", "--b", "lr=0.1")
    assert code == 2 and "--a batch_size=100 selects several configurations (they differ in lr)" in err
    code, _, err = run(capsys, "summary", "--results", str(store), "--a", "lr=0.1")
    assert code == 2 and "--a and --b go together" in err


def test_figures_show_the_best_median_by_default(store, capsys, tmp_path):
    # The m5: a folder without batch 90 draws; the model point is the best median there.
    df = results.load(store, where={"lr": 0.1})
    best = stats.final(df).groupby("key")["test_acc"].median().idxmax()
    code, out, err = run(capsys, "figures", "--results", str(store), "--where", "lr=0.1",
                         "--media", str(tmp_path / "m"))  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"model figures: {best}, the highest median final test accuracy (")
    assert (tmp_path / "m" / "predictions_last10.png").is_file()
    # --model-where pins the model point without narrowing the figures (every lr is drawn).
    code, out, err = run(capsys, "figures", "--results", str(store), "--model-batch-size", "100",
                         "--model-where", "lr=0.1", "--media", str(tmp_path / "n"))  # fmt: skip
    assert code == 0, err
    assert out.startswith("model figures: bs0100-lr0.1-") and "one experiment at batch 100, lr 0.1;" in out
    code, _, err = run(capsys, "figures", "--results", str(store), "--model-batch-size", "7",
                       "--media", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and "no finished experiment at batch 7 to show" in err and not (tmp_path / "o").exists()


def test_a_sweep_refused_for_missing_data_leaves_no_results_folder(capsys, tmp_path):
    # The leftovers: the folder it made for nothing is gone; one that was there stays.
    argv = ["sweep", "--batch-sizes", "100", "--epochs", "1", "--seeds", "0", "--no-progress"]
    code, _, err = run(capsys, *argv, "--data", str(tmp_path / "nodata"), "--results", str(tmp_path / "r"))
    assert code == 2 and err.startswith("error: ") and not (tmp_path / "r").exists()
    (tmp_path / "mine").mkdir()
    code, _, _ = run(capsys, *argv, "--data", str(tmp_path / "nodata"), "--results", str(tmp_path / "mine"))
    assert code == 2 and (tmp_path / "mine").is_dir()
