"""Tables for reading from the number frames of ``stats``, one row per configuration, accuracies in
percent as text; nothing here computes a statistic, and a column that would say nothing is left out.
The summary's cells (``summary_cells``) serve ``summary_table`` and ``markdown_table`` (the README)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mlpmnist.analysis.columns import axis_label, dead_columns
from mlpmnist.analysis.stats import LAST_K, MIN_SEEDS, REPRODUCTION_COLUMNS, summary_by

MEDIAN = "median [q1, q3] (%)"
MEDIAN_CI = "median 95% CI (%)"
MEAN = "mean ± 95% CI (%)"
LAST = f"last {LAST_K} epochs, mean (%)"
FAILED = "failed seeds / n"
OUTLIERS = "outliers"
BEST = "best epoch (median %)"
REFERENCE = "reference (%, 1 seed)"


def percent(v: float, digits: int = 2) -> str:
    """A fraction as percent text with ``digits`` decimals ('97.25'); 'n/a' for NaN."""
    return "n/a" if not np.isfinite(v) else f"{100 * v:.{digits}f}"


def _median(r: pd.Series) -> str:
    if r["n"] - r["n_diverged"] <= 1:  # one value: quartiles would pretend a spread
        return percent(r["median"])
    return f"{percent(r['median'])} [{percent(r['q1'])}, {percent(r['q3'])}]"


def _median_ci(r: pd.Series) -> str:
    """'lo–hi'; below ``MIN_SEEDS`` seeds 'min–max (range, k seeds)'; 'n/a' from one seed or none."""
    n = int(r["n"] - r["n_diverged"])
    if np.isfinite(r["median_lo"]) and np.isfinite(r["median_hi"]):
        return f"{percent(r['median_lo'])}–{percent(r['median_hi'])}"
    if 1 < n < MIN_SEEDS and np.isfinite(r.get("min", np.nan)):
        return f"{percent(r['min'])}–{percent(r['max'])} (range, {n} seeds)"
    return "n/a"


def _mean(r: pd.Series) -> str:
    ci = r["mean_ci95"]
    return f"{percent(r['mean'])} ± {percent(ci)}" if np.isfinite(ci) else percent(r["mean"])


def _best(r: pd.Series) -> str:
    if not np.isfinite(r["best_epoch"]):
        return "n/a"
    return f"{int(r['best_epoch'])} ({percent(r['best_epoch_median'])})"


def _failed(r: pd.Series) -> str:
    kinds = [f"{int(r[f'n_{k}'])} {k}" for k in ("collapsed", "diverged") if r[f"n_{k}"]]
    return f"{int(r['n_failed'])} / {int(r['n'])}" + (f" ({', '.join(kinds)})" if kinds else "")


def summary_cells(summ: pd.DataFrame) -> pd.DataFrame:
    """The statistics of a ``stats.summary`` frame as text, without its configuration columns:
    ``MEDIAN``, ``MEDIAN_CI``, ``MEAN``, ``LAST`` (when every configuration ran ``LAST_K`` epochs),
    ``FAILED``, ``OUTLIERS``, ``BEST`` and ``REFERENCE`` (when some row has one)."""
    rows = [r for _, r in summ.iterrows()]
    cells = {MEDIAN: _median, MEDIAN_CI: _median_ci, MEAN: _mean}
    if len(rows) and (summ["final_epoch"] >= LAST_K).all():
        cells[LAST] = lambda r: percent(r["last3_mean"])
    cells |= {FAILED: _failed, OUTLIERS: lambda r: str(int(r["n_outlier"])), BEST: _best}
    out = pd.DataFrame({name: [f(r) for r in rows] for name, f in cells.items()}, index=range(len(rows)))
    if "reference" in summ.columns and np.isfinite(summ["reference"].astype(float)).any():
        out[REFERENCE] = [percent(v) if np.isfinite(v) else "" for v in summ["reference"].astype(float)]
    return out


def summary_table(summ: pd.DataFrame) -> pd.DataFrame:
    """``stats.summary`` for reading: the configuration columns, then ``summary_cells`` but the reference."""
    cells = summary_cells(summ)
    by = summ[summary_by(summ)].reset_index(drop=True)
    return pd.concat([by, cells.drop(columns=[REFERENCE], errors="ignore")], axis=1)


def markdown_table(summ: pd.DataFrame) -> str:
    """The README's results table from a ``stats.summary`` frame (or its CSV): the configuration's
    values, then ``summary_cells`` but the best epoch."""
    by = summary_by(summ)
    cells = summary_cells(summ).drop(columns=[BEST])
    head = ["batch size" if c == "batch_size" else c for c in by] + list(cells.columns)
    rows = [
        [axis_label(col, r[col]).split(" ", 1)[1] for col in by] + list(c)
        for (_, r), (_, c) in zip(summ.iterrows(), cells.iterrows(), strict=True)
    ]
    return _markdown(head, rows)


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    """A markdown table: header, rule, one line per row; newline-ended."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def reproduction_table(repro: pd.DataFrame) -> pd.DataFrame:
    """``stats.reproduction`` for reading: the reference's seed, our median [q1, q3], our seeds and
    the reference's percentile among them."""
    out = repro[[c for c in repro.columns if c not in REPRODUCTION_COLUMNS]].copy()
    out["reference, 1 seed (%)"] = [percent(v) for v in repro["reference"]]
    out["ours: median [q1, q3] (%)"] = [
        f"{percent(r.median)} [{percent(r.q1)}, {percent(r.q3)}]" for r in repro.itertuples()
    ]
    out["seeds"] = repro["n"]
    out["reference's percentile among ours"] = repro["reference_percentile"].round(0)
    return out.reset_index(drop=True)


