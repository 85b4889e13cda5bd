"""Faults where the process matters: real sweeps with papermill kernels, pipes closed by their
reader, a memory limit on the process (issue 23: W1, W2, W11, W12, W13, W17).

The sweeps run in-process (``cli.main``) where only their kernels are processes; a command runs
as a subprocess where its pipe, its limits or its exit status at the shell is what is tested.
"""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlpmnist import cli, store
from mlpmnist.config import TrainConfig
from mlpmnist.store import records

pytestmark = pytest.mark.slow

TINY = ["--epochs", "1", "--seeds", "0", "--train-limit", "1000", "--no-progress"]


def tiny(batch_size: int = 100) -> TrainConfig:
    return TrainConfig(batch_size=batch_size, epochs=1, seeds=(0,), train_limit=1000)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# ------------------------------------------ W1, W17: any folder name, and the umask honoured


def test_a_sweep_in_a_folder_named_with_braces_works_and_keeps_the_umask(tmp_path, capsys):
    root = tmp_path / "a{é ü}" / "b{job}"
    before = os.umask(0o077)
    try:
        code = cli.main(["sweep", *TINY, "--batch-sizes", "100", "--results", str(root)])
    finally:
        os.umask(before)
    out, err = capsys.readouterr()
    assert code == 0, err
    found, why = store.find(root, tiny())
    assert found is not None, why
    files = [store.path(root, kind, found.key) for kind in ("runs", "models", "notebooks", "logs")]
    assert [oct(mode(p)) for p in files] == [oct(0o600)] * 4  # the kernels' files too
    assert not list(root.rglob(".*.tmp")) and not (root / ".scratch").exists()  # tidied away


# ---------------------------------------- W12: the sweep's own interpreter runs its kernels


def test_kernels_come_from_the_sweeps_interpreter_and_a_kernel_that_dies_says_why(
    tmp_path, capsys, monkeypatch
):
    # A user's python3 kernelspec that cannot run a kernel: the sweep does not use it.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = ["/bin/sh", "-c", "echo 'not this kernel' >&2; exit 1", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "x", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # Nothing on PYTHONPATH: the interpreter alone would import whichever mlpmnist it has installed.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    root = tmp_path / "res"
    assert cli.main(["sweep", *TINY, "--batch-sizes", "100", "--results", str(root)]) == 0
    found = store.find(root, tiny())[0]
    assert found is not None
    # Its kernel ran this very code: the record's commit is this checkout's.
    assert found.record["provenance"]["git_commit"] == records.provenance("cpu", 1)["git_commit"]
    capsys.readouterr()
    # A kernel that dies while it starts: the experiment fails with the last line of its log.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ipykernel_launcher.py").write_text(
        "import sys\nprint('starting', file=sys.stderr)\nprint('ImportError: no zmq here', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    assert cli.main(["sweep", *TINY, "--batch-sizes", "200", "--results", str(root)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    line = next(x for x in err if x.startswith(f"error: experiment {tiny(200).key()} failed"))
    assert f"its kernel ({sys.executable}) died while starting" in line
    assert "its log ends with 'ImportError: no zmq here'" in line and "; see " in line


# --------------------------------------- W2: links in the store that leave it are refused


def test_store_links_to_files_outside_are_never_written_through(tmp_path, capsys):
    root, outside = tmp_path / "res", tmp_path / "outside"
    outside.mkdir()
    key = tiny().key()
    for kind, ext in (("models", ".pt"), ("logs", ".log")):
        (outside / f"private{ext}").write_text("mine")
        (outside / f"private{ext}").chmod(0o600)
        (root / kind).mkdir(parents=True)
        (root / kind / f"{key}{ext}").symlink_to(outside / f"private{ext}")
    assert cli.main(["sweep", *TINY, "--batch-sizes", "100", "--results", str(root)]) == 3
    err = capsys.readouterr().err
    assert f"models/{key}.pt leads to {outside}/private.pt, outside the results folder" in err
    for ext in (".pt", ".log"):
        assert (outside / f"private{ext}").read_text() == "mine" and mode(outside / f"private{ext}") == 0o600


# ----------------------------------------------- W13: a closed stdout stops only the printing


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlpmnist", *args]


def test_a_closed_stdout_stops_the_printing_not_the_work(tmp_path):
    out = tmp_path / "run.json"
    argv = command("train", *TINY, "--epochs", "3", "--batch-size", "100", "--out", str(out))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # every line written at once: most after the close
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert p.stdout is not None and p.stderr is not None
    assert p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=300) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err
    assert [len(r["history"]) for r in store.read_record(out)["replicas"]] == [3]
    # At the shell, buffered: the output goes at exit, after head has gone.
    res = tmp_path / "res"
    line = " ".join(command("sweep", *TINY, "--batch-sizes", "100", "--results", str(res)))
    shell = subprocess.run(
        ["bash", "-c", f"{line} | head -c 1; echo; echo status ${{PIPESTATUS[0]}} >&2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert shell.stderr.strip().splitlines()[-1] == "status 0", shell.stderr
    assert "Traceback" not in shell.stderr and "Broken pipe" not in shell.stderr
    assert store.find(res, tiny())[0] is not None


# ------------------------------------------------ W11: a memory cap, met before any training


def test_too_many_seeds_under_a_memory_cap_is_one_line_with_the_numbers(tmp_path):
    cap = 6 * 10**9

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    p = subprocess.run(
        command("train", "--seeds", "0-9999", "--epochs", "1", "--no-progress"),
        capture_output=True, text=True, timeout=300, preexec_fn=limit,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith("error: 10,000 seeds of a 784-64-64-10 MLP (55,050 parameters each, float32)")
    assert "need about" in lines[0] and "address-space limit (ulimit -v)" in lines[0]
    assert "epoch" not in p.stdout  # refused before training
