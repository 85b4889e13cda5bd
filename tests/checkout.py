"""A throwaway copy of this checkout, and notebooks run in it by real papermill: what the
notebook tests share."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import papermill as pm

ROOT = Path(__file__).resolve().parents[1]


def copy_checkout(dst: Path) -> Path:
    """A copy of this checkout's tracked files as they are in the working tree, committed in a
    fresh git repository at ``dst``: a user's clone that a run may not change, whose failure
    cannot touch the real checkout's committed outputs."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run([*git, *cmd], cwd=dst, check=True, capture_output=True)
    assert status(dst) == ""
    return dst


def status(repo: Path, *extra: str) -> str:
    """``git status --porcelain`` of ``repo`` (untracked files listed one by one)."""
    args = ["git", "status", "--porcelain", "--untracked-files=all", *extra]
    return subprocess.run(args, cwd=repo, capture_output=True, text=True, check=True).stdout


def execute(notebook: Path, out: Path, cwd: Path, **parameters) -> nbformat.NotebookNode:
    """``notebook`` run by real papermill into ``out`` in a kernel started in ``cwd``; every
    output checked: no error, no WARNING line."""
    pm.execute_notebook(
        str(notebook),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        cwd=str(cwd),
    )
    nb = nbformat.read(out, as_version=4)
    for c in nb.cells:
        for o in c.get("outputs", []):
            assert o.get("output_type") != "error", o
            assert "WARNING" not in "".join(o.get("text", "")), o
    return nb
