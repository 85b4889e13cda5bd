"""The command line on real MNIST, in-process (``cli.main``): train and figures work end to end,
and every expected fault ends in one clear line.

Each fault checks the exit status (2 bad input or path, 3 failed seeds), that no traceback is
shown, and that the one-line message names the field, file or folder at fault. What needs the
process itself (the exit status at the shell, a fresh interpreter's environment, signals) is in
tests/system/test_faults.py.
"""

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlpmnist import TrainConfig, cli, train
from mlpmnist import store as results
from mlpmnist.store import weights

TINY = ["--epochs", "1", "--seeds", "0", "--train-limit", "1000", "--batch-size", "100", "--no-progress"]
# A sweep's batch sizes are its grid axis: it refuses --batch-size (see test_cli_workbench.py).
SWEEP_TINY = [
    "--epochs",
    "1",
    "--seeds",
    "0",
    "--train-limit",
    "1000",
    "--batch-sizes",
    "100",
    "--no-progress",
]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``mlpmnist ARGS`` in this process: its exit status, stdout and stderr."""
    try:
        code = cli.main(list(args))
    except SystemExit as e:  # argparse's refusals
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1] if stderr.strip() else ""


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch) -> None:
    # Every command runs in a folder of its own: a relative default lands there, not in the checkout.
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def results_dir(mnist, tmp_path_factory) -> Path:
    """A results folder with one finished experiment, for the figures command, stored as before
    weights checksums (so a damaged weights file is named by its reader)."""
    root = tmp_path_factory.mktemp("res")
    cfg = TrainConfig(batch_size=90, epochs=2, seeds=(0, 1), train_limit=2000)
    res = train(cfg, mnist, progress=False, verbose=False)
    record = results.record_text(results.make_record(res))
    results.atomic_write_text(results.path(root, "runs", cfg.key()), record)
    results.atomic_write_bytes(results.path(root, "models", cfg.key()), weights.models_bytes(res))
    return root


def test_train_end_to_end(tmp_path, capsys):
    out = tmp_path / "sub" / "run.json"
    code, stdout, err = run_cli(capsys, "train", *TINY, "--seeds", "0-1", "--out", str(out))
    assert code == 0, err
    assert "test_acc_median_%" in stdout and "key bs0100-lr0.1-e1-s2-" in stdout
    rec = json.loads(out.read_text())
    assert rec["config"]["seeds"] == [0, 1] and [len(r["history"]) for r in rec["replicas"]] == [1, 1]
    assert rec["note"] is None and not list(out.parent.glob(".*.tmp"))


def test_figures_end_to_end(results_dir, tmp_path, capsys):
    # Without --media the PNGs go under the results folder (a copy here), never into ./media.
    res = shutil.copytree(results_dir, tmp_path / "res")
    code, _, err = run_cli(capsys, "figures", "--results", str(res))
    assert code == 0, err
    pngs = {f.name for f in (res / "media").glob("*.png")}
    assert {"accuracy_vs_epoch.png", "final_accuracy_vs_batch.png", "predictions_last10.png"} <= pngs
    assert "dead_units.png" in pngs and "confusion_matrix.png" in pngs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--model-batch-size", "7"], ["no finished experiment at batch 7", "res: 90; choose another"]),
        (["--where", "lr=0.5"], ["no run records matching the selection"]),
        (["--where", "batchsize=90"], ["batchsize", "batch_size"]),
        (["--data", "nowhere"], ["nowhere"]),
    ],
    ids=["no-model-batch", "empty-selection", "unknown-field", "no-data"],
)
def test_figures_checks_everything_before_writing(results_dir, tmp_path, capsys, argv, words):
    res = shutil.copytree(results_dir, tmp_path / "res")
    media = tmp_path / "media"
    code, _, err = run_cli(capsys, "figures", "--results", str(res), "--media", str(media), *argv)
    assert code == 2 and "Traceback" not in err and last_line(err).startswith("error: ")
    for w in words:
        assert w in last_line(err), (w, err)
    assert not media.exists() and not (res / "media").exists()  # nothing written, not even the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def _file(tmp: Path) -> Path:
    (tmp / "afile").write_text("x")
    return tmp / "afile"


def _runs_with(content: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / "r" / "runs").mkdir(parents=True)
        (tmp / "r" / "runs" / "bad.json").write_bytes(content)
        return tmp / "r"

    return make


def _fifo(tmp: Path, name: str = "fifo") -> Path:
    os.mkfifo(tmp / name)
    return tmp / name


def _link(tmp: Path, to: str) -> Path:
    (tmp / "link").symlink_to(to)
    return tmp / "link"


def _media_with_fifo(tmp: Path) -> Path:
    (tmp / "media").mkdir()
    _fifo(tmp / "media", "accuracy_vs_epoch.png")
    return tmp / "media"


def _looping_runs(tmp: Path) -> Path:
    (tmp / "r").mkdir()
    (tmp / "r" / "runs").symlink_to("runs")
    return tmp / "r"


def _edited_record(results_dir: Path, change: Callable[[dict], None]) -> Callable[[Path], Path]:
    """A results folder holding the fixture's record, edited by ``change``."""

    def make(tmp: Path) -> Path:
        (tmp / "r" / "runs").mkdir(parents=True)
        for rec in (results_dir / "runs").glob("*.json"):
            record = json.loads(rec.read_text())
            change(record)
            (tmp / "r" / "runs" / rec.name).write_text(json.dumps(record))
        return tmp / "r"

    return make


