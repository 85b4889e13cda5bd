"""Whose models the model figures show, the one rule of ``python -m mlpmnist figures`` and run.ipynb."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlpmnist.analysis import stats
from mlpmnist.analysis.columns import config_label
from mlpmnist.analysis.words import count


def choose_model(
    df: pd.DataFrame, candidates: Sequence[str], pinned: Mapping[str, Any], scope: str, fix: str
) -> tuple[str, str]:
    """Of the experiments ``candidates`` (keys: those at the values ``pinned``, or when none is
    pinned every one ``scope`` names, e.g. 'of the grid'), the one finished in the results frame
    ``df`` with the best median final test accuracy, and why, in words.
    ``ValueError`` ending in ``fix`` (what to do) when none finished."""
    among = "at " + config_label(pinned, list(pinned)) if pinned else scope
    done = set(df["key"]) if "key" in df.columns else set()
    finished = [k for k in candidates if k in done]
    if not finished:
        raise ValueError(f"no finished experiment {among} to show the models of; {fix}")
    medians = stats.final(df[df["key"].isin(finished)]).groupby("key")["test_acc"].median()
    # Ties: the first candidate; a NaN median (every seed diverged) is the lowest.
    best = max(finished, key=lambda k: medians[k] if np.isfinite(medians[k]) else -np.inf)
    if len(candidates) == 1:
        return best, f"the one experiment {among}"
    if len(finished) == 1:
        return best, f"the only one of the {count(len(candidates), 'experiment')} {among} that finished"
    accuracy = f"the highest median final test accuracy ({100 * medians[best]:.2f}%)"
    return best, f"{accuracy} of the {len(finished)} finished experiments {among}"
