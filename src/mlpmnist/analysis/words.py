"""Shared wording of findings: counts, lists of configurations, p-values (``findings``, ``dead``)."""

from __future__ import annotations

import pandas as pd

from mlpmnist.analysis.columns import config_label


def count(n: int, word: str) -> str:
    """'1 seed', '3 seeds'."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def names(rows: pd.DataFrame, by: list[str]) -> str:
    """'batch 8, 16' when only the batch size varies, else 'batch 8, lr 0.1; batch 16, lr 0.1'."""
    if by == ["batch_size"]:
        return "batch " + ", ".join(str(int(b)) for b in rows["batch_size"])
    return "; ".join(config_label(r, by) for _, r in rows.iterrows())


def others(n: int) -> str:
    """'; none in the other configuration(s)', '' when there are none."""
    if not n:
        return ""
    return "; none in the other configuration" if n == 1 else f"; none in the other {n} configurations"


def p_text(p: float) -> str:
    """A p-value as text after 'p': '< 0.001' or '= 0.042'."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"
