"""The papermill sweep on real MNIST: grids, resume, isolation, concurrency, Dask and process death."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from procs import alive, children, wait_for

from mlpmnist import TrainConfig, sweep
from mlpmnist import store as results
from mlpmnist.sweep import experiment

SMALL = dict(epochs=1, seeds=(0, 1), train_limit=3000, threads=1)


def small_sweep(root, grid, notebook=None, **kw) -> sweep.SweepConfig:
    base = TrainConfig(**{**SMALL, **kw.pop("base", {})})
    return sweep.SweepConfig(base=base, grid=grid, results_dir=root, notebook=notebook, **kw)


def statuses(outcome) -> list[str]:
    return outcome.table["status"].tolist()


@pytest.mark.slow  # about 20 s
def test_grid_sweep_keeps_both_lrs_skips_reruns_and_reruns_only_changes(tmp_path):
    cfg = small_sweep(tmp_path, {"batch_size": [100], "lr": [0.05, 0.1]})
    out = sweep.run_sweep(cfg, progress=False)
    assert statuses(out) == ["done", "done"] and not out.failed
    df = out.frame()
    assert sorted(df["lr"].unique()) == [0.05, 0.1] and df.groupby("lr")["seed"].nunique().tolist() == [2, 2]
    for key in out.keys:
        nb = nbformat.read(results.path(tmp_path, "notebooks", key), as_version=4)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert key in "".join(str(o) for c in nb.cells for o in c.get("outputs", []))
        assert set(results.load_models(results.path(tmp_path, "models", key))) == {0, 1}
        log = results.path(tmp_path, "logs", key).read_text()
        # The kernel's own stderr lands here (the faults tests read what a dying kernel says), not
        # ipykernel's start-up warning about TCP without encryption, which opened every log.
        assert "without encryption" not in log
        assert "KeyboardInterrupt" not in log  # a kernel that did its work is not interrupted
        assert "WARNING" not in json.dumps(nb.dict())
    assert statuses(sweep.run_sweep(cfg, progress=False)) == ["skipped", "skipped"]
    # Change one field of one grid point: only that experiment runs.
    changed = small_sweep(tmp_path, {"batch_size": [100], "lr": [0.05, 0.2]})
    again = sweep.run_sweep(changed, progress=False)
    assert statuses(again) == ["skipped", "done"]
    assert len(results.load(tmp_path)["key"].unique()) == 3
    assert set(again.frame()["lr"]) == {0.05, 0.2}  # the sweep's own experiments only


def test_a_grid_runs_over_optimizers(tmp_path):
    # An optimizer is one field: a grid over it runs in a sweep, each point its own experiment.
    grid = sweep.SweepConfig(
        base=TrainConfig(epochs=1, seeds=(0,), train_limit=2000, batch_size=100),
        grid={"optimizer": ["sgd", "adam"], "lr": [0.001, 0.1]},
        results_dir=tmp_path,
    )
    out = sweep.run_sweep(grid, progress=False)
    assert statuses(out) == ["done"] * 4
    assert sorted(set(out.frame()["optimizer"])) == ["adam", "sgd"]


def notebook_with(tmp_path: Path, code: str) -> Path:
    """The experiment notebook with ``code`` run right after its parameters cell."""
    nb = nbformat.read(experiment.notebook_path(), as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(code))
    path = tmp_path / "nb" / "experiment.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    return path


@pytest.mark.slow  # about 20 s
def test_a_failing_job_is_isolated_and_retried(tmp_path):
    # Two groups, two jobs: the one holding batch 200 breaks; batch 100's job is not touched.
    nb = notebook_with(
        tmp_path,
        "if any(c['batch_size'] == 200 for c in configs):\n    raise RuntimeError('batch 200 broke')",
    )
    res = tmp_path / "res"
    cfg = small_sweep(res, {"batch_size": [100, 200], "lr": [0.05, 0.1]}, notebook=nb, workers=2)
    out = sweep.run_sweep(cfg, progress=False)
    bad = [TrainConfig(**{**SMALL, "batch_size": 200, "lr": lr}).key() for lr in (0.05, 0.1)]
    assert sorted(out.failed) == sorted(bad) and all("batch 200 broke" in out.failed[k] for k in bad)
    assert statuses(out) == ["done", "done", "failed", "failed"]
    for k in bad:
        assert "batch 200 broke" in json.loads(results.path(res, "failed", k).read_text())["error"]
        assert results.path(res, "notebooks", k).is_file()  # the executed notebook shows where it broke
    assert not (res / ".scratch").exists() or not any((res / ".scratch").iterdir())
    assert statuses(sweep.run_sweep(cfg, progress=False)) == ["skipped", "skipped", "failed", "failed"]


def test_a_diverging_member_is_done_with_its_failed_seeds(tmp_path):
    # One engine trains the three lrs; lr 1e4 diverges. Its experiment finished: it is done, with
    # both seeds failed, as the notebook, the CLI and the tables all say; it is not rerun.
    cfg = small_sweep(tmp_path, {"batch_size": [100], "lr": [0.05, 1e4, 0.1]}, workers=1)
    out = sweep.run_sweep(cfg, progress=False)
    bad = TrainConfig(**{**SMALL, "batch_size": 100, "lr": 1e4}).key()
    assert out.failed == {} and out.failed_seeds == {bad: [0, 1]}
    assert statuses(out) == ["done", "done", "done"] and out.table["failed_seeds"].tolist() == [0, 2, 0]
    record = results.trusted(tmp_path, bad).record
    assert record["diverged"] == [0, 1] and "diverged at step" in record["note"]
    again = sweep.run_sweep(cfg, progress=False)
    assert statuses(again) == ["skipped", "skipped", "skipped"] and again.failed_seeds == {bad: [0, 1]}


def test_typo_in_a_notebook_parameter_is_refused(tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(
            str(experiment.notebook_path()),
            str(tmp_path / "out.ipynb"),
            parameters={"batchsize": 32, "results_dir": str(tmp_path)},
            kernel_name="python3",
            progress_bar=False,
        )
    assert e.value.ename == "ValueError"
    assert "unknown experiment parameter 'batchsize' (did you mean 'batch_size'?)" in e.value.evalue
    assert "valid: config, configs, data_dir, results_dir" in e.value.evalue
    assert not (tmp_path / "runs").exists()


def test_notebook_by_hand_takes_fields_directly(tmp_path):
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(
        str(experiment.notebook_path()),
        str(out),
        parameters={
            "batch_size": 250,
            "seeds": "0-1",
            "epochs": 1,
            "train_limit": 2000,
            "results_dir": str(tmp_path),
        },
        kernel_name="python3",
        progress_bar=False,
    )
    key = TrainConfig(batch_size=250, seeds=(0, 1), epochs=1, train_limit=2000).key()
    assert results.read_record(results.path(tmp_path, "runs", key))["config"]["batch_size"] == 250
    # Written into the store as a sweep writes: the next sweep trusts it and skips it (the m7),
    # though the store holds no notebooks/<key>.ipynb for it (its notebook is provenance only).
    assert not results.path(tmp_path, "notebooks", key).exists()
    again = sweep.run_sweep(
        small_sweep(tmp_path, {"batch_size": [250]}, base={"train_limit": 2000}), progress=False
    )
    assert statuses(again) == ["skipped"]


def test_two_sweeps_at_once_share_one_directory(tmp_path):
    # Both sweeps contain batch 100, lr 0.1; each has one experiment of its own.
    a = small_sweep(tmp_path, {"batch_size": [100], "lr": [0.1, 0.05]}, workers=1)
    b = small_sweep(tmp_path, {"batch_size": [100], "lr": [0.1, 0.2]}, workers=1)
    outs = {}
    threads = [
        threading.Thread(
            target=lambda n, c: outs.__setitem__(n, sweep.run_sweep(c, progress=False)), args=(n, c)
        )
        for n, c in (("a", a), ("b", b))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    shared = TrainConfig(**{**SMALL, "batch_size": 100, "lr": 0.1}).key()
    rows = {n: dict(zip(o.table["key"], o.table["status"], strict=True)) for n, o in outs.items()}
    assert not outs["a"].failed and not outs["b"].failed
    assert sorted([rows["a"][shared], rows["b"][shared]]) == ["done", "skipped"]  # ran exactly once
    for key in {*rows["a"], *rows["b"]}:
        rec = results.read_record(results.path(tmp_path, "runs", key))
        nb = nbformat.read(results.path(tmp_path, "notebooks", key), as_version=4)
        weights = results.load_models(results.path(tmp_path, "models", key))
        assert rec["key"] == key and sorted(weights) == [0, 1]
        # The notebook printed this experiment's key and its record's accuracy: one run made all three.
        text = json.dumps(nb.dict())
        assert key in text and f"({rec['seconds']:.1f} s)" in text


def sweep_cli(root: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mlpmnist", "sweep", "--grid", "batch_size=100,200,300", "--epochs", "1",
        "--seeds", "0", "--train-limit", "3000", "--threads", "1", "--no-progress",
        "--results", str(root), *extra,
    ]  # fmt: skip


def test_killed_sweep_loses_nothing_and_resumes(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        sweep_cli(tmp_path, "--workers", "1"), env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    runs = tmp_path / "runs"
    # One job trains the three groups; each is done (notebook copied) as soon as its record appears.
    assert wait_for(lambda: list(tmp_path.glob("notebooks/*.ipynb")), 240), "no experiment finished in time"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(runs.glob("*.json"))
    # Everything visible is complete; partial files, if any, are hidden temporaries.
    for p in tmp_path.rglob("*"):
        if p.is_file() and not p.name.startswith(".") and ".scratch" not in p.parts:
            if p.suffix == ".json":
                results.read_record(p)
            elif p.suffix == ".ipynb":
                nbformat.read(p, as_version=4)
    done_before = {p.stem for p in finished if results.path(tmp_path, "notebooks", p.stem).is_file()}
    assert done_before
    mtimes = {k: results.path(tmp_path, "runs", k).stat().st_mtime_ns for k in done_before}
    cfg = small_sweep(tmp_path, {"batch_size": [100, 200, 300]}, base={"seeds": (0,)}, workers=1)
    out = sweep.run_sweep(cfg, progress=False)
    status = dict(zip(out.table["key"], out.table["status"], strict=True))
    assert not out.failed and all(status[k] == "skipped" for k in done_before)
    assert all(results.path(tmp_path, "runs", k).stat().st_mtime_ns == m for k, m in mtimes.items())
    assert len(out.frame()["key"].unique()) == 3
    assert not any((tmp_path / ".scratch").glob("*"))  # the killed run's scratch folder is gone


def test_kernels_die_with_a_killed_sweep_and_the_next_sweep_clears_its_scratch(tmp_path):
    proc = subprocess.Popen(
        sweep_cli(tmp_path, "--workers", "2"), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert wait_for(lambda: (tmp_path / ".scratch").is_dir() and any((tmp_path / ".scratch").iterdir()), 120)
    # Other children come and go (git, for the records' provenance): wait for the kernels themselves.
    assert wait_for(lambda: children(proc.pid, b"ipykernel"), 60)
    kernels = children(proc.pid, b"ipykernel")
    os.kill(proc.pid, signal.SIGKILL)  # the main process alone
    proc.wait()
    assert wait_for(lambda: not any(alive(p) for p in kernels), 30), "kernels outlived the sweep"
    assert any((tmp_path / ".scratch").iterdir())  # nobody was left to clear it...
    cfg = small_sweep(tmp_path, {"batch_size": [100, 200, 300]}, base={"seeds": (0,)}, workers=2)
    out = sweep.run_sweep(cfg, progress=False)
    assert not out.failed
    assert not any((tmp_path / ".scratch").glob("*"))  # ...until the next sweep


def test_ctrl_c_stops_the_sweep_with_130(tmp_path):
    proc = subprocess.Popen(
        sweep_cli(tmp_path, "--workers", "2"), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert wait_for(lambda: (tmp_path / ".scratch").is_dir() and any((tmp_path / ".scratch").iterdir()), 120)
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip() == (
        "error: interrupted by Ctrl-C; finished experiments are kept, and unfinished ones resume from their "
        "last finished epoch: rerun to resume"
    )
    assert wait_for(lambda: not any(alive(p) for p in workers), 30)
    assert not any((tmp_path / ".scratch").glob("*"))  # every job cleared its scratch folder


@pytest.mark.slow  # about 20 s
def test_dask_worker_with_two_threads_keeps_logs_apart(tmp_path):
    from distributed import LocalCluster

    # A cell that writes its batch size to the kernel's own stderr (fd 2).
    mark = "import os as _os\n_os.write(2, f\"MARK batch={configs[0]['batch_size']}\\n\".encode())"
    nb = notebook_with(tmp_path, mark)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:  # fmt: skip
        cfg = small_sweep(tmp_path / "res", {"batch_size": [100, 200]}, notebook=nb,
                          scheduler=cluster.scheduler_address)  # fmt: skip
        out = sweep.run_sweep(cfg, progress=False)
    assert statuses(out) == ["done", "done"]  # two groups, two jobs, one per worker thread
    for key, batch in zip(out.keys, (100, 200), strict=True):
        log = results.path(tmp_path / "res", "logs", key).read_text()
        assert log.count("MARK") == 1 and f"MARK batch={batch}" in log


def dask_cluster(port: int) -> tuple[subprocess.Popen, subprocess.Popen, str]:
    """A real scheduler and one worker (no nanny, so a killed worker stays dead), as processes."""
    sched = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", ":0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    address = f"tcp://127.0.0.1:{port}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--no-nanny", "--nthreads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    return sched, worker, address


@pytest.mark.parametrize("lost", [pytest.param("worker", marks=pytest.mark.slow), "scheduler"])
def test_dask_sweep_ends_when_its_cluster_goes_away(tmp_path, lost):
    sched, worker, address = dask_cluster(8700 + os.getpid() % 100 + (lost == "scheduler") * 100)
    try:
        proc = subprocess.Popen(
            sweep_cli(tmp_path, "--scheduler", address, "--worker-timeout", "10", "--epochs", "3"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert wait_for(
            lambda: (tmp_path / ".scratch").is_dir() and any((tmp_path / ".scratch").iterdir()), 120
        )
        os.killpg((worker if lost == "worker" else sched).pid, signal.SIGKILL)
        t0 = time.time()
        _, err = proc.communicate(timeout=120)
        assert time.time() - t0 < 60
        assert proc.returncode == 3 and "Traceback" not in err
        line = err.strip().splitlines()[-1]
        expected = "no Dask worker for 10 s" if lost == "worker" else "lost the Dask scheduler"
        assert expected in line and "not done: bs0" in line and "rerun to resume" in line
    finally:
        for p in (worker, sched):
            p.kill()
            p.wait()
