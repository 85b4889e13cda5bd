"""Running and publishing apart: ``make study`` writes only under results/, the publish targets
write the committed outputs, and a published notebook carries nothing that says when or how it
ran, so publishing a rerun that computes the same numbers changes no byte. Also what the committed
notebook says of itself: its parameters and its introduction."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from studies import B8, B128, make_history, readme_mismatches

from mlpmnist import sweep
from mlpmnist.analysis import compare, stats
from mlpmnist.config import TrainConfig, parse_value
from mlpmnist.workbench import publish, report

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "run.ipynb"
NOTEBOOKS = [
    RUN,
    ROOT / "notebooks" / "batch_science.ipynb",
    ROOT / "src" / "mlpmnist" / "sweep" / "experiment.ipynb",
]


def executed(when: str, seconds: float) -> nbformat.NotebookNode:
    """A notebook as papermill and nbclient leave it, run at ``when`` and taking ``seconds``: an
    injected-parameters cell, timings everywhere, a progress widget, stderr and stdout."""
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "papermill": {
                "parameters": {"media_dir": "results/study"},
                "start_time": when,
                "end_time": when,
                "duration": seconds,
                "exception": None,
                "input_path": "run.ipynb",
                "output_path": "results/run.ipynb",
                "version": "2.6.0",
            },
            "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"x": when}}},
        }
    )
    timing = {"iopub.execute_input": when, "shell.execute_reply": when}
    cell_pm = {
        "start_time": when,
        "end_time": when,
        "duration": seconds,
        "status": "completed",
        "exception": False,
    }
    params = nbformat.v4.new_code_cell("media_dir = None", metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell(
        'media_dir = "results/study"', metadata={"tags": ["injected-parameters"]}
    )
    work = nbformat.v4.new_code_cell("outcome = live.run_sweep(study.sweep)", execution_count=3)
    work.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=f"sweep: {seconds:.0f} s\n"),
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/plain": "HBox()",
                publish.WIDGET: {"model_id": when, "version_major": 2, "version_minor": 0},
            },
        ),
        nbformat.v4.new_output("display_data", data={"text/plain": "2 of 2 experiments done, 0 failed"}),
        nbformat.v4.new_output("stream", name="stdout", text="done\n"),
    ]
    for c in (params, injected, work):
        c.metadata |= {"execution": dict(timing), "papermill": dict(cell_pm)}
    nb.cells = [params, injected, work]
    for i, c in enumerate(nb.cells):
        c.id = f"cell-{i}"  # papermill keeps the source notebook's cell ids
    return nb


def test_a_published_notebook_has_no_run_timing(tmp_path):
    nbformat.write(executed("2026-11-30T07:53:27Z", 763.8), tmp_path / "run.ipynb")
    text = publish.committed(tmp_path / "run.ipynb")
    for word in ("2026-11-30", "763", "duration", "start_time", '"execution":', "HBox", "widget", "stderr"):
        assert word not in text, word
    nb = nbformat.reads(text, as_version=4)
    assert [c.source for c in nb.cells] == ["media_dir = None", "outcome = live.run_sweep(study.sweep)"]
    assert [o.get("text") or o["data"]["text/plain"] for o in nb.cells[1].outputs] == [
        "2 of 2 experiments done, 0 failed",
        "done\n",
    ]
    assert nb.metadata.papermill == {
        "parameters": {"media_dir": "results/study"},  # what make ran, on record
        "input_path": "run.ipynb",
        "output_path": "results/run.ipynb",
        "version": "2.6.0",
    }


def test_publishing_a_rerun_with_the_same_numbers_changes_no_byte(tmp_path):
    # Two runs that computed the same numbers, at other times and speeds: the same committed text;
    # and publishing one twice is idempotent.
    for i, (when, seconds) in enumerate((("2026-11-30T07:53:27Z", 763.8), ("2027-01-02T10:00:00Z", 1215.0))):
        nbformat.write(executed(when, seconds), tmp_path / f"run{i}.ipynb")
    first = publish.committed(tmp_path / "run0.ipynb")
    assert publish.committed(tmp_path / "run1.ipynb") == first
    assert publish.main([str(tmp_path / "run0.ipynb"), str(tmp_path / "a.ipynb")]) == 0
    assert publish.main([str(tmp_path / "run0.ipynb"), str(tmp_path / "b.ipynb")]) == 0
    assert (tmp_path / "a.ipynb").read_bytes() == (tmp_path / "b.ipynb").read_bytes() == first.encode()
    # ... and so does stripping an already published notebook (strip, then compare).
    again = publish.strip_run(nbformat.reads(first, as_version=4))
    assert nbformat.writes(again) == first


def test_publish_copies_the_media_and_writes_the_readmes_blocks(tmp_path, capsys):
    df = make_history({8: [*B8, 10.1], 90: B128}, epochs=15)
    study = tmp_path / "results" / "study"
    report.write_study(study, stats.summary(df), compare.pairwise(df), stats.dead_units(df))
    (study / "final_accuracy_vs_batch.png").write_bytes(b"png")
    nbformat.write(executed("2026-11-30T07:53:27Z", 763.8), tmp_path / "results" / "run.ipynb")
    readme = tmp_path / "README.md"
    study_blocks = [b for b in report.BLOCKS if b != "science"]  # the science is published on its own
    blocks = "".join(f"{s}\n(stale)\n{e}\n\n" for s, e in map(report.markers, study_blocks))
    readme.write_text("# Study\n\n" + blocks + "The end.\n")
    args = [str(tmp_path / "results" / "run.ipynb"), str(tmp_path / "run.ipynb")]
    assert publish.main([*args, "--media", str(study), str(tmp_path / "media"), "--readme", str(readme)]) == 0
    assert sorted(p.name for p in (tmp_path / "media").iterdir()) == sorted(
        ["final_accuracy_vs_batch.png", *(f for k, f in report.FILES.items() if k != "science")]
    )
    assert readme_mismatches(readme, tmp_path / "media") == []
    assert "(stale)" not in readme.read_text() and readme.read_text().endswith("The end.\n")
    before = {p: p.read_bytes() for p in [readme, tmp_path / "run.ipynb", *(tmp_path / "media").iterdir()]}
    assert publish.main([*args, "--media", str(study), str(tmp_path / "media"), "--readme", str(readme)]) == 0
    assert {p: p.read_bytes() for p in before} == before  # published again: not a byte changed
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["in.ipynb", "out.ipynb"], "not a readable notebook"),
        (["plain.ipynb", "out.ipynb"], "was not executed by papermill"),
        (["run.ipynb", "out.ipynb", "--readme", "README.md"], "--readme needs --media FROM TO"),
        (["run.ipynb", "out.ipynb", "--media", "empty", "m"], "holds no figures or CSVs to publish"),
    ],
)
def test_publish_refuses_in_one_line_before_writing(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.chdir(tmp_path)
    nbformat.write(executed("t", 1.0), tmp_path / "run.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "plain.ipynb")
    (tmp_path / "empty").mkdir()
    assert publish.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert not (tmp_path / "out.ipynb").exists() and not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------- make


def recipe(make: str, target: str) -> str:
    """The commands of ``target`` in the Makefile text ``make``."""
    m = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", make, re.MULTILINE)
    assert m, target
    return " ".join(m[1].replace("\\\n", " ").split())


def test_make_runs_under_results_and_only_publish_writes_the_committed_outputs():
    make = (ROOT / "Makefile").read_text()
    for target, out in (("study", "results/run.ipynb"), ("science", "results/science/batch_science.ipynb")):
        run = recipe(make, target)
        assert f"papermill {RUN.name if target == 'study' else 'notebooks/batch_science.ipynb'} {out} " in run
        assert "publish" not in run and "README" not in run and " media " not in f"{run} "
    assert "-p media_dir $(STUDY)" in recipe(make, "study") and "STUDY := results/study" in make
    assert "--log-output -p" not in recipe(make, "science")  # media_dir: its default, results/science/media
    assert "--log-output" in recipe(make, "study")  # progress lines on the terminal
    study = recipe(make, "publish-study")
    assert "publish results/run.ipynb run.ipynb --media $(STUDY) media --readme README.md" in study
    science = recipe(make, "publish-science")
    assert (
        "results/science/batch_science.ipynb notebooks/batch_science.ipynb --media results/science/media"
        in science
    )
    assert re.search(r"^publish: publish-study publish-science", make, re.MULTILINE)
    assert re.search(r"^study:.*## the whole study \(\d+ to \d+ min on 2 cores\)", make, re.MULTILINE)


# ---------------------------------------------------------------------------- run.ipynb


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
    # The model point and t-SNE's epochs follow the study unless asked (the best median; within it).
    assert p["model_batch_size"] is None and p["tsne_epochs"] is None and p["model_where"] == {}
    # A run writes under its results folder; only make study passes media_dir (under results/ too).
    assert p["results_dir"] == "results" and p["media_dir"] is None
    assert parameters(ROOT / "notebooks" / "batch_science.ipynb")["media_dir"] is None


def test_run_notebooks_text_says_what_its_parameters_do():
    # Every number in the introduction is the parameters' (or the published duration's).
    p = parameters(RUN)
    nb = nbformat.read(RUN, as_version=4)
    intro = " ".join(nb.cells[0].source.split())
    assert "for 15 epochs" in intro and p["epochs"] == 15
    assert "(lr 0.1)" in intro and p["lr"] == 0.1
    assert "batch sizes 8 to 150" in intro and (p["batch_sizes"][0], p["batch_sizes"][-1]) == (8, 150)
    assert "**ten seeds each** (sixty at batch 8" in intro
    assert len(parse_value("seeds", p["seeds"])) == 10 and p["more_seeds"] == {8: "10-59"}
    assert "below five seeds nothing is claimed" in intro and stats.MIN_SEEDS == 5
    assert re.search(r"takes \d+ to \d+ minutes on 2 CPU cores", intro)
    texts = " ".join(" ".join(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    # The stale words of the issue: failed/n counting outliers.
    assert (
        "failed/n" not in texts and "*failed seeds / n* counts the seeds that diverged or collapsed" in texts
    )
    assert "fewer than five seeds a configuration gets no interval" in texts


def test_the_studys_duration_is_stated_alike_everywhere():
    make = (ROOT / "Makefile").read_text()
    (minutes,) = re.findall(r"^study:.*\((\d+ to \d+) min on 2 cores\)", make, re.MULTILINE)
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    intro = " ".join(nbformat.read(RUN, as_version=4).cells[0].source.split())
    assert f"({minutes} minutes on 2 cores)" in readme and f"takes {minutes} minutes on 2 CPU cores" in intro
