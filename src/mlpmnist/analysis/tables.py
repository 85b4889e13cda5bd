"""Tables for reading, made from the number frames of ``stats``: accuracies in percent as text,
counts as text, one row per configuration. Nothing here computes a statistic; what a column
shows is decided from the numbers (a column that would say nothing, such as a last-3-epoch
mean after 1 epoch, is left out).

The summary's cells are formatted once (``summary_cells``); ``summary_table`` (a DataFrame for
notebooks) and ``markdown_table`` (the README's table) choose columns from them.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mlpmnist.analysis.columns import axis_label
from mlpmnist.analysis.stats import LAST_K, MIN_SEEDS, REPRODUCTION_COLUMNS, dead_by, dead_layers, summary_by

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
    """'lo–hi' (the median's 95% CI); below ``MIN_SEEDS`` finished seeds 'min–max (range, k
    seeds)', which is not an interval; 'n/a' from one seed or none."""
    n = int(r["n"] - r["n_diverged"])
    if np.isfinite(r["median_lo"]) and np.isfinite(r["median_hi"]):
        return f"{percent(r['median_lo'])}–{percent(r['median_hi'])}"
    if 1 < n < MIN_SEEDS and np.isfinite(r.get("min", np.nan)):
        return f"{percent(r['min'])}–{percent(r['max'])} (range, {n} seeds)"
    return "n/a"


def _failed(r: pd.Series) -> str:
    kinds = [f"{int(r[f'n_{k}'])} {k}" for k in ("collapsed", "diverged") if r[f"n_{k}"]]
    return f"{int(r['n_failed'])} / {int(r['n'])}" + (f" ({', '.join(kinds)})" if kinds else "")


def summary_cells(summ: pd.DataFrame) -> pd.DataFrame:
    """The statistics of a ``stats.summary`` frame as text, one row per configuration (same
    order, no configuration columns): ``MEDIAN`` 'median [q1, q3]' (the median alone from one
    seed), ``MEDIAN_CI`` 'lo–hi' (below ``MIN_SEEDS`` seeds the range, said to be one; 'n/a' from
    one seed), ``MEAN`` 'mean ± CI half-width' (the mean alone without an interval), ``LAST`` the
    last-``LAST_K``-epoch mean (only when every configuration ran at least ``LAST_K`` epochs),
    ``FAILED`` 'failed seeds / n' with what failed (collapsed, diverged), ``OUTLIERS`` the count
    of outliers, ``BEST`` 'epoch (median)', and
    ``REFERENCE`` the reference study's value ('' where it has none; only when some row has
    one). Accuracies in percent with 2 decimals."""
    rows = [r for _, r in summ.iterrows()]
    out = pd.DataFrame(index=range(len(rows)))
    out[MEDIAN] = [_median(r) for r in rows]
    out[MEDIAN_CI] = [_median_ci(r) for r in rows]
    out[MEAN] = [
        f"{percent(r['mean'])} ± {percent(r['mean_ci95'])}"
        if np.isfinite(r["mean_ci95"])
        else percent(r["mean"])
        for r in rows
    ]
    if len(rows) and (summ["final_epoch"] >= LAST_K).all():
        out[LAST] = [percent(r["last3_mean"]) for r in rows]
    out[FAILED] = [_failed(r) for r in rows]
    out[OUTLIERS] = [str(int(r["n_outlier"])) for r in rows]
    out[BEST] = [
        f"{int(r['best_epoch'])} ({percent(r['best_epoch_median'])})"
        if np.isfinite(r["best_epoch"])
        else "n/a"
        for r in rows
    ]
    if "reference" in summ.columns and np.isfinite(summ["reference"].astype(float)).any():
        out[REFERENCE] = [percent(v) if np.isfinite(v) else "" for v in summ["reference"].astype(float)]
    return out


def summary_table(summ: pd.DataFrame) -> pd.DataFrame:
    """``stats.summary`` for reading: the configuration columns as they are, then per
    configuration the final test accuracy in percent as median [q1, q3], the median's 95% CI,
    mean ± CI, the last-``LAST_K``-epoch mean (when every configuration ran that many epochs),
    'failed seeds / n' (with what failed), the outliers and the best epoch by median. Text cells."""
    cells = summary_cells(summ)
    by = summ[summary_by(summ)].reset_index(drop=True)
    return pd.concat([by, cells.drop(columns=[REFERENCE], errors="ignore")], axis=1)


def markdown_table(summ: pd.DataFrame) -> str:
    """The README's results table (markdown) from a ``stats.summary`` frame (or the CSV
    ``report.write_summary`` wrote): the configuration's values, then the cells of
    ``summary_cells`` but the best epoch. Header, rule, one row per configuration; newline-ended."""
    by = summary_by(summ)
    cells = summary_cells(summ).drop(columns=[BEST])
    head = ["batch size" if c == "batch_size" else c for c in by] + list(cells.columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (_, r), (_, c) in zip(summ.iterrows(), cells.iterrows(), strict=True):
        values = [axis_label(col, r[col]).split(" ", 1)[1] for col in by] + list(c)
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def reproduction_table(repro: pd.DataFrame) -> pd.DataFrame:
    """``stats.reproduction`` for reading: the reference's single seed and our median [q1, q3]
    in percent, our seeds, and where the reference falls among them (its percentile, rounded;
    50 = our median)."""
    out = repro[[c for c in repro.columns if c not in REPRODUCTION_COLUMNS]].copy()
    out["reference, 1 seed (%)"] = [percent(v) for v in repro["reference"]]
    out["ours: median [q1, q3] (%)"] = [
        f"{percent(r.median)} [{percent(r.q1)}, {percent(r.q3)}]" for r in repro.itertuples()
    ]
    out["seeds"] = repro["n"]
    out["reference's percentile among ours"] = repro["reference_percentile"].round(0)
    return out.reset_index(drop=True)


def dead_units_table(dead: pd.DataFrame) -> pd.DataFrame:
    """``stats.dead_units`` for reading: per configuration its seeds, the median share of dead
    units per hidden layer after the first epoch (left out when that is the last) and at the
    end, in percent with 1 decimal, the first layer's final weight norm (1 decimal), the rank
    correlation across seeds (2 decimals) and its test's p-value (2 significant digits; NaN below
    ``MIN_SEEDS`` seeds); a column with no value anywhere is left out."""
    layers = dead_layers(dead)
    out = dead[dead_by(dead)].copy()
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
    """``stats.per_epoch`` for reading: test accuracy median and quartiles in percent (2
    decimals, columns ending ``_%``), mean train and test loss (nats, 4 decimals), replicas."""
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
    """``frame`` as text for a file: ``csv`` (every column, numbers in full: what
    ``report.write_csv`` writes), ``json`` (a list of records, numbers in full, NaN as null),
    ``markdown`` (``markdown_table`` for a ``stats.summary`` frame, else every column as is) or
    ``text`` (``summary_table`` for a summary, else the frame as pandas prints it in full)."""
    summary = "median_lo" in frame.columns
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    if fmt == "json":
        return (
            json.dumps([{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")], indent=1)
            + "\n"
        )
    if fmt == "markdown":
        if summary:
            return markdown_table(frame)
        rows = [[str(v) for v in r] for r in frame.itertuples(index=False)]
        lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
    if fmt == "text":
        return (summary_table(frame) if summary else frame).to_string(index=False) + "\n"
    raise ValueError(f"format must be one of csv, json, markdown, text; got {fmt!r}")
