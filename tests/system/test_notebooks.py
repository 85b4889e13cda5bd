"""The notebooks through real papermill as a user runs them (small, non-default parameters; a
copy of the checkout that must stay unchanged), and a rerun that computes the same numbers,
published, leaving the copy's ``git status`` clean."""

import json
import os
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
from checkout import copy_checkout, execute, status
from studies import readme_mismatches

from mlpmnist.figures import registry
from mlpmnist.workbench import publish, report

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "run.ipynb"


def texts(cell: nbformat.NotebookNode) -> str:
    """Everything a cell printed or displayed as text."""
    parts = []
    for o in cell.get("outputs", []):
        parts.append("".join(o.get("text", "")))
        parts.append("".join(o.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def cell_with(nb: nbformat.NotebookNode, code: str) -> nbformat.NotebookNode:
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and code in c.source]
    return cell


def images(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


# Every study figure of the registry, but t-SNE (its own parameter, tsne).
STUDY_PNGS = {f"{name}.png" for name in registry.names("results", "data", "model")}
TSNE_PNGS = {f"{name}.png" for name in registry.names("embedding")}


def shown_figures(nb: nbformat.NotebookNode) -> int:
    """The figures the gallery's cells showed: each section's ``gallery.show`` and ``gallery.rest``."""
    return sum(images(c) for c in nb.cells if c.cell_type == "code" and "gallery." in c.source)


@pytest.mark.slow
def test_run_notebook_with_a_grid_over_lr_leaves_the_checkout_unchanged(tmp_path, mnist, monkeypatch):
    # As a user runs it: from the checkout, default paths, a relative MLPMNIST_DATA (read from the
    # repository root), non-default parameters. A copy of the checkout, so that a regression
    # shows as a dirty copy instead of changing this checkout's committed media/.
    repo = copy_checkout(tmp_path / "repo")
    monkeypatch.setenv("MLPMNIST_DATA", os.path.relpath(mnist.root, repo))
    nb = execute(
        repo / "run.ipynb",
        tmp_path / "run.ipynb",
        cwd=repo,
        batch_sizes=[32, 64],
        epochs=1,
        seeds=[0],
        grid={"lr": [0.05, 0.1]},
        config={"train_limit": 3000},
        model_batch_size=64,
        tsne_epochs=[0, 1],
        tsne_points=200,
    )
    assert status(repo) == ""
    (study,) = (repo / "results" / "studies").iterdir()  # this run's outputs, and only there
    assert {p.name for p in study.glob("*.png")} == STUDY_PNGS | TSNE_PNGS
    assert shown_figures(nb) == len(STUDY_PNGS | TSNE_PNGS)  # every figure saved was shown once
    assert {p.name for p in study.glob("*.csv")} == {f for f in report.FILES.values() if f.endswith(".csv")}
    assert "figures and summary in results/studies/4exp-e1-s1-" in texts(
        cell_with(nb, "Study.from_parameters")
    )

    # The sweep cell drew itself: its last state is the final figure and every experiment done.
    sweep = cell_with(nb, "live.run_sweep")
    assert images(sweep) == 1 and "4 of 4 experiments done, 0 failed; no failed seeds" in texts(sweep)
    table = texts(sweep).split("no failed seeds", 1)[1]
    assert table.count(" done ") == 4 and "waiting" not in table and "epoch " not in table

    # The model cells name the grid point they show: the better of the two lrs at batch 64.
    why = texts(cell_with(nb, "choose_model"))
    m = re.search(r"Models of batch 64, lr (0\.05|0\.1) \((bs0064-lr\S+)\): the highest median", why)
    assert m, why
    record = json.loads((repo / "results" / "runs" / f"{m[2]}.json").read_text())
    others = [json.loads(p.read_text()) for p in (repo / "results" / "runs").glob("bs0064-*.json")]
    best = max(r["replicas"][0]["history"][-1]["test_acc"] for r in others)
    assert record["replicas"][0]["history"][-1]["test_acc"] == best

    # t-SNE's run is that configuration's seed 0 with snapshots at epochs 0 and 1, an experiment of
    # its own in the store; at epoch 1 it is the sweep's model (the same test accuracy), not the
    # default configuration's (lr 0.1, all images), and nothing trained past the study's epoch.
    tsne_runs = [r for r in (json.loads(p.read_text()) for p in (repo / "results" / "runs").glob("*.json"))
                 if r["config"]["snapshots"]]  # fmt: skip
    assert len(tsne_runs) == 1 and tsne_runs[0]["config"]["snapshots"] == [0.0, 1.0]
    assert tsne_runs[0]["config"]["epochs"] == 1 and tsne_runs[0]["config"]["seeds"] == [0]
    scores = texts(cell_with(nb, "tsne_epochs("))
    row = re.search(r"^1\s+1\s+(0\.\d+)", scores, re.MULTILINE)
    assert row, scores
    assert float(row[1]) == pytest.approx(record["replicas"][0]["history"][-1]["test_acc"], abs=2e-4)
    assert not re.search(r"batch 90\b|bs0090", json.dumps([c.get("outputs", []) for c in nb.cells]))


@pytest.mark.slow
def test_run_notebook_with_one_batch_size_one_seed_one_epoch(tmp_path):
    nb = execute(
        RUN,
        tmp_path / "run.ipynb",
        cwd=tmp_path,  # outside any checkout: relative paths would be read from here
        batch_sizes=[64],
        epochs=1,
        seeds=[0],
        config={"train_limit": 2000},
        tsne=False,
        results_dir=str(tmp_path / "results"),
        media_dir=str(tmp_path / "media"),
    )
    assert {p.name for p in (tmp_path / "media").glob("*.png")} == STUDY_PNGS
    assert shown_figures(nb) == len(STUDY_PNGS)
    assert "none: every figure drawn has its section above" in texts(cell_with(nb, "gallery.rest()"))
    assert {p.name for p in (tmp_path / "media").glob("*.csv")} == {
        f for f in report.FILES.values() if f.endswith(".csv")
    }
    described = texts(cell_with(nb, "Study.from_parameters"))
    assert "1 experiment (batch_size [64]), 1 seed each, 1 epoch (more_seeds at batch 8: not in" in described
    assert "last 3 epochs" not in texts(cell_with(nb, "tables.summary_table(summ)"))
    assert "Models of batch 64 (bs0064-" in texts(cell_with(nb, "choose_model"))
    assert "1 of 1 experiment done, 0 failed; no failed seeds" in texts(cell_with(nb, "live.run_sweep"))
    # With one seed: no interval, no difference, said so.
    assert "1 seed: no interval" in texts(cell_with(nb, "findings.conclusions"))
    everything = json.dumps([c.get("outputs", []) for c in nb.cells])
    for odd in ("1 experiments", "1 seeds", "1 epochs", "batch sizes none", "Empty DataFrame"):
        assert odd not in everything, odd
    # No sentence compares batch 64 with itself.
    assert not re.search(r"at batch 64, against [\d.]+% [^.]*at batch 64\b", everything)


def test_a_rerun_that_computes_the_same_numbers_publishes_the_same_bytes(tmp_path, mnist, monkeypatch):
    # make study, make publish-study, commit; make study again (it skips every experiment, as a
    # rerun on the same machine computes the same numbers) and publish: git status stays clean.
    repo = copy_checkout(tmp_path / "repo")
    monkeypatch.setenv("MLPMNIST_DATA", os.path.relpath(mnist.root, repo))
    params = dict(
        batch_sizes=[50, 100], epochs=1, seeds="0-4", config={"train_limit": 2000}, more_seeds={},
        tsne_epochs=[0, 1], tsne_points=150, media_dir="results/study",
    )  # fmt: skip
    executed, study = repo / "results" / "run.ipynb", repo / "results" / "study"
    executed.parent.mkdir()  # as make study does
    argv = [str(executed), str(repo / "run.ipynb"), "--media", str(study), str(repo / "media")]
    argv += ["--readme", str(repo / "README.md")]
    for attempt in range(2):
        execute(repo / "run.ipynb", executed, cwd=repo, **params)
        assert publish.main(argv) == 0
        if attempt == 0:
            assert status(repo)  # the first publish changes the committed outputs...
            git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
            for cmd in (["add", "-A"], ["commit", "-q", "-m", "published"]):
                subprocess.run([*git, *cmd], cwd=repo, check=True, capture_output=True)
    assert status(repo) == ""  # ...the second, with the same numbers, not a byte
    published = (repo / "run.ipynb").read_text()
    assert "2 of 2 experiments done, 0 failed" in published and '"duration"' not in published
    assert readme_mismatches(repo / "README.md", repo / "media") == []
    readme = (repo / "README.md").read_text()
    assert "Holm-adjusted over the 1 pair of configurations" in readme
