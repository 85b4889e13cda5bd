"""Run records on disk (atomic JSON) and the tidy DataFrame every notebook and plot uses."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .train import TrainResult

RECORD_VERSION = 1
RUNS_DIR = "runs"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename,
    so a reader never sees a half-written file. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write_bytes`` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode())


def _clean(v: object) -> object:
    # JSON has no NaN/inf; a diverged replica's metrics become null.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return _clean(v.item())
    return v


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers."""
    import sklearn
    import torchvision

    from . import __version__

    return {
        "mlpmnist": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "sklearn": sklearn.__version__,
    }


def make_record(result: TrainResult) -> dict:
    """The JSON-ready record of one training call: config, per-replica history, versions,
    device, total seconds and an ``error`` (None, or a message naming diverged seeds)."""
    history: dict[str, list[dict]] = {}
    for row in result.history.to_dict("records"):
        key = f"{row['seed']}@{row['lr']}"
        history.setdefault(key, []).append({k: _clean(v) for k, v in row.items()})
    error = None
    if result.diverged:
        error = (
            f"seed(s) {result.diverged} diverged (loss became NaN/inf) at lr={result.config.lr}; "
            "lower the learning rate"
        )
    return {
        "version": RECORD_VERSION,
        "config": result.config.to_dict(),
        "replicas": [
            {"seed": s, "lr": lr, "history": history.get(f"{s}@{lr}", [])}
            for s, lr in zip(result.config.seeds, result.config.lrs)
        ],
        "versions": versions(),
        "device": result.device,
        "seconds": result.seconds,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "error": error,
    }


def write_record(record: dict, path: str | os.PathLike) -> Path:
    """Atomically write a run record as JSON; returns the path."""
    return atomic_write_text(path, json.dumps(record, indent=1, allow_nan=False) + "\n")


def read_record(path: str | os.PathLike) -> dict:
    """Read a run record; raise ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable run record: {e}") from e
    if not isinstance(record, dict) or "config" not in record or "replicas" not in record:
        raise ValueError(f"{path} is not a run record (no 'config'/'replicas'); delete it or rerun")
    return record


COLUMNS = [
    "batch_size",
    "seed",
    "lr",
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "seconds",
    "diverged",
]


def frame(records: list[dict]) -> pd.DataFrame:
    """Tidy DataFrame: one row per batch_size x seed (x lr) x epoch of the given records."""
    rows = []
    for rec in records:
        bs = rec["config"]["batch_size"]
        for rep in rec["replicas"]:
            for h in rep["history"]:
                rows.append({"batch_size": bs, **h})
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    num = [c for c in df.columns if c.endswith(("_loss", "_acc"))]
    df[num] = df[num].astype(float)
    df["diverged"] = df["diverged"].astype(bool)
    lead = [c for c in COLUMNS if c in df.columns]
    df = df[lead + [c for c in df.columns if c not in lead]]
    return df.sort_values(["batch_size", "lr", "seed", "epoch"], ignore_index=True)


def load(results_dir: str | os.PathLike) -> pd.DataFrame:
    """Every run record under ``results_dir/runs`` (or ``results_dir`` itself) as one tidy frame.

    Columns: batch_size, seed, lr, epoch, train_loss, train_acc, test_loss, test_acc (losses
    in nats, accuracies as fractions in [0, 1]), seconds, eval_seconds, diverged (and
    val_loss/val_acc where a holdout was used).
    """
    root = Path(results_dir)
    runs = root / RUNS_DIR if (root / RUNS_DIR).is_dir() else root
    paths = sorted(runs.glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no run records (*.json) in {runs}; run a sweep or the CLI first")
    return frame([read_record(p) for p in paths])


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per batch size: final-epoch test accuracy mean, std, 95% CI half-width (Student t, over
    seeds), n_seeds, n_diverged, and the best epoch (highest mean test accuracy) with its mean.
    Accuracies are fractions in [0, 1]."""
    from scipy import stats

    out = []
    for bs, g in df.groupby("batch_size"):
        last = g.loc[g.groupby(["seed", "lr"])["epoch"].idxmax()]
        ok = last[~last["diverged"]]
        acc = ok["test_acc"].to_numpy()
        n = len(acc)
        std = float(acc.std(ddof=1)) if n > 1 else float("nan")
        ci = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
        by_epoch = g[~g["diverged"]].groupby("epoch")["test_acc"].mean()
        out.append(
            {
                "batch_size": bs,
                "final_epoch": int(g["epoch"].max()),
                "test_acc_mean": float(acc.mean()) if n else float("nan"),
                "test_acc_std": std,
                "test_acc_ci95": ci,
                "n_seeds": n,
                "n_diverged": int(last["diverged"].sum()),
                "best_epoch": int(by_epoch.idxmax()) if len(by_epoch) else -1,
                "best_epoch_acc": float(by_epoch.max()) if len(by_epoch) else float("nan"),
            }
        )
    return pd.DataFrame(out)