def dead_units_table(dead: pd.DataFrame) -> pd.DataFrame:
    """``stats.dead_units`` for reading: seeds, the dead share per hidden layer after the first epoch
    (unless that is the last) and at the end (%), the first layer's final weight norm, the rank
    correlation and its p-value; a column with no value anywhere is left out."""
    layers = dead_columns(dead)
    out = dead[summary_by(dead)].copy()
    out["seeds"] = dead["n"]
    firsts = dead["first_epoch"].unique()
    first = f"epoch {int(firsts[0])}" if len(firsts) == 1 else "first epoch"
    for layer in layers:
        if (dead["first_epoch"] != dead["final_epoch"]).any():
            out[f"{layer} {first} (%)"] = (100 * dead[f"{layer}_first"]).round(1)
        out[f"{layer} final (%)"] = (100 * dead[f"{layer}_final"]).round(1)
    out["wnorm_1 final"] = dead["wnorm_1_final"].round(1)
    out[f"rank corr. {layers[-1]} vs accuracy"] = dead["rank_corr"].round(2)
    if "rank_corr_p" in dead.columns:
        out["rank corr. p"] = dead["rank_corr_p"].map(lambda p: float(f"{p:.2g}"))
    return out.dropna(axis=1, how="all").reset_index(drop=True)


def per_epoch_table(per: pd.DataFrame) -> pd.DataFrame:
    """``stats.per_epoch`` for reading: test accuracy median and quartiles in percent (columns
    ending ``_%``), mean losses, replicas."""
    acc = ["test_acc_median", "test_acc_q1", "test_acc_q3"]
    out = (100 * per[acc]).round(2).rename(columns={c: f"{c}_%" for c in acc})
    out[["train_loss", "test_loss"]] = per[["train_loss", "test_loss"]].round(4)
    out["replicas"] = per["replicas"]
    return out


def _plain(v: object) -> object:
    """A cell as JSON takes it: numpy scalars as Python numbers, NaN as null."""
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and not np.isfinite(v) else v


def export(frame: pd.DataFrame, fmt: str) -> str:
    """``frame`` as text for a file: ``csv`` (numbers in full, as ``report.write_csv``), ``json``
    (records, NaN as null), ``markdown`` or ``text`` (for a ``stats.summary`` frame its
    ``markdown_table`` or ``summary_table``, else every column as is)."""
    summary = "median_lo" in frame.columns
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    if fmt == "json":
        records = [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]
        return json.dumps(records, indent=1) + "\n"
    if fmt == "markdown":
        rows = [[str(v) for v in r] for r in frame.itertuples(index=False)]
        return markdown_table(frame) if summary else _markdown(list(frame.columns), rows)
    if fmt == "text":
        return (summary_table(frame) if summary else frame).to_string(index=False) + "\n"
    raise ValueError(f"format must be one of csv, json, markdown, text; got {fmt!r}")