def _foreign_weights(results_dir: Path) -> Callable[[Path], Path]:
    """A results folder whose weights file holds another experiment's weights (its key inside)."""

    def make(tmp: Path) -> Path:
        import torch

        root = tmp / "r"
        shutil.copytree(results_dir, root)
        for p in (root / "models").glob("*.pt"):
            payload = torch.load(p, weights_only=True)
            payload["key"] = "bs0128-lr0.1-e2-s2-00000000"
            torch.save(payload, p)
        return root

    return make


def _bad_models(results_dir: Path) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        root = tmp / "r"
        (root / "runs").mkdir(parents=True)
        for rec in (results_dir / "runs").glob("*.json"):
            (root / "runs" / rec.name).write_bytes(rec.read_bytes())
            (root / "models").mkdir(exist_ok=True)
            good = results.path(results_dir, "models", rec.stem).read_bytes()
            results.path(root, "models", rec.stem).write_bytes(good[: len(good) // 3])
        return root

    return make


# (id, argv builder given tmp_path and the results fixture, exit status, words the last line must contain)
FAULTS = [
    ("lr-overflow", lambda t, r: ["train", "--lr", "1e308"], 2, ["lr must be", "1e+308"]),
    ("bad-batch", lambda t, r: ["train", "--batch-size", "0"], 2, ["batch_size must be"]),
    ("hidden-word", lambda t, r: ["train", "--hidden", "sixty"], 2, ["hidden must be whole numbers"]),
    (
        "unknown-axis",
        lambda t, r: ["sweep", "--grid", "batchsize=8"],
        2,
        ["unknown grid axis 'batchsize'", "valid:"],
    ),
    ("out-is-dir", lambda t, r: ["train", *TINY, "--out", str(t)], 2, ["--out", "is a folder"]),
    (
        "out-under-file",
        lambda t, r: ["train", *TINY, "--out", str(_file(t) / "x.json")],
        2,
        ["afile", "is a file"],
    ),
    (
        "results-is-file",
        lambda t, r: ["sweep", *SWEEP_TINY, "--results", str(_file(t))],
        2,
        ["afile", "is a file"],
    ),
    (
        "results-uncreatable",
        lambda t, r: ["sweep", *SWEEP_TINY, "--results", "/proc/mlpmnist"],
        2,
        ["/proc/mlpmnist"],
    ),
    (
        "figures-missing",
        lambda t, r: ["figures", "--results", str(t / "none")],
        2,
        ["does not exist", "none"],
    ),
    (
        "figures-empty",
        lambda t, r: ["figures", "--results", str(_runs_with(b"")(t).parent)],
        2,
        ["no run records"],
    ),
    ("media-is-file", lambda t, r: ["figures", "--results", str(r), "--media", str(_file(t))], 2, ["afile"]),
    (
        "non-utf8-record",
        lambda t, r: ["figures", "--results", str(_runs_with(b"\xff\xfe")(t))],
        2,
        ["bad.json"],
    ),
    (
        "fake-record",
        lambda t, r: ["figures", "--results", str(_runs_with(b'{"config": {}}')(t))],
        2,
        ["bad.json"],
    ),
    (
        "truncated-models",
        lambda t, r: ["figures", "--results", str(_bad_models(r)(t))],
        2,
        [".pt", "weights file"],
    ),
    (
        "scheduler-down",
        lambda t, r: ["sweep", *SWEEP_TINY, "--results", str(t), "--scheduler", "tcp://127.0.0.1:1"],
        2,
        ["tcp://127.0.0.1:1", "--scheduler"],
    ),
    # A grid over a field that does not change what a run computes would be one experiment.
    (
        "grid-threads",
        lambda t, r: ["sweep", "--grid", "threads=1,2", "--results", str(t)],
        2,
        ["grid axis threads", "--threads"],
    ),
    (
        "grid-device",
        lambda t, r: ["sweep", "--grid", "device=cpu,auto", "--results", str(t)],
        2,
        ["grid axis device", "--device"],
    ),
    # Sizes are checked against their limit, named in the message, before anything is allocated.
    ("seeds-train", lambda t, r: ["train", "--seeds", "0-100000"], 2, ["at most 10,000", "100,001 values"]),
    (
        "seeds-sweep",
        lambda t, r: ["sweep", "--seeds", "0-100000", "--results", str(t)],
        2,
        ["at most 10,000", "100,001 values"],
    ),
    ("epochs", lambda t, r: ["train", "--epochs", "1000000"], 2, ["epochs", "100,000"]),
    (
        "grid-points",
        lambda t, r: [
            "sweep",
            "--grid",
            "batch_size=" + ",".join(map(str, range(1, 102))),
            "lr=" + ",".join(f"0.{i:03d}" for i in range(1, 101)),
            "--results",
            str(t),
        ],
        2,
        ["10,100 experiments", "10,000"],
    ),
    # Nothing but a regular file is ever replaced.
    ("out-fifo", lambda t, r: ["train", *TINY, "--out", str(_fifo(t))], 2, ["--out", "is a FIFO"]),
    (
        "out-link-to-device",
        lambda t, r: ["train", *TINY, "--out", str(_link(t, "/dev/null"))],
        2,
        ["--out", "links to a character device"],
    ),
    (
        "out-link-loop",
        lambda t, r: ["train", *TINY, "--out", str(_link(t, "link"))],
        2,
        ["cannot be followed"],
    ),
    (
        "media-png-fifo",
        lambda t, r: ["figures", "--results", str(r), "--media", str(_media_with_fifo(t))],
        2,
        ["accuracy_vs_epoch.png is a FIFO"],
    ),
    # Store folders that loop are named, before any work.
    (
        "runs-loop-sweep",
        lambda t, r: ["sweep", *SWEEP_TINY, "--results", str(_looping_runs(t))],
        2,
        ["runs is not a folder", "cannot be followed"],
    ),
    (
        "runs-loop-figures",
        lambda t, r: ["figures", "--results", str(_looping_runs(t))],
        2,
        ["runs is not a folder", "cannot be followed"],
    ),
    # Records and weights the store cannot trust are named, never drawn.
    (
        "record-no-status",
        lambda t, r: [
            "figures",
            "--results",
            str(_edited_record(r, lambda d: d["replicas"][0].pop("status"))(t)),
        ],
        2,
        [".json", "status None"],
    ),
    (
        "record-string-acc",
        lambda t, r: [
            "figures",
            "--results",
            str(_edited_record(r, lambda d: d["replicas"][0]["history"][0].update(test_acc="0.9"))(t)),
        ],
        2,
        [".json", "numeric epoch and test_acc"],
    ),
    (
        "record-no-test-acc",
        lambda t, r: [
            "figures",
            "--results",
            str(_edited_record(r, lambda d: d["replicas"][1]["history"][1].pop("test_acc"))(t)),
        ],
        2,
        [".json", "numeric epoch and test_acc"],
    ),
    (
        "foreign-weights",
        lambda t, r: ["figures", "--results", str(_foreign_weights(r)(t))],
        2,
        ["its weights file belongs to another experiment", "rerun its sweep"],
    ),
    ("diverged", lambda t, r: ["train", *TINY, "--lr", "10000"], 3, ["diverged", "lower the learning rate"]),
]


@pytest.mark.parametrize("name,argv,code,words", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_gives_one_line_and_exit_status(name, argv, code, words, tmp_path, results_dir, capsys):
    t0 = time.time()
    status, out, err = run_cli(capsys, *argv(tmp_path, results_dir))
    assert status == code, (out, err)
    assert "Traceback" not in err
    line = last_line(err)
    # Seeds that diverge are a done experiment's outcome, said as failed seeds (exit 3).
    assert line.startswith("failed seeds: " if name == "diverged" else "error: ")
    for w in words:
        assert w in line, (w, line)
    if name == "scheduler-down":
        assert time.time() - t0 < 60
