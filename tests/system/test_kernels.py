"""The workbench in real kernels, as JupyterLab shows it: the sweep drawing itself (each running
experiment's epoch, then its outcome in the package's words), one-line errors for bad parameters
and for the Colab install cell, and the tracebacks other errors keep."""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


LIVE = """
import json
from mlpmnist.workbench import live
from mlpmnist.sweep.run import SweepConfig
from mlpmnist.config import TrainConfig
cfg = SweepConfig(
    base=TrainConfig(epochs=3, seeds=(0,)),
    grid={{"batch_size": [20, 25]}},
    results_dir={results!r},
    workers=2,
)
outcome = live.run_sweep(cfg, progress=False)
print(json.dumps(sorted(outcome.table["status"])))
"""


@pytest.mark.slow
def test_the_sweep_draws_itself_in_a_kernel(tmp_path):
    """In a real kernel, as JupyterLab shows it: the figure and the table are displayed, then
    updated once per finished experiment, and end as the sweep's outcome."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        kc.execute("%matplotlib inline\n" + textwrap.dedent(LIVE.format(results=str(tmp_path / "res"))))
        msgs, t0 = [], time.time()
        while time.time() - t0 < 300:
            msg = kc.get_iopub_msg(timeout=300)
            msgs.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert not errors, errors
    shown = [m for m in msgs if m["msg_type"] == "display_data"]
    updates = [m for m in msgs if m["msg_type"] == "update_display_data"]
    assert len(shown) == 3  # the status line, the figure, the table
    figure_id = shown[1]["content"]["transient"]["display_id"]
    figures = [m for m in updates if m["content"]["transient"]["display_id"] == figure_id]
    # One redraw per finished experiment, then the final one; each after the first has the figure.
    assert len(figures) == 3 and all("image/png" in m["content"]["data"] for m in figures)
    status_id, table_id = (shown[i]["content"]["transient"]["display_id"] for i in (0, 2))
    status = [
        m["content"]["data"]["text/plain"]
        for m in updates
        if m["content"]["transient"]["display_id"] == status_id
    ]
    tables = [
        m["content"]["data"]["text/plain"]
        for m in updates
        if m["content"]["transient"]["display_id"] == table_id
    ]
    # While they train, the table shows each running experiment's epoch (the m3).
    assert any(re.search(r"epoch [12] of 3", t) for t in tables), tables
    assert any(" running" in s and not s.startswith("2 of 2") for s in status), status
    assert status[-1] == "2 of 2 experiments done, 0 failed; no failed seeds"
    assert "waiting" not in tables[-1] and tables[-1].count("done") == 2 and "seconds" not in tables[-1]
    out = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
    assert '["done", "done"]' in out
    err = "".join(
        m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
    )
    assert re.search(r"^sweep: \d+ s$", err, re.MULTILINE), err  # the run's timing: on stderr only


# ---------------------------------------------------------------------------- bad input in a notebook


@pytest.mark.slow
def test_a_bad_parameter_ends_in_one_line(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(
            str(ROOT / "run.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={"batch_sizes": [32, 64], "model_batch_size": 7, "results_dir": str(tmp_path / "r")},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(tmp_path),
        )
    shown = "\n".join(e.value.traceback)
    assert "model_batch_size 7 is not one of batch_sizes [32, 64]" in shown
    assert "Traceback" not in shown and "study.py" not in shown and len(e.value.traceback) == 1
    assert not (tmp_path / "r").exists()  # refused before anything was made


@pytest.mark.slow
def test_other_errors_keep_their_traceback(tmp_path):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        kc.execute_interactive(
            "from mlpmnist.workbench import notebook\nassert notebook.one_line_errors()", timeout=60
        )
        replies = {}
        for code in ("int('x')", "from mlpmnist import TrainConfig\nTrainConfig(batch_size=0)"):
            errors = []
            kc.execute_interactive(code, timeout=60, output_hook=lambda m, errors=errors: errors.append(m))
            (err,) = [m["content"] for m in errors if m["msg_type"] == "error"]
            replies[code] = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err["traceback"]))  # no colours
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert "invalid literal for int()" in replies["int('x')"] and "Cell In[" in replies["int('x')"]
    config_error = replies["from mlpmnist import TrainConfig\nTrainConfig(batch_size=0)"]
    assert "batch_size must be" in config_error and "Cell In[" not in config_error


def test_the_colab_install_cell_stops_in_one_line(tmp_path):
    """run.ipynb's install cell in a kernel without the package: one line saying what to do."""
    from jupyter_client.manager import start_new_kernel

    cells = nbformat.read(ROOT / "run.ipynb", as_version=4).cells
    cell = next(c for c in cells if c.cell_type == "code" and "SetupError" in c.source)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    replies = {}
    try:
        for source in ("", str(tmp_path / "nothing-here")):
            # The package made unimportable, as in a fresh Colab runtime.
            setup = f"import sys\nsys.modules['mlpmnist'] = None\npackage_source = {source!r}"
            kc.execute_interactive(setup, timeout=60)
            msgs: list = []
            kc.execute_interactive(cell.source, timeout=300, output_hook=msgs.append)
            (err,) = [m["content"] for m in msgs if m["msg_type"] == "error"]
            replies[source] = err["traceback"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    (empty,) = replies[""]
    assert empty.startswith("error: mlpmnist is not installed in this kernel: set package_source")
    (missing,) = replies[str(tmp_path / "nothing-here")]
    assert missing.startswith(f"error: pip could not install '{tmp_path / 'nothing-here'}' (")
