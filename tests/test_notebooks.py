"""The notebooks through real papermill as a user runs them (small, non-default parameters; a
copy of the checkout that must stay unchanged), and their signatures."""

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from checkout import copy_checkout, execute, status

from mlpmnist import sweep
from mlpmnist.config import TrainConfig, parse_value
from mlpmnist.figures import embed, registry
from mlpmnist.workbench import report

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "run.ipynb"
NOTEBOOKS = [
    RUN,
    ROOT / "notebooks" / "batch_science.ipynb",
    ROOT / "src" / "mlpmnist" / "sweep" / "experiment.ipynb",
]


def parameters(path: Path) -> dict:
    """The literal values of a notebook's parameters cell."""
    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    names: dict = {}
    exec(cell.source, {}, names)  # the cell holds literals only
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_signature(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
    assert tags.count("parameters") == 1 and "injected-parameters" not in tags


def test_run_defaults_are_the_packages():
    p = parameters(RUN)
    d = TrainConfig()
    assert tuple(p["batch_sizes"]) == sweep.REFERENCE_BATCH_SIZES
    assert p["epochs"] == d.epochs and p["lr"] == d.lr
    assert parse_value("seeds", p["seeds"]) == d.seeds
    assert tuple(p["tsne_epochs"]) == embed.SNAPSHOT_EPOCHS and p["tsne_points"] == embed.N_POINTS
    # A run writes under its results folder; only make study passes media_dir="media".
    assert p["results_dir"] == "results" and p["media_dir"] is None and p["model_where"] == {}
    assert parameters(ROOT / "notebooks" / "batch_science.ipynb")["media_dir"] is None


def test_make_writes_the_committed_outputs_explicitly():
    make = (ROOT / "Makefile").read_text()
    assert "run.ipynb results/run.ipynb --cwd . --kernel python3 -p media_dir media" in make
    assert "-p media_dir media -p out_dir results/science" in make
    assert make.count("-m mlpmnist.workbench.publish") == 2 and "cp results/" not in make


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
    assert (study / "study_summary.csv").is_file()
    assert "figures and summary in results/studies/4exp-e1-s1-" in texts(
        cell_with(nb, "Study.from_parameters")
    )

    # The sweep cell drew itself: its last state is the final figure and every experiment done.
    sweep = cell_with(nb, "live.run_sweep")
    assert images(sweep) == 1 and "4 of 4 experiments finished" in texts(sweep)
    assert texts(sweep).count("done") == 4

    # The model cells name the grid point they show: the better of the two lrs at batch 64.
    why = texts(cell_with(nb, "choose_model"))
    m = re.search(r"Models of batch 64, lr (0\.05|0\.1) \((bs0064-lr\S+)\): the highest median", why)
    assert m, why
    record = json.loads((repo / "results" / "runs" / f"{m[2]}.json").read_text())
    others = [json.loads(p.read_text()) for p in (repo / "results" / "runs").glob("bs0064-*.json")]
    best = max(r["replicas"][0]["history"][-1]["test_acc"] for r in others)
    assert record["replicas"][0]["history"][-1]["test_acc"] == best

    # t-SNE retrained that configuration (lr, train_limit, seed 0) for 1 epoch: the same test
    # accuracy as the sweep's model, far from the default configuration's (lr 0.1, all images).
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
        model_batch_size=64,
        tsne=False,
        results_dir=str(tmp_path / "results"),
        media_dir=str(tmp_path / "media"),
    )
    assert {p.name for p in (tmp_path / "media").glob("*.png")} == STUDY_PNGS
    assert shown_figures(nb) == len(STUDY_PNGS)
    assert "none: every figure drawn has its section above" in texts(cell_with(nb, "gallery.rest()"))
    assert (tmp_path / "media" / "study_summary.csv").is_file()
    described = texts(cell_with(nb, "Study.from_parameters"))
    assert "1 experiment (batch_size [64]), 1 seed each, 1 epoch (more_seeds at batch 8: not in" in described
    assert "last 3 epochs" not in texts(cell_with(nb, "tables.summary_table(summ)"))
    assert "Models of batch 64 (bs0064-" in texts(cell_with(nb, "choose_model"))
    assert "1 of 1 experiment finished, 0 failed" in texts(cell_with(nb, "live.run_sweep"))
    everything = json.dumps([c.get("outputs", []) for c in nb.cells])
    for odd in ("1 experiments", "1 seeds", "1 epochs", "batch sizes none", "Empty DataFrame"):
        assert odd not in everything, odd
    # No sentence compares batch 64 with itself.
    assert not re.search(r"at batch 64, against [\d.]+% [^.]*at batch 64\b", everything)


def test_readme_table_matches_the_committed_summary():
    csv = ROOT / "media" / "study_summary.csv"
    assert report.readme_mismatches(ROOT / "README.md", csv) == []
    # ... and the committed run.ipynb printed the same medians.
    nb = json.dumps(nbformat.read(RUN, as_version=4).dict())
    for line in report.readme_table(csv).splitlines()[2:]:
        median = line.split("|")[2].strip().split()[0]
        assert median in nb, median
