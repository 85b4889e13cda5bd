"""The tidy frame: trusted records as one pandas DataFrame, one row per experiment x replica x
evaluation, and ``load``, the one way to read a results folder into it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from mlpmnist.config import FIELDS, baseline
from mlpmnist.store.trust import stored

# Columns first in the frame; then the config's other fields, then the metrics.
LEAD = ["key", "batch_size", "seed", "lr", "epoch", "step"]


def _cell(v: object) -> object:
    # Lists (hidden) become readable strings such as "64x64" so a column can be grouped by.
    return "x".join(str(x) for x in v) if isinstance(v, list) else v


def frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per experiment x replica x evaluation of ``records`` (as ``make_record`` writes them).
    Columns: key, every config field but seeds and lr (hidden as e.g. "64x64"), seed, lr, epoch,
    step, the history's metrics (see ``train``) and status (the replica's final status)."""
    rows: list[dict[str, Any]] = []
    for rec in records:
        # Fields the record predates at their baseline: what it computed.
        filled = {**{k: baseline(k) for k in FIELDS if k not in rec["config"]}, **rec["config"]}
        config = {k: _cell(v) for k, v in filled.items() if k not in ("seeds", "lr")}
        for rep in rec["replicas"]:
            rows.extend({"key": rec["key"], **config, **h, "status": rep["status"]} for h in rep["history"])
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=LEAD)
    num = [c for c in df.columns if c.endswith(("_loss", "_acc")) or c.startswith(("dead_", "wnorm_"))]
    df[num] = df[num].astype(float)
    for flag in ("diverged", "collapsed"):
        df[flag] = df[flag].fillna(False).astype(bool) if flag in df.columns else False
    lead = [c for c in LEAD if c in df.columns]
    df = df[lead + [c for c in df.columns if c not in lead]]
    return df.sort_values(["batch_size", "key", "lr", "seed", "step"], ignore_index=True)


def load(
    results_dir: str | os.PathLike,
    *,
    keys: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The trusted experiments under ``results_dir`` as one ``frame``: only ``keys``, and only
    those whose config fields equal ``where``'s value or one of its values, e.g.
    ``{"batch_size": [64, 128], "lr": 0.1}``. ``StoreError`` (``trust.stored``) names the first
    record that fails the trust check, and says when none matches."""
    # Each under the key the store holds it by (a legacy key for stores made before 16-digit keys).
    return frame([{**s.record, "key": s.key} for s in stored(results_dir, keys=keys, where=where)])
