import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from mlpmnist import results, sweep

SMALL = dict(epochs=1, seeds=(0, 1), train_limit=3000, threads=1)


def test_small_sweep_end_to_end_and_tidy_results(tmp_path):
    cfg = sweep.SweepConfig(batch_sizes=(90, 128), workers=2, results_dir=tmp_path, **SMALL)
    out = sweep.run_sweep(cfg, progress=False)
    assert not out.failed and out.table["status"].tolist() == ["done", "done"]
    for bs in (90, 128):
        nb = nbformat.read(sweep.notebook_path(tmp_path, bs), as_version=4)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert set(results.load_models(results.models_path(tmp_path, bs))) == {0, 1}
        assert sweep.log_path(tmp_path, bs).is_file()  # the kernel's stderr, kept out of ours
    df = results.load(tmp_path)
    assert len(df) == 2 * 2 * 1
    assert df.groupby("batch_size")["seed"].nunique().tolist() == [2, 2]
    assert df["test_acc"].between(0.3, 1.0).all()
    s = results.summary(df)
    assert s["batch_size"].tolist() == [90, 128] and (s["n_seeds"] == 2).all()
    assert (s["test_acc_ci95"] > 0).all() and (s["best_epoch"] == 1).all()
    # The same sweep again does nothing.
    again = sweep.run_sweep(cfg, progress=False)
    assert again.table["status"].tolist() == ["skipped", "skipped"]
    # A changed config is not the same experiment.
    changed = sweep.SweepConfig(batch_sizes=(90,), workers=1, results_dir=tmp_path, **{**SMALL, "epochs": 2})
    assert not sweep.is_done(tmp_path, changed.experiment(90))
    # The figures command draws everything, the model figures from the batch-90 weights.
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlpmnist",
            "figures",
            "--results",
            str(tmp_path),
            "--media",
            str(tmp_path / "media"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    pngs = sorted(f.name for f in (tmp_path / "media").glob("*.png"))
    assert {"accuracy_vs_epoch.png", "predictions_last10.png", "confusion_matrix.png"} <= set(pngs)
    assert all((tmp_path / "media" / f).stat().st_size > 10_000 for f in pngs)


def test_killed_sweep_loses_nothing_and_resumes(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "mlpmnist",
        "sweep",
        "--batch-sizes",
        "100",
        "200",
        "300",
        "--epochs",
        "1",
        "--seeds",
        "0",
        "--train-limit",
        "3000",
        "--threads",
        "1",
        "--workers",
        "1",
        "--no-progress",
        "--results",
        str(tmp_path),
    ]
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    runs = tmp_path / results.RUNS_DIR
    deadline = time.time() + 240
    while time.time() < deadline and not (runs.is_dir() and list(runs.glob("*.json"))):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(runs.glob("*.json"))
    assert finished, "no experiment finished before the deadline"
    # Everything visible is complete; partial files, if any, are hidden temporaries.
    for p in tmp_path.rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            if p.suffix == ".json":
                results.read_record(p)
            elif p.suffix == ".ipynb":
                nbformat.read(p, as_version=4)
    before = {p.name: p.stat().st_mtime_ns for p in finished}
    cfg = sweep.SweepConfig(
        batch_sizes=(100, 200, 300),
        workers=1,
        results_dir=tmp_path,
        epochs=1,
        seeds=(0,),
        train_limit=3000,
        threads=1,
    )
    out = sweep.run_sweep(cfg, progress=False)
    status = dict(zip(out.table["batch_size"], out.table["status"]))
    assert not out.failed and set(status.values()) <= {"done", "skipped"}
    assert sum(v == "skipped" for v in status.values()) >= len([n for n in before if n.endswith(".json")]) - 1
    for name, mtime in before.items():
        bs = int(name[5:9])
        if sweep.notebook_path(tmp_path, bs).is_file() and status[bs] == "skipped":
            assert (runs / name).stat().st_mtime_ns == mtime
    assert len(results.load(tmp_path)) == 3


def failing_notebook(tmp_path: Path, bad_batch: int) -> Path:
    nb = nbformat.read(sweep.default_notebook(), as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(
        i + 1,
        nbformat.v4.new_code_cell(
            f"if batch_size == {bad_batch}:\n    raise RuntimeError('experiment {bad_batch} broke')"
        ),
    )
    path = tmp_path / "nb" / "experiment.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    return path


def test_one_failing_experiment_is_isolated(tmp_path):
    nb = failing_notebook(tmp_path, 128)
    res = tmp_path / "res"
    cfg = sweep.SweepConfig(batch_sizes=(64, 128, 256), workers=2, results_dir=res, notebook=nb, **SMALL)
    out = sweep.run_sweep(cfg, progress=False)
    assert list(out.failed) == [128] and "experiment 128 broke" in out.failed[128]
    status = dict(zip(out.table["batch_size"], out.table["status"]))
    assert status == {64: "done", 128: "failed", 256: "done"}
    failure = json.loads(sweep.failure_path(res, 128).read_text())
    assert "experiment 128 broke" in failure["error"]
    assert sweep.notebook_path(res, 128).is_file()  # the executed notebook shows where it broke
    # A rerun retries only the failed one.
    again = sweep.run_sweep(cfg, progress=False)
    assert dict(zip(again.table["batch_size"], again.table["status"])) == status | {
        64: "skipped",
        256: "skipped",
    }


def test_bad_parameter_through_papermill_gives_package_error(tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(
            str(sweep.default_notebook()),
            str(tmp_path / "out.ipynb"),
            parameters={"batch_size": 0, "out_dir": str(tmp_path)},
            kernel_name="python3",
            progress_bar=False,
        )
    assert e.value.ename == "ValueError" and "batch_size must be an integer in [1, 60000]" in e.value.evalue
    assert not (tmp_path / "runs").exists()


def test_sweep_config_rejects_bad_values():
    with pytest.raises(ValueError, match="batch_size must be"):
        sweep.SweepConfig(batch_sizes=(8, 0))
    with pytest.raises(ValueError, match="workers must be"):
        sweep.SweepConfig(workers=0)
    with pytest.raises(ValueError, match="batch_sizes must be"):
        sweep.SweepConfig(batch_sizes=(8, 8))
    with pytest.raises(ValueError, match="batch_sizes must be a list"):
        sweep.SweepConfig(batch_sizes="[8, 16]")  # papermill -p passes a string
    with pytest.raises(ValueError, match="seeds must be"):
        sweep.SweepConfig(seeds="[0, 1]")


def test_dask_local_cluster(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        cfg = sweep.SweepConfig(
            batch_sizes=(100, 200), results_dir=tmp_path, scheduler=cluster.scheduler_address, **SMALL
        )
        out = sweep.run_sweep(cfg, progress=False)
    assert not out.failed and out.table["status"].tolist() == ["done", "done"]
    assert len(results.load(tmp_path)) == 2 * 2
