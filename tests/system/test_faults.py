"""Faults while a sweep or a run works, for real: a full disk (a small tmpfs in a mount namespace
of its own), a hung or killed kernel, a stopped sweep holding a lock, signals, files in the way,
records that cannot be trusted, a scheduler that is not one; and the command at the shell: its
exit status, a fresh interpreter's environment, Ctrl-C and SIGTERM during a train.

Each runs the real CLI in a subprocess, bounded by a timeout, and checks the exit status, one
``error:`` line naming the thing, no traceback, nothing left behind (kernels, scratch folders),
and, where a rerun follows, that it resumes with nothing lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from procs import alive, children, wait_for

from mlpmnist import TrainConfig, sweep
from mlpmnist import store as results
from mlpmnist.sweep import backends, jobs

# --------------------------------------------------------------------------------------- helpers

RUN = ["--epochs", "1", "--seeds", "0", "--train-limit", "2000", "--threads", "1", "--no-progress"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlpmnist", *args]


def run(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def last_error(p: subprocess.CompletedProcess | tuple[int, str], code: int, *words: str) -> str:
    """The last stderr line of a finished command, checked: exit ``code``, no traceback, an
    ``error:`` line holding every one of ``words``."""
    rc, err = (p.returncode, p.stderr) if isinstance(p, subprocess.CompletedProcess) else p
    assert rc == code, err
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1] if err.strip() else ""
    assert line.startswith("error: "), err
    for w in words:
        assert w in line, (w, line)
    return line


def kernels_of(pid: int) -> list[int]:
    """The ipykernel processes whose parent is ``pid``."""
    return children(pid, b"ipykernel")


def scratch_left(root: Path) -> list[Path]:
    return list((root / ".scratch").glob("*")) if (root / ".scratch").is_dir() else []


def config(batch_size: int, **kw: object) -> TrainConfig:
    """The experiment that ``RUN`` (and ``kw``) make at ``batch_size``."""
    fields = {"epochs": 1, "seeds": (0,), "train_limit": 2000, "batch_size": batch_size, **kw}
    return TrainConfig(**fields)  # type: ignore[arg-type]


def key(batch_size: int, **kw: object) -> str:
    return config(batch_size, **kw).key()


def table_status(stdout: str) -> dict[str, str]:
    """batch size -> status, from the sweep's printed table (grids over batch_size only)."""
    rows = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) > 1 and words[0].isdigit() and words[1] in ("done", "skipped", "failed"):
            rows[words[0]] = words[1]
    return rows


# ------------------------------------------------------------------ 1: a scheduler that is not one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says anything."""
    srv = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):  # the accept timed out: look at stop again
                conns.append(srv.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


@pytest.fixture
def http_server() -> Iterator[int]:
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()
    t.join()


@pytest.mark.slow
def test_a_scheduler_address_that_is_not_a_scheduler_is_named_in_time(tmp_path, silent_listener, http_server):
    sched_port, dash_port = free_port(), free_port()
    sched = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(sched_port), "--dashboard-address", f"127.0.0.1:{dash_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        sweep_args = [
            "sweep",
            *RUN,
            "--results",
            str(tmp_path),
            "--connect-timeout",
            "3",
            "--worker-timeout",
            "10",
        ]
        cases = [
            (silent_listener, ["is not a Dask scheduler", "no Dask handshake", "--connect-timeout 3"]),
            (http_server, ["is an HTTP server", "dashboard"]),
        ]
        for port, words in cases:
            t0 = time.time()
            p = run(cli(*sweep_args, "--scheduler", f"tcp://127.0.0.1:{port}"), timeout=120)
            last_error(p, 2, f"tcp://127.0.0.1:{port}", "--scheduler", *words)
            assert time.time() - t0 < 60
        address = f"tcp://127.0.0.1:{sched_port}"
        assert wait_for(lambda: _probe_ok(address), 60), "the test's scheduler did not start"
        # The common slip: the dashboard's port for the scheduler's.
        p = run(cli(*sweep_args, "--scheduler", f"tcp://127.0.0.1:{dash_port}"), timeout=120)
        last_error(p, 2, "HTTP server, not a Dask scheduler", "dashboard", "8786")
        assert not list(tmp_path.glob("runs/*"))  # nothing ran
    finally:
        sched.kill()
        sched.wait()


