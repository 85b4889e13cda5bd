"""Fits of how things scale with the batch size B, numbers in and out (no training here).

- The tuned learning rate: a power law lr = c B^slope, and the saturating form of McCandlish et
  al. (2018), lr = lr_max / (1 + B_noise / B), each fitted by least squares in log lr, with its
  root-mean-square residual (in log lr, so 0.1 is about 10%) to say which the data support.
- Steps to a target: S(B) = S_min (1 + B_crit / B) (McCandlish et al. 2018; the data-parallel
  regimes of Shallue et al. 2018), least squares in log steps, and where perfect scaling and
  diminishing returns end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares


@dataclass(frozen=True)
class Fit:
    """A two-parameter fit in log space: ``params`` (name -> value), ``rms`` (root-mean-square
    residual of the log), ``n`` (points)."""

    params: dict[str, float]
    rms: float
    n: int


def _check(b: np.ndarray, y: np.ndarray, need: int = 3) -> None:
    if len(b) < need or not (np.all(b > 0) and np.all(y > 0) and np.all(np.isfinite(y))):
        raise ValueError(f"need at least {need} batch sizes with positive finite values; got {len(b)}")


def power_law(b: np.ndarray, lr: np.ndarray) -> Fit:
    """lr = c B^slope, least squares in log lr. ``ValueError`` with fewer than 3 points."""
    b, lr = np.asarray(b, float), np.asarray(lr, float)
    _check(b, lr)
    slope, icpt = np.polyfit(np.log(b), np.log(lr), 1)
    resid = np.log(lr) - (icpt + slope * np.log(b))
    return Fit({"slope": float(slope), "c": float(np.exp(icpt))}, float(np.sqrt(np.mean(resid**2))), len(b))


def saturating(b: np.ndarray, lr: np.ndarray) -> Fit:
    """lr = lr_max / (1 + B_noise / B), least squares in log lr (from lr_max at the largest lr,
    B_noise at the median B). ``ValueError`` with fewer than 3 points."""
    b, lr = np.asarray(b, float), np.asarray(lr, float)
    _check(b, lr)

    def resid(p: np.ndarray) -> np.ndarray:
        return p[0] - np.log1p(np.exp(p[1]) / b) - np.log(lr)

    fit = least_squares(resid, x0=[np.log(lr.max()), np.log(np.median(b))])
    return Fit(
        {"lr_max": float(np.exp(fit.x[0])), "b_noise": float(np.exp(fit.x[1]))},
        float(np.sqrt(np.mean(fit.fun**2))),
        len(b),
    )


def lr_fits(best: pd.DataFrame, column: str = "lr_interp") -> dict[str, float]:
    """Both fits of the tuned lr (``tuning.best_lrs``' ``column``) against batch size, flat:
    slope, c and rms_power; lr_max, b_noise and rms_saturating; and ``rms_ratio`` (power over
    saturating: above 1, the saturating form fits better)."""
    b, lr = best["batch_size"].to_numpy(float), best[column].to_numpy(float)
    p, s = power_law(b, lr), saturating(b, lr)
    return {
        **p.params,
        "rms_power": p.rms,
        **s.params,
        "rms_saturating": s.rms,
        "rms_ratio": p.rms / s.rms if s.rms > 0 else math.inf,
    }


@dataclass(frozen=True)
class Scaling:
    """S(B) = s_min (1 + b_crit / B) fitted to steps to a target. ``b_crit``: the critical batch
    size, where S = 2 s_min; ``e_min`` = s_min b_crit (examples). ``perfect_end`` and
    ``diminishing_end``: the B where the fitted slope d log S / d log B = -b_crit / (B + b_crit)
    is -0.8 (doubling B still almost halves the steps) and -0.2 (it hardly helps): b_crit / 4 and
    4 b_crit. ``rms``: the fit's rms residual in log steps; ``n``: batch sizes fitted."""

    s_min: float
    b_crit: float
    e_min: float
    perfect_end: float
    diminishing_end: float
    rms: float
    n: int


def steps_fit(b: np.ndarray, steps: np.ndarray) -> Scaling:
    """Fit ``Scaling`` to median ``steps`` at batch sizes ``b`` (NaN dropped: a batch size that
    did not reach the target). ``ValueError`` with fewer than 3 left."""
    b, s = np.asarray(b, float), np.asarray(steps, float)
    keep = np.isfinite(s)
    b, s = b[keep], s[keep]
    _check(b, s)

    def resid(p: np.ndarray) -> np.ndarray:
        return p[0] + np.log1p(np.exp(p[1]) / b) - np.log(s)

    fit = least_squares(resid, x0=[np.log(s.min()), np.log(np.median(b))])
    s_min, b_crit = float(np.exp(fit.x[0])), float(np.exp(fit.x[1]))
    rms = float(np.sqrt(np.mean(fit.fun**2)))
    return Scaling(s_min, b_crit, s_min * b_crit, b_crit / 4, 4 * b_crit, rms, len(b))


def sensitivity(b: np.ndarray, steps: np.ndarray) -> dict[str, float]:
    """B_crit of ``steps_fit`` on all batch sizes, without the smallest and without the largest
    (NaN where fewer than 3 are left): how much the number rests on one end."""
    b, s = np.asarray(b, float), np.asarray(steps, float)
    keep = np.isfinite(s)
    b, s = b[keep], s[keep]
    order = np.argsort(b)
    b, s = b[order], s[order]
    out = {}
    for name, sl in (
        ("all", slice(None)),
        ("without_smallest", slice(1, None)),
        ("without_largest", slice(None, -1)),
    ):
        try:
            out[name] = steps_fit(b[sl], s[sl]).b_crit
        except ValueError:
            out[name] = math.nan
    return out
