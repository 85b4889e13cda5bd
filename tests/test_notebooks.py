"""run.ipynb through real papermill with small parameters, and the notebooks' signatures."""

import json
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from mlpmnist import embed, report, sweep
from mlpmnist.config import TrainConfig, parse_value

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "run.ipynb"
NOTEBOOKS = [RUN, ROOT / "notebooks" / "batch_science.ipynb", ROOT / "src" / "mlpmnist" / "experiment.ipynb"]


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


def run_small(tmp_path: Path, tsne: bool) -> str:
    out = tmp_path / "run.ipynb"
    pm.execute_notebook(
        str(RUN),
        str(out),
        parameters={
            "batch_sizes": [32, 64],
            "epochs": 1,
            "seeds": [0, 1],
            "config": {"train_limit": 3000},
            "model_batch_size": 64,
            "tsne": tsne,
            "tsne_epochs": [0, 1],
            "tsne_points": 200,
            "results_dir": str(tmp_path / "results"),
            "media_dir": str(tmp_path / "media"),
        },
        kernel_name="python3",
        progress_bar=False,
        cwd=str(ROOT),
    )
    nb = nbformat.read(out, as_version=4)
    for c in nb.cells:
        for o in c.get("outputs", []):
            assert o.get("output_type") != "error"
            assert "WARNING" not in "".join(o.get("text", ""))
    return json.dumps([c.get("outputs", []) for c in nb.cells])


@pytest.mark.slow
@pytest.mark.parametrize("tsne", [False, True], ids=["no-tsne", "tsne"])
def test_run_notebook_with_small_parameters(tmp_path, tsne):
    text = run_small(tmp_path, tsne)
    pngs = {p.name for p in (tmp_path / "media").glob("*.png")}
    expected = {
        "sample_digits.png",
        "accuracy_vs_epoch.png",
        "final_accuracy_vs_batch.png",
        "heatmap_batch_epoch.png",
        "train_vs_test.png",
        "dead_units.png",
        "predictions_last10.png",
        "confusion_matrix.png",
        "misclassified.png",
    }
    assert expected | ({"tsne_epochs.png"} if tsne else set()) == pngs
    assert (tmp_path / "media" / "study_summary.csv").is_file()
    # Nothing about batch 90, which these parameters do not train.
    assert not re.search(r"batch 90\b|bs0090", text)


def test_readme_table_matches_the_committed_summary():
    csv = ROOT / "media" / "study_summary.csv"
    assert report.readme_mismatches(ROOT / "README.md", csv) == []
    # ... and the committed run.ipynb printed the same medians.
    nb = json.dumps(nbformat.read(RUN, as_version=4).dict())
    for line in report.readme_table(csv).splitlines()[2:]:
        median = line.split("|")[2].strip().split()[0]
        assert median in nb, median