MODELS_DIR = "models"


def models_path(results_dir: str | os.PathLike, batch_size: int) -> Path:
    """Where the sweep keeps the final weights of one batch size's replicas."""
    return Path(results_dir) / MODELS_DIR / f"batch{batch_size:04d}.pt"


def save_models(result: TrainResult, path: str | os.PathLike) -> Path:
    """Atomically save the final weights of every replica (None for diverged ones)."""
    import io

    payload = {
        "config": result.config.to_dict(),
        "seeds": list(result.config.seeds),
        "lrs": list(result.config.lrs),
        "state_dicts": result.state_dicts,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_models(path: str | os.PathLike) -> dict[int, torch.nn.Module]:
    """Seed -> trained ``MLP`` (eval mode, CPU) from a file written by ``save_models``;
    diverged replicas are left out. Loaded with ``weights_only=True``."""
    from .model import MLP

    payload = torch.load(path, map_location="cpu", weights_only=True)
    hidden = tuple(payload["config"]["hidden"])
    models = {}
    for seed, sd in zip(payload["seeds"], payload["state_dicts"]):
        if sd is None:
            continue
        m = MLP(hidden)
        m.load_state_dict(sd)
        models[seed] = m.eval()
    return models


def per_epoch_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per batch size and epoch: mean over non-diverged seeds of the losses (nats) and
    accuracies (percent), the test-accuracy standard deviation (points) and the replica count."""
    g = df[~df["diverged"]].groupby(["batch_size", "epoch"])
    table = pd.DataFrame(
        {
            "train_loss": g["train_loss"].mean().round(4),
            "train_acc_%": (100 * g["train_acc"].mean()).round(2),
            "test_loss": g["test_loss"].mean().round(4),
            "test_acc_%": (100 * g["test_acc"].mean()).round(2),
            "test_acc_sd": (100 * g["test_acc"].std()).round(2),
            "replicas": g["seed"].count(),
        }
    )
    return table


def summary_table(summ: pd.DataFrame) -> pd.DataFrame:
    """``summary`` for reading: final test accuracy as 'mean ± 95% CI' in percent per batch size."""
    return pd.DataFrame(
        {
            "batch size": summ["batch_size"],
            "final test acc (%)": [
                f"{100 * m:.2f} ± {100 * c:.2f}" for m, c in zip(summ["test_acc_mean"], summ["test_acc_ci95"])
            ],
            "sd (points)": (100 * summ["test_acc_std"]).round(2),
            "seeds": summ["n_seeds"],
            "diverged": summ["n_diverged"],
            "best epoch": summ["best_epoch"],
            "best-epoch acc (%)": (100 * summ["best_epoch_acc"]).round(2),
        }
    )


def conclusions(summ: pd.DataFrame) -> list[str]:
    """Plain-language findings computed from ``summary``: the best and worst batch sizes with
    their means and CIs, whether their CIs overlap, and where accuracy peaks in epochs."""
    s = summ.dropna(subset=["test_acc_mean"]).sort_values("test_acc_mean", ascending=False)
    if s.empty:
        return ["No finished, non-diverged runs to summarise."]
    best, worst = s.iloc[0], s.iloc[-1]

    def fmt(r: pd.Series) -> str:
        return f"batch {int(r.batch_size)}: {100 * r.test_acc_mean:.2f}% ± {100 * r.test_acc_ci95:.2f}"

    lines = [f"Highest final test accuracy: {fmt(best)} (mean ± 95% CI over {int(best.n_seeds)} seeds)."]
    if len(s) > 1:
        lines.append(
            f"Lowest: {fmt(worst)}; the range across batch sizes is "
            f"{100 * (best.test_acc_mean - worst.test_acc_mean):.2f} points."
        )
        lo, hi = best.test_acc_mean - best.test_acc_ci95, worst.test_acc_mean + worst.test_acc_ci95
        lines.append(
            "The best and worst 95% CIs overlap: the seeds cannot separate them."
            if lo <= hi
            else "The best and worst 95% CIs do not overlap."
        )
        tied = s[s.test_acc_mean + s.test_acc_ci95 >= best.test_acc_mean - best.test_acc_ci95]
        lines.append(
            f"Batch sizes whose CI reaches the best one's: {sorted(int(b) for b in tied.batch_size)}."
        )
    early = s[s.best_epoch < s.final_epoch]
    if len(early):
        lines.append(
            f"Mean test accuracy peaked before the last epoch for batch sizes "
            f"{sorted(int(b) for b in early.batch_size)}."
        )
    return lines