def _probe_ok(address: str) -> bool:
    try:
        backends.probe_scheduler(address, 2)
    except ValueError:
        return False
    return True


# -------------------------------------------------------------------------- 2: a disk that fills


@dataclass
class SmallDisk:
    """A tmpfs at ``path``, mounted in the mount namespace of process ``pid`` only."""

    pid: int
    path: Path

    def argv(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["nsenter", "-t", str(self.pid), "-m", "--", *argv]

    def seen(self, inner: Path) -> Path:
        """``inner`` (a path inside the namespace) as this process sees it."""
        return Path(f"/proc/{self.pid}/root{inner}")

    def filler(self, root: Path, pattern: str, leave: int) -> subprocess.Popen:
        """Fills the disk, all but ``leave`` bytes, as soon as ``root/pattern`` exists."""
        code = (
            "import glob, os, sys, time\n"
            "root, pattern, leave = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
            "deadline = time.time() + 300\n"
            "while not glob.glob(os.path.join(root, pattern)) and time.time() < deadline:\n"
            "    time.sleep(0.02)\n"
            "st = os.statvfs(root)\n"
            "fd = os.open(os.path.join(root, 'filler'), os.O_CREAT | os.O_WRONLY)\n"
            "os.posix_fallocate(fd, 0, max(1, st.f_bavail * st.f_frsize - leave))\n"
            "print('filled', flush=True)\n"
        )
        return subprocess.Popen(
            self.argv(sys.executable, "-c", code, str(root), pattern, str(leave)),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip


@pytest.fixture
def small_disk(tmp_path) -> Iterator[SmallDisk]:
    """A 4 MB tmpfs in a mount namespace of its own (the host's mounts are untouched), held by a
    sleeping process; skipped with the reason where namespaces or mounts are not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    holder = None
    why = ""
    mount = f"mount -t tmpfs -o size=4m tmpfs {mnt} && echo ready && exec sleep 3600"
    for prefix in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        try:
            holder = subprocess.Popen(
                [*prefix, "--propagation", "private", "sh", "-c", mount],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        except FileNotFoundError as e:
            why = str(e)
            break
        assert holder.stdout is not None and holder.stderr is not None
        if holder.stdout.readline().strip() == "ready":
            break
        why = holder.stderr.read().strip()
        holder.wait()
        holder = None
    if holder is None or subprocess.run(["nsenter", "--version"], capture_output=True).returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs in a mount namespace of its own here ({why or 'no nsenter'})"
        )
    try:
        yield SmallDisk(holder.pid, mnt)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_full_disk_fails_the_experiment_and_a_rerun_resumes(small_disk):
    root, file = small_disk.path / "res", "models"
    seen = small_disk.seen(root)
    argv = small_disk.argv(*cli("sweep", *RUN, "--batch-sizes", "100", "--results", str(root)))
    filler = small_disk.filler(root, ".scratch/*/owner.json", 120_000)
    p = run(argv)
    assert filler.wait(timeout=60) == 0, (p.stdout, p.stderr)
    k = key(100)
    line = last_error(p, 3, f"experiment {k} failed", f"{root}/{file}/{k}", "No space left on device")
    assert "check the path" not in line  # a fault while running, not bad input
    failure = json.loads((seen / "failed" / f"{k}.json").read_text())
    assert failure["key"] == k and f"{file}/{k}" in failure["error"] and "No space left" in failure["error"]
    assert not (seen / "runs" / f"{k}.json").exists()  # not done, so the store does not say it is
    assert not scratch_left(seen) and not list(seen.rglob(".*.tmp"))
    # Space again: the rerun runs it, and it is done.
    (seen / "filler").unlink()
    again = run(argv)
    assert again.returncode == 0, again.stderr
    assert results.find(seen, config(100))[0]
    assert not (seen / "failed" / f"{k}.json").exists()


@pytest.mark.slow
def test_a_full_disk_after_the_record_keeps_the_experiment(small_disk):
    # The record and weights were written when the disk filled: the experiment is done (the
    # executed notebook is provenance, not part of the trust check), and the sweep says what it
    # could not keep.
    root = small_disk.path / "res"
    seen = small_disk.seen(root)
    argv = small_disk.argv(*cli("sweep", *RUN, "--batch-sizes", "100", "--results", str(root)))
    filler = small_disk.filler(root, "runs/*.json", 8_000)
    p = run(argv)
    assert filler.wait(timeout=60) == 0, (p.stdout, p.stderr)
    k = key(100)
    assert p.returncode == 0, p.stderr
    assert f"{k}: its notebook was not kept: cannot write" in p.stdout
    assert results.find(seen, config(100))[0] and not (seen / "failed" / f"{k}.json").exists()
    assert not scratch_left(seen) and not list(seen.rglob(".*.tmp"))


@pytest.mark.slow
def test_train_out_on_a_full_disk_is_refused_first_and_its_room_is_kept(small_disk):
    out = small_disk.path / "o" / "run.json"
    seen = small_disk.seen(out)
    subprocess.run(small_disk.argv("mkdir", "-p", str(out.parent)), check=True)
    # Full before it starts: refused before any training, naming the file and the sizes.
    assert small_disk.filler(out.parent, "", 2_000).wait(timeout=60) == 0
    t0 = time.time()
    p = run(small_disk.argv(*cli("train", *RUN, "--out", str(out))))
    last_error(p, 2, f"--out {out}", "free", "takes about")
    assert "epoch" not in p.stdout and time.time() - t0 < 120  # refused before training
    assert not seen.exists() and not list(seen.parent.glob(".*.tmp"))
    (seen.parent / "filler").unlink()
    # Full while it trains: the room taken at the start holds the record.
    filler = small_disk.filler(out.parent, ".run.json.*.tmp", 0)
    p = run(small_disk.argv(*cli("train", *RUN, "--seeds", "0-1", "--epochs", "3", "--out", str(out))))
    assert filler.wait(timeout=60) == 0
    assert p.returncode == 0, p.stderr
    record = results.read_record(seen)
    assert [len(r["history"]) for r in record["replicas"]] == [3, 3]
    assert not list(seen.parent.glob(".*.tmp"))


# ------------------------------------------------- 3, 4: what the store cannot check is not done


def _edit(root: Path, k: str, change: Callable[[dict], None]) -> None:
    p = results.path(root, "runs", k)
    rec = json.loads(p.read_text())
    change(rec)
    p.write_text(json.dumps(rec))


@pytest.mark.slow
def test_records_that_cannot_be_trusted_are_rerun_each_with_its_reason(tmp_path):
    lrs = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1]  # one group: one engine, one kernel
    base = TrainConfig(batch_size=100, epochs=1, seeds=(0, 1), train_limit=2000)
    cfg = sweep.SweepConfig(base=base, grid={"lr": lrs}, results_dir=tmp_path, workers=1)
    first = sweep.run_sweep(cfg, progress=False)
    assert first.table["status"].tolist() == ["done"] * 6
    k = first.keys
    _edit(tmp_path, k[0], lambda r: r["replicas"].pop())
    _edit(tmp_path, k[1], lambda r: r.update(replicas=[]))
    _edit(tmp_path, k[2], lambda r: r["replicas"][0].pop("status"))
    _edit(tmp_path, k[3], lambda r: r["replicas"][1]["history"][0].update(test_acc="0.9"))
    results.path(tmp_path, "models", k[5]).write_bytes(results.path(tmp_path, "models", k[4]).read_bytes())
    results.path(tmp_path, "models", k[4]).unlink()
    reasons = [
        "holds 1 replicas, not the 2 of its seeds",
        "no replicas",
        "status None",
        "without a numeric epoch and test_acc",
        "no weights file",
        "checksum",
    ]
    p = run(cli("sweep", "--grid", "lr=" + ",".join(map(str, lrs)), "--batch-size", "100", "--epochs", "1",
                "--seeds", "0-1", "--train-limit", "2000", "--workers", "1", "--no-progress",
                "--results", str(tmp_path)))  # fmt: skip
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    for key_, reason in zip(k, reasons, strict=True):
        line = next(x for x in p.stdout.splitlines() if x.startswith(f"rerunning {key_}: "))
        assert reason in line, (reason, line)
    assert all(results.find(tmp_path, c)[0] for c in cfg.experiments())


# ------------------------------------------------------------ 6: a lock held by a stopped sweep


@pytest.mark.slow
def test_a_lock_held_by_a_stopped_sweep_is_named_and_the_rest_finish(tmp_path):
    grid = ["--grid", "batch_size=100,200", "--workers", "1"]
    a = subprocess.Popen(cli("sweep", *RUN, *grid, "--results", str(tmp_path)), start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_for(lambda: len(list(tmp_path.glob("locks/*.owner"))) == 2, 120), "sweep A took no lock"
        os.kill(a.pid, signal.SIGSTOP)
        t0 = time.time()
        b = run(cli("sweep", *RUN, "--grid", "batch_size=100,200,300", "--lock-timeout", "5",
                    "--results", str(tmp_path)))  # fmt: skip
        line = last_error(b, 3, f"locks/{key(200)}.lock", f"pid {a.pid} (stopped)", "--lock-timeout")
        assert f"{key(100)}.lock is held by pid {a.pid} (stopped)" in b.stderr
        assert f"{key(100)} is held by pid {a.pid} (stopped)" in b.stdout  # said while it waits
        assert table_status(b.stdout) == {"100": "failed", "200": "failed", "300": "done"}, b.stdout
        assert time.time() - t0 < 200 and "end that process" in line
    finally:
        os.killpg(a.pid, signal.SIGKILL)  # works on a stopped process; its kernels die with it
        a.wait()
    again = run(cli("sweep", *RUN, "--grid", "batch_size=100,200,300", "--results", str(tmp_path)))
    assert again.returncode == 0, again.stderr
    assert table_status(again.stdout) == {"100": "done", "200": "done", "300": "skipped"}
    assert not scratch_left(tmp_path)


# ------------------------------------------------------------ 7, 12: a hung and a killed kernel


@pytest.mark.slow
def test_a_hung_and_a_killed_kernel_fail_their_experiments_and_leave_nothing(tmp_path):
    grid = ["--epochs", "20", "--grid", "batch_size=100,200", "--results", str(tmp_path)]
    argv = cli("sweep", *RUN, *grid, "--workers", "2", "--stall-timeout", "4")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(list(tmp_path.glob(".scratch/*/heartbeat.json"))) == 2, 180)
        kernels = kernels_of(proc.pid)
        assert len(kernels) == 2
        os.kill(kernels[0], signal.SIGSTOP)  # hung: the watchdog must see it and kill it
        os.kill(kernels[1], signal.SIGKILL)  # died: out of memory, say
        t0 = time.time()
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert time.time() - t0 < 60
    last_error((proc.returncode, err), 3, "failed")
    assert "no sign of life for 4 s (hung or stopped) and was killed" in err
    assert "its kernel died (killed, or out of memory)" in err
    assert "Kernel died while waiting" not in err and "Traceback" not in err
    assert len([x for x in err.splitlines() if x.startswith("error: ")]) == 2
    assert wait_for(lambda: not any(alive(k) for k in kernels), 10), "a kernel outlived its sweep"
    assert not scratch_left(tmp_path)
    for k in (key(100, epochs=20), key(200, epochs=20)):
        text = results.path(tmp_path, "failed", k).read_text()
        failure = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
        assert failure["key"] == k and failure["start_seconds"] is None  # never started training
    again = run(cli("sweep", *RUN, *grid))
    assert again.returncode == 0 and table_status(again.stdout) == {"100": "done", "200": "done"}


# ------------------------------------------ 8: files in the way; one experiment's fault stays its own


@pytest.mark.slow
def test_a_fifo_where_one_record_goes_fails_that_experiment_only(tmp_path):
    lrs = "lr=0.05,0.1"  # one group, one kernel: the other experiment is trained and stored all the same
    bad, good = key(100, lr=0.05), key(100, lr=0.1)
    results.path(tmp_path, "runs", bad).parent.mkdir()
    os.mkfifo(results.path(tmp_path, "runs", bad))
    argv = cli("sweep", *RUN, "--batch-size", "100", "--grid", lrs, "--results", str(tmp_path))
    p = run(argv)
    last_error(p, 3, f"experiment {bad} failed", f"runs/{bad}.json is a FIFO")
    assert f"experiment {good}" not in p.stderr
    assert results.find(tmp_path, config(100, lr=0.1))[0]
    assert results.path(tmp_path, "runs", bad).is_fifo()
    results.path(tmp_path, "runs", bad).unlink()
    again = run(argv)
    assert again.returncode == 0, again.stderr
    assert "done" in again.stdout and "skipped" in again.stdout


# ------------------------------------------------------ 9, 10: signals end a sweep like Ctrl-C


def caught(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (its /proc status's SigCgt)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(x for x in status.splitlines() if x.startswith("SigCgt:")).split()[1], 16)
    return bool(mask >> (sig - 1) & 1)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["TERM", "HUP"])
def test_sigterm_and_sighup_end_a_sweep_like_ctrl_c(tmp_path, sig, code):
    grid = ["--epochs", "20", "--grid", "batch_size=100,200,300", "--results", str(tmp_path)]
    argv = cli("sweep", *RUN, *grid, "--workers", "3")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(list(tmp_path.glob(".scratch/*/heartbeat.json"))) == 3, 180)
        kernels = kernels_of(proc.pid)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
        proc.wait()
    name = signal.Signals(sig).name
    line = last_error((proc.returncode, err), code, f"interrupted by {name}", "finished experiments are kept")
    assert err.strip() == line and "resource_tracker" not in err  # one line, nothing else
    assert kernels and wait_for(lambda: not any(alive(k) for k in kernels), 10)
    assert not scratch_left(tmp_path)
    if sig == signal.SIGTERM:  # and it resumes: what finished is skipped, the rest run
        finished = {b for b in (100, 200, 300) if results.find(tmp_path, config(b, epochs=20))[0]}
        again = run(cli("sweep", *RUN, *grid))
        assert again.returncode == 0, again.stderr
        want = {str(b): "skipped" if b in finished else "done" for b in (100, 200, 300)}
        assert table_status(again.stdout) == want


@pytest.mark.slow
def test_sigterm_ends_figures_with_one_line(tmp_path):
    res = tmp_path / "res"
    cfg = sweep.SweepConfig(
        base=TrainConfig(epochs=1, seeds=(0,), train_limit=2000), grid={"batch_size": [90]}, results_dir=res
    )
    assert not sweep.run_sweep(cfg, progress=False).failed
    proc = subprocess.Popen(
        cli("figures", "--results", str(res), "--media", str(tmp_path / "media")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert wait_for(lambda: caught(proc.pid, signal.SIGTERM), 120), "figures never took SIGTERM"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    last_error((proc.returncode, err), 143, "interrupted by SIGTERM", "rerun to draw every figure")
    assert "experiments" not in err


# ------------------------- the command at the shell: its exit status, one line, Ctrl-C and SIGTERM
# (every other fault of the command line is checked in-process: tests/integration/test_cli.py)


def test_a_refused_flag_at_the_shell_is_one_line_and_exit_status_2():
    # argparse's refusal leaves the process by SystemExit: the shell sees 2 and one line.
    p = run(cli("train", "--batchsize", "3"))
    line = last_error(p, 2, "--batchsize", "--batch-size")
    assert p.stderr.strip() == line


def test_missing_data_fails_before_any_experiment_starts(tmp_path):
    # A fresh interpreter reads MLPMNIST_DATA from its environment: main's status is the shell's.
    empty = tmp_path / "nodata"
    empty.mkdir()
    t0 = time.time()
    argv = cli("sweep", *RUN, "--batch-sizes", "100", "--results", str(tmp_path / "res"))
    env = {**os.environ, "MLPMNIST_DATA": str(empty)}
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    last_error(p, 2, str(empty), "MLPMNIST_DATA")
    assert not (tmp_path / "res" / "logs").exists()  # no kernel was started
    assert not (empty / "MNIST").exists()  # and nothing was created in the data folder
    assert time.time() - t0 < 60


@pytest.mark.parametrize(
    "sig,code,out", [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, True)], ids=["INT", "TERM"]
)
def test_an_interrupted_train_says_it_kept_nothing(tmp_path, sig, code, out):
    target = tmp_path / "run.json"
    proc = subprocess.Popen(
        cli("train", "--batch-size", "8", "--epochs", "200", "--seeds", "0")
        + ["--threads", "1", "--train-limit", "8000"]
        + (["--out", str(target)] if out else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert "epoch" in proc.stdout.readline()  # the first epoch's line: it is training
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    line = last_error((proc.returncode, err), code)
    if out:
        assert line == f"error: interrupted by SIGTERM; --out {target} was not written"
        assert not list(tmp_path.iterdir())  # nor its reserved room
    else:
        assert line == "error: interrupted by Ctrl-C; nothing was kept"


# ---------------------------------------------------------------- 12: a results folder deleted


@pytest.mark.slow
def test_a_results_folder_deleted_mid_run_ends_without_pointing_at_missing_files(tmp_path):
    import shutil

    root = tmp_path / "res"
    argv = cli("sweep", *RUN, "--epochs", "100", "--batch-sizes", "100", "--results", str(root))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: list(root.glob(".scratch/*/heartbeat.json")), 180)
        shutil.rmtree(root)
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
        proc.wait()
    # The kernel goes on and writes the experiment's record and weights afresh (the executed
    # notebook's folder is gone, and with it only provenance): the experiment is done and trusted;
    # where a kernel cannot, it fails with one line that points at nothing missing.
    assert "Traceback" not in err and proc.returncode in (0, 3), err
    if proc.returncode == 0:
        assert results.find(root, config(100, epochs=100))[0]
    else:
        line = last_error((proc.returncode, err), 3, f"experiment {key(100, epochs=100)} failed")
        assert "; see " not in line
    assert not scratch_left(root)


# --------------------------------------------------------------- the kernels' logs stay clean


def test_a_kernel_is_not_sent_sigint_when_it_is_shut_down(tmp_path):
    """jupyter_client interrupts a kernel before its shutdown request; a kernel inside a message
    handler then logs 'KeyboardInterrupt caught in kernel'. The job's kernels are not."""

    async def shut_down() -> tuple[int, int]:
        with open(tmp_path / "kernel.log", "w") as log:
            km = jobs.kernel_manager(log, [])(kernel_name="python3")
            await km.start_kernel()
            kc = km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=120)
                # An interrupt while idle now writes a line to the log (the kernel's stderr).
                code = (
                    "import os\n"
                    "get_ipython().kernel.saved_sigint_handler = lambda *a: os.write(2, b'SIGINT\\n')"
                )
                await kc.execute_interactive(code, timeout=60)
                await km.interrupt_kernel()  # the probe works: an interrupt is seen
                assert wait_for(lambda: "SIGINT" in (tmp_path / "kernel.log").read_text(), 10)
            finally:
                kc.stop_channels()
            before = (tmp_path / "kernel.log").read_text().count("SIGINT")
            await km.shutdown_kernel()
            return before, (tmp_path / "kernel.log").read_text().count("SIGINT")

    before, after = asyncio.run(shut_down())
    assert before == 1 and after == 1
