"""The columns of a results frame, for the statistics, tables, findings and figures: which describe
a configuration, which vary (the grid's axes), what a summary groups by, how a configuration is
named in text, each row's dataset, which hold dead units."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from mlpmnist.config import baseline, identity_fields


def config_columns(df: pd.DataFrame) -> list[str]:
    """The columns of ``df`` that describe a configuration: every result-changing ``TrainConfig``
    field but ``seeds`` (``lr`` included: it is per replica), in field order (``batch_size`` first)."""
    return [c for c in identity_fields() if c != "seeds" and c in df.columns]


def varying_axes(df: pd.DataFrame) -> list[str]:
    """The config columns of ``df`` that take more than one value (the sweep's grid axes)."""
    return [c for c in config_columns(df) if df[c].nunique(dropna=False) > 1]


def group_columns(df: pd.DataFrame) -> list[str]:
    """What a summary is grouped by: ``batch_size`` and every other varying config column."""
    cols = varying_axes(df)
    return cols if "batch_size" in cols else ["batch_size", *cols]


def replica_columns(df: pd.DataFrame) -> list[str]:
    """Columns that together name one replica: ``key`` (if present), the config, ``seed``."""
    return [c for c in ("key", *config_columns(df), "seed") if c in df.columns]


def axis_label(column: str, value: object) -> str:
    """'batch 8', 'lr 0.1', 'momentum 0.9': how a config value is named in text and titles."""
    if isinstance(value, float) and value.is_integer() and column != "lr":
        value = int(value)
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{'batch' if column == 'batch_size' else column} {text}"


def config_label(row: pd.Series | dict, columns: Sequence[str]) -> str:
    """The configuration of ``row`` in words, e.g. 'batch 8, lr 0.1'."""
    return ", ".join(axis_label(c, row[c]) for c in columns)


def dataset_names(df: pd.DataFrame) -> pd.Series:
    """Each row's dataset name: the ``dataset`` column, the field's baseline ('mnist') where it is missing."""
    if "dataset" not in df.columns:
        return pd.Series(baseline("dataset"), index=df.index, dtype=object)
    return df["dataset"].astype(object).where(df["dataset"].notna(), baseline("dataset"))


def dead_columns(df: pd.DataFrame) -> list[str]:
    """The hidden layers with dead units (``dead_1``, ``dead_2``, ...), in layer order: the columns of a
    results frame, or those a ``stats.dead_units`` frame has ``dead_k_final`` of."""
    layers = {m[1] for c in df.columns if (m := re.fullmatch(r"(dead_\d+)(_final)?", c))}
    return sorted(layers, key=lambda c: int(c[5:]))
