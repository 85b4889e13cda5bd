"""A sweep killed in the middle of an experiment resumes it from its last finished epoch, and the
record it writes equals an uninterrupted sweep's bit for bit on this machine, but for the timing
fields (seconds, eval_seconds, first_step_at, created) and which job made it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from procs import wait_for

from mlpmnist import store

pytestmark = pytest.mark.slow

TIMING = {"seconds", "eval_seconds"}
RECORD_ONLY = {"seconds", "first_step_at", "created", "job"}
# One experiment of 4 seeds, 4 epochs of all 60,000 images at batch 16 (~2 s an epoch here), so
# there is time to kill it between its first checkpoint and its end.
ARGS = ["--batch-sizes", "16", "--epochs", "4", "--seeds", "0-3", "--threads", "1", "--workers", "1"]


def sweep(root, *extra: str, wait: bool = True) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mlpmnist", "sweep", *ARGS, "--no-progress", "--results", str(root), *extra]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if wait:
        proc.wait(timeout=600)
    return proc


def comparable(record: dict) -> dict:
    """The record without what only says when and by whom it was made."""
    out = {k: v for k, v in record.items() if k not in RECORD_ONLY}
    out["replicas"] = [
        {**r, "history": [{k: v for k, v in row.items() if k not in TIMING} for row in r["history"]]}
        for r in record["replicas"]
    ]
    return out


def test_a_killed_sweep_resumes_its_experiment_from_the_last_finished_epoch(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert sweep(whole).returncode == 0
    (key,) = [p.stem for p in (whole / "runs").glob("*.json")]

    proc = sweep(cut, wait=False)
    checkpoint = cut / "checkpoints"
    assert wait_for(lambda: list(checkpoint.glob("*.pt")), 300, step=0.05), "no checkpoint in time"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "runs" / f"{key}.json").exists(), "the experiment finished before it was killed"
    (saved,) = checkpoint.glob("*.pt")
    epochs_done = torch.load(saved, weights_only=True)["step"] // 3750
    assert 1 <= epochs_done < 4

    again = sweep(cut)
    out = again.stdout.read()
    assert again.returncode == 0, out
    # It went on from the checkpoint: the epochs before it were not trained again.
    assert f"{key} {epochs_done + 1:g} of 4" in out and f"{key} 1 of 4" not in out
    assert not list(checkpoint.glob("*.pt"))  # stored: the checkpoint is gone
    # The kernel's log holds what went wrong, not ipykernel's start-up warning (the noise).
    log = store.path(cut, "logs", key).read_text()
    assert "without encryption" not in log, log
    # Nothing of the sweep's working state is left: no checkpoint, lock file or empty folder.
    assert sorted(p.name for p in cut.iterdir()) == ["logs", "models", "notebooks", "runs"]
    a, b = (json.loads(store.path(r, "runs", key).read_text()) for r in (whole, cut))
    assert comparable(a) == comparable(b)
    wa, wb = (torch.load(store.path(r, "models", key), weights_only=True) for r in (whole, cut))
    for sa, sb in zip(wa["state_dicts"], wb["state_dicts"], strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
