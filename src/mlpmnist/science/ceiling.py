"""The learning-rate ceiling, measured: where runs start to collapse, beside the curvature.

Plain gradient descent on a quadratic is stable only for lr < 2 / lambda_max, lambda_max being
the top eigenvalue of the loss's Hessian (``hessian``). This module puts, per batch size, the
tuned lr and the lr where seeds start to collapse (``lr_tuning.best_lr_interval`` and
``collapse_lr`` of the lr search) beside 2 / lambda_max at initialisation and during training,
and compares the ceiling under another input presentation (the control: centred pixels remove
the inputs' large mean, most pixels sitting at -1). Learning rates are plain SGD step sizes;
lambda_max is in nats per squared parameter step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlpmnist.data import loader as mdata
from mlpmnist.science.hessian import lambda_max_during_training, sharpness_summary
from mlpmnist.science.lr_tuning import best_lr_interval, collapse_lr, lr_search_summary, search_lr
from mlpmnist.science.presets import Preset


def ceiling_table(search: pd.DataFrame, sharpness: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per batch size of an lr search (``search_lr``'s history, one seed set): the tuned lr and
    its neighbours (lr, lr_low, lr_high), the ceiling (max_ok_lr, collapse_lr) and, given
    ``lambda_max_during_training``'s rows, ``two_over_lambda_e<epoch>``: 2 / (median lambda_max
    over seeds) after that epoch (0 = initialisation) at the sharpness run's lr. Batch sizes
    without a sharpness measurement keep NaN there."""
    summary = lr_search_summary(search)
    best = best_lr_interval(summary)[["batch_size", "lr", "lr_low", "lr_high"]]
    ceiling = collapse_lr(summary)[["batch_size", "max_ok_lr", "collapse_lr"]]
    out = best.merge(ceiling, on="batch_size", how="outer")
    if sharpness is not None and len(sharpness):
        s = sharpness_summary(sharpness)
        for e in sorted(s["epoch"].unique()):
            at = s[s["epoch"] == e].groupby("batch_size")["lambda_max"].median()
            out[f"two_over_lambda_e{int(e)}"] = out["batch_size"].map(2.0 / at)
    return out.sort_values("batch_size", ignore_index=True)


def control_table(scaled: pd.DataFrame, control: pd.DataFrame, batch_sizes: list[int]) -> pd.DataFrame:
    """Per batch size of ``batch_sizes``: the tuned lr and the ceiling (max_ok_lr, collapse_lr)
    with the reference's scaled inputs (``scaled``: ``ceiling_table``) and under the control
    (``control``: ``ceiling_table`` of the control's search), side by side, and the factor by
    which the control moved the ceiling (``ceiling_moved``: control's max_ok_lr over scaled's)."""
    keep = ["batch_size", "lr", "max_ok_lr", "collapse_lr"]
    a = scaled[scaled["batch_size"].isin(batch_sizes)][keep]
    b = control[control["batch_size"].isin(batch_sizes)][keep]
    out = a.merge(b, on="batch_size", suffixes=("_scaled", "_control"))
    out["ceiling_moved"] = out["max_ok_lr_control"] / out["max_ok_lr_scaled"]
    return out


def init_sharpness(sharpness: pd.DataFrame) -> tuple[float, float]:
    """(median lambda_max at initialisation over every measured replica, 2 / that): the
    curvature before any step, which depends on the seed only, not on the batch size."""
    init = sharpness.loc[sharpness["epoch"] == 0, "lambda_max"].to_numpy(float)
    lam = float(np.median(init)) if len(init) else float("nan")
    return lam, 2.0 / lam


def ceiling_report(
    ceiling: pd.DataFrame,
    sharpness: pd.DataFrame,
    control: pd.DataFrame | None = None,
    control_sharpness: pd.DataFrame | None = None,
) -> str:
    """The numbers behind the ceiling's claims as text: ``ceiling_table``, lambda_max at
    initialisation and 2 / lambda_max, lambda_max per batch size and epoch (median, min, max
    over seeds), and, given the control, its ceilings and its lambda_max at initialisation."""
    lam, two = init_sharpness(sharpness)
    lines = [
        "tuned lr (within lr_low..lr_high), ceiling (max_ok_lr: no seed failed; collapse_lr: one did) and "
        "2/lambda_max after each epoch at lr 0.1, per batch size:",
        ceiling.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
        "",
        f"lambda_max at initialisation: {lam:.4g} (2/lambda_max = {two:.4g}), the same for every batch size",
        "lambda_max per batch size and epoch (median, min, max over seeds):",
        sharpness_summary(sharpness).to_string(index=False, float_format=lambda v: f"{v:.4g}"),
    ]
    if control is not None:
        lines += ["", "control (centred inputs) against the reference's scaled inputs:"]
        lines.append(control.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if control_sharpness is not None and len(control_sharpness):
        lam_c, two_c = init_sharpness(control_sharpness)
        lines.append(
            f"control: lambda_max at initialisation {lam_c:.4g} (2/lambda_max = {two_c:.4g}), "
            f"{lam / lam_c:.1f} times smaller than with scaled inputs"
        )
    return "\n".join(lines)


@dataclass
class Ceiling:
    """The ceiling study's results: ``table`` (``ceiling_table``), ``sharpness``
    (``lambda_max_during_training``'s rows), the control's ``control`` (``control_table``) and
    ``control_sharpness``, and lambda_max at initialisation (``lambda_init``, with scaled inputs)."""

    table: pd.DataFrame
    sharpness: pd.DataFrame
    control: pd.DataFrame
    control_sharpness: pd.DataFrame
    lambda_init: float

    @property
    def two_over_lambda_init(self) -> float:
        return 2.0 / self.lambda_init

    def report(self) -> str:
        """``ceiling_report`` of these results."""
        return ceiling_report(self.table, self.sharpness, self.control, self.control_sharpness)


def measure_ceiling(
    search: pd.DataFrame, preset: Preset, data: mdata.Data, *, concurrency: int | None = None
) -> Ceiling:
    """The ceiling study of ``preset`` next to an lr search of its first seed set (``search``):
    lambda_max at initialisation and after each of the sharpness epochs at lr 0.1, per batch
    size, on two seeds (``lambda_max_during_training``); and the control, an lr search with the
    control's inputs (``search_lr`` with ``ceiling=True`` on four seeds) and its lambda_max at
    initialisation."""
    s, common = preset.sharpness, preset.common
    measure = {"n_examples": s["n_examples"], "tol": 1e-3, "concurrency": concurrency}
    two = preset.seeds[:2]
    sharp = lambda_max_during_training(
        s["batch_sizes"], (0.1,), data, seeds=two, epochs=s["epochs"], **measure, **common
    )
    c = preset.control
    control_search = search_lr(
        c["batch_sizes"], c["lrs"], preset.seeds[:4], preset.tune_epochs, data,
        coarse=2.0, ceiling=True, inputs=c["inputs"], concurrency=concurrency, **common,
    )  # fmt: skip
    control_sharp = lambda_max_during_training(
        c["batch_sizes"][:1], (0.1,), data, seeds=two, epochs=(0,), inputs=c["inputs"], **measure, **common
    )
    table = ceiling_table(search, sharp)
    control = control_table(table, ceiling_table(control_search), list(c["batch_sizes"]))
    return Ceiling(table, sharp, control, control_sharp, init_sharpness(sharp)[0])
