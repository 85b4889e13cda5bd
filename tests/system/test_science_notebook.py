"""The science notebook in quick mode through real papermill: from its own folder it writes
nothing there, every run goes through the store (a second run trains nothing), every science
figure of the registry is drawn; and each seed set's choices are its own."""

from __future__ import annotations

import json
import os
import re

import pytest
from checkout import copy_checkout, execute, status

from mlpmnist.figures import registry
from mlpmnist.science import presets, runs, tuning

pytestmark = pytest.mark.slow


def trained(nb) -> list[int]:
    """How many experiments each of the notebook's sweeps trained ('... N trained now ...')."""
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    return [int(n) for n in re.findall(r"(\d+) trained now", text)]


# Two quick runs of the whole notebook (about 160 s on an idle 2-core machine): more than the
# default 300 s bound when the machine is shared.
@pytest.mark.timeout(900)
def test_the_quick_notebook_from_its_folder_resumes_from_the_store(tmp_path, mnist, monkeypatch):
    # JupyterLab starts the kernel in notebooks/; relative paths are read from the repository
    # root, and everything goes under results/, nothing into notebooks/.
    repo = copy_checkout(tmp_path / "repo")
    monkeypatch.setenv("MLPMNIST_DATA", os.path.relpath(mnist.root, repo))
    nb = execute(
        repo / "notebooks" / "batch_science.ipynb", tmp_path / "a.ipynb", cwd=repo / "notebooks", quick=True
    )
    assert status(repo) == ""
    ignored = status(repo, "--ignored").splitlines()
    assert ignored and all(line.startswith("!! results/") for line in ignored), ignored
    out = repo / "results" / "science"
    assert {p.name for p in (out / "media").glob("*.png")} == {f"{n}.png" for n in registry.names("science")}
    summary = json.loads((out / "media" / "science_summary.json").read_text())
    assert summary["quick"] is True and {"tuning", "steps", "ceiling", "noise", "recipes", "tail"} <= set(
        summary
    )
    assert sum(trained(nb)) > 0
    # A figure cell shows the figure alone, no stray values (a saved file's PosixPath, say).
    results = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "execute_result"]
    assert not results, [o["data"].get("text/plain") for o in results]
    # The same parameters again: every experiment is in the store, so nothing trains.
    again = execute(
        repo / "notebooks" / "batch_science.ipynb", tmp_path / "b.ipynb", cwd=repo / "notebooks", quick=True
    )
    counts = trained(again)
    assert counts and set(counts) == {0}
    assert json.loads((out / "media" / "science_summary.json").read_text())["tuning"] == summary["tuning"]


def test_a_seed_sets_choices_do_not_depend_on_the_other_set(tmp_path, mnist):
    p = presets.preset(True)
    runner = runs.Runner(tmp_path / "res", str(mnist.root), 2, p.common)
    first, _ = tuning.search(runner, p.batch_sizes, p.start_lrs, [p.sets[0], (3, 4, 5)], p.tune_epochs, "a")
    other, _ = tuning.search(runner, p.batch_sizes, p.start_lrs, [p.sets[0], (6, 7, 8)], p.tune_epochs, "b")
    assert tuning.best_lrs(first).equals(tuning.best_lrs(other))
    assert sorted(first["lr"].unique()) == sorted(other["lr"].unique())
    cols = ["batch_size", "lr", "seed", "val_acc", "test_acc"]
    key = ["batch_size", "lr", "seed"]
    assert (
        first[cols]
        .sort_values(key, ignore_index=True)
        .equals(other[cols].sort_values(key, ignore_index=True))
    )
