"""Whose models the model figures show, the one rule of ``python -m mlpmnist figures`` and run.ipynb."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from mlpmnist.analysis import stats
from mlpmnist.analysis.columns import config_label
from mlpmnist.analysis.words import count


def choose_model(
    df: pd.DataFrame, candidates: Sequence[str], pinned: Mapping[str, Any], scope: str, fix: str
) -> tuple[str, str]:
    """Of the experiments ``candidates`` (keys: those at the values ``pinned``, or when none is
    pinned every one ``scope`` names, e.g. 'of the grid'), the one finished in the results frame
    ``df`` with the best median final test accuracy (``stats.best_key``), and why, in words.
    ``ValueError`` ending in ``fix`` (what to do) when none finished."""
    among = "at " + config_label(pinned, list(pinned)) if pinned else scope
    done = set(df["key"]) if "key" in df.columns else set()
    finished = [k for k in candidates if k in done]
    if not finished:
        raise ValueError(f"no finished experiment {among} to show the models of; {fix}")
    best, median = stats.best_key(df, finished)
    if len(candidates) == 1:
        return best, f"the one experiment {among}"
    if len(finished) == 1:
        return best, f"the only one of the {count(len(candidates), 'experiment')} {among} that finished"
    accuracy = f"the highest median final test accuracy ({100 * median:.2f}%)"
    return best, f"{accuracy} of the {len(finished)} finished experiments {among}"
