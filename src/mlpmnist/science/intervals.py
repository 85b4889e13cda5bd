"""95% intervals over seeds for the science's headline numbers.

A seed fixes a replica's initialisation and batch order, and the studies share their seeds
across batch sizes and learning rates, so the seeds are the independent units: the bootstrap
here resamples whole seeds (a cluster bootstrap), and every row of a drawn seed, at every batch
size and lr, moves with it. Each statistic is recomputed from scratch on every resample,
choices included (the best lr per batch size, the fastest lr to target), so the interval
carries the noise of those choices too. Tail rates (k of n seeds below a threshold) get a
binomial interval instead.

Percentile intervals over few clusters are too narrow: with n seeds there are only
C(2n - 1, n) distinct resamples (10 for n = 3), and coverage approaches the nominal level only
from about 8-10 seeds on. ``Interval.n_seeds`` says how many there were.

A second seed set's value falls inside the first set's 95% interval less often than 95% of the
time even when the interval is right: both estimates vary. ``inside_rate`` simulates how often,
at the seed count used, from the pooled seeds' own values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from mlpmnist.science.scaling import lr_fits, steps_fit
from mlpmnist.science.steps import fastest
from mlpmnist.science.tuning import best_lrs

#: ``statistic(frame) -> float``: one number from a frame holding a seed column.
Statistic = Callable[[pd.DataFrame], float]
#: ``statistics(frame) -> {name: value}``: several numbers from one frame, computed together.
Statistics = Callable[[pd.DataFrame], Mapping[str, float]]

CONFIDENCE = 0.95
N_RESAMPLES = 1000
#: What a statistic raises when a resample leaves it undefined (a fit with too few points, a
#: batch size no seed reached, ...): such a resample counts as failed. Other errors propagate.
UNDEFINED = (ValueError, ArithmeticError, KeyError, IndexError)


@dataclass(frozen=True)
class Interval:
    """A statistic and its percentile bootstrap interval over seeds.

    ``estimate``: the statistic on all seeds (NaN if undefined there). ``low``/``high``: the
    (1 - confidence) / 2 and (1 + confidence) / 2 percentiles of the statistic over the
    resamples where it was defined (NaN when fewer than 2 were, or with fewer than 2 seeds).
    ``n_seeds``: distinct seeds in the frame. ``n_failed``: resamples where the statistic was
    undefined (NaN, infinite, or raised one of ``UNDEFINED``); the interval is conditional on
    the other ``n_resamples - n_failed``, so a large share failed means the number is fragile.
    Units are the statistic's.
    """

    estimate: float
    low: float
    high: float
    n_seeds: int
    n_failed: int
    n_resamples: int
    confidence: float = CONFIDENCE


def seed_groups(frame: pd.DataFrame, seed_column: str = "seed") -> list[np.ndarray]:
    """The row positions of each distinct seed of ``frame``, in sorted seed order."""
    if seed_column not in frame.columns:
        raise ValueError(f"frame has no {seed_column!r} column; columns: {list(frame.columns)}")
    if frame[seed_column].isna().any():
        raise ValueError(f"frame has rows without a {seed_column!r}")
    codes, uniques = pd.factorize(frame[seed_column], sort=True)
    return [np.flatnonzero(codes == i) for i in range(len(uniques))]


def resample_seeds(
    frame: pd.DataFrame, groups: list[np.ndarray], draw: np.ndarray, seed_column: str = "seed"
) -> pd.DataFrame:
    """The rows of the seeds ``draw`` (indices into ``groups``, repeats allowed), each draw
    relabelled as seed 0, 1, ... in draw order, so a seed drawn twice counts as two seeds
    wherever the statistic groups by seed."""
    take = np.concatenate([groups[i] for i in draw])
    out = frame.iloc[take].reset_index(drop=True)
    out[seed_column] = np.repeat(np.arange(len(draw)), [len(groups[i]) for i in draw])
    return out


def _values(statistics: Statistics, frame: pd.DataFrame, names: list[str] | None) -> dict[str, float]:
    """``statistics(frame)`` as floats, NaN where not finite; for ``names`` (None: whatever it
    returns), NaN for a missing one, and NaN for all when it raises ``UNDEFINED``."""
    try:
        got = dict(statistics(frame))
    except UNDEFINED:
        got = {}
    keys = list(got) if names is None else names
    vals = {k: float(got.get(k, math.nan)) for k in keys}
    return {k: v if math.isfinite(v) else math.nan for k, v in vals.items()}


def _bootstrap(
    frame: pd.DataFrame,
    statistics: Statistics,
    seed_column: str,
    confidence: float,
    n_resamples: int,
    rng: int | np.random.Generator,
) -> dict[str, Interval]:
    """name -> ``Interval`` for each name ``statistics`` returns on ``frame`` (none when it
    raises there)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples!r}")
    groups = seed_groups(frame, seed_column)
    estimates = _values(statistics, frame, None)
    names, n = list(estimates), len(groups)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    dist = np.full((n_resamples if n >= 2 else 0, len(names)), np.nan)
    if n >= 2 and names:
        # A resample with repeated seeds can trip harmless warnings (a degenerate fit).
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for r, draw in enumerate(gen.integers(n, size=(n_resamples, n))):
                got = _values(statistics, resample_seeds(frame, groups, draw, seed_column), names)
                dist[r] = [got[k] for k in names]
    q = 100 * np.array([(1 - confidence) / 2, (1 + confidence) / 2])
    out = {}
    for j, name in enumerate(names):
        ok = dist[:, j][np.isfinite(dist[:, j])]
        low, high = np.percentile(ok, q) if len(ok) >= 2 else (math.nan, math.nan)
        out[name] = Interval(
            estimates[name], float(low), float(high), n, len(dist) - len(ok), len(dist), confidence
        )
    return out


def seed_bootstrap_many(
    frame: pd.DataFrame,
    statistics: Statistics,
    *,
    seed_column: str = "seed",
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    rng: int | np.random.Generator = 0,
) -> pd.DataFrame:
    """Percentile intervals of several statistics by a cluster bootstrap over seeds, all on the
    same resamples.

    ``statistics(frame)`` returns a mapping name -> value (e.g. steps to target per batch
    size); the names are those it returns on all seeds (none when it raises there). Each of
    ``n_resamples`` resamples draws as many seeds as ``frame`` has, with replacement, takes all
    rows of each drawn seed (``resample_seeds``) and recomputes the statistics; ``rng`` (a seed
    or a generator) makes it reproducible. With fewer than 2 seeds low and high are NaN and
    ``n_resamples`` is 0. Returns one row per name: name, and ``Interval``'s fields as columns
    (estimate, low, high, n_seeds, n_failed, n_resamples, confidence).

    A hand loop rather than ``scipy.stats.bootstrap``: scipy resamples arrays, not groups of
    frame rows; an exception in one resample aborts it; and one NaN resample turns its interval
    NaN. The percentile rule is the one scipy's ``method="percentile"`` uses (``np.percentile``,
    linear interpolation).
    """
    intervals = _bootstrap(frame, statistics, seed_column, confidence, n_resamples, rng)
    rows = [{"name": k, **asdict(iv)} for k, iv in intervals.items()]
    return pd.DataFrame(rows, columns=["name", *(f.name for f in fields(Interval))])


def tuning_statistics(last: pd.DataFrame) -> dict[str, float]:
    """From one seed set's lr search (``tuning.search``'s final rows): the tuned lr per batch size
    ("lr@B", ``tuning.best_lrs``' lr_interp, chosen afresh on these seeds) and both fits of it
    (``scaling.lr_fits``: slope, rms_power, lr_max, b_noise, rms_saturating, rms_ratio)."""
    best = best_lrs(last)
    out = {f"lr@{int(b)}": float(v) for b, v in zip(best["batch_size"], best["lr_interp"], strict=True)}
    fits = lr_fits(best)
    return out | {
        k: fits[k] for k in ("slope", "rms_power", "lr_max", "b_noise", "rms_saturating", "rms_ratio")
    }


def steps_statistics(first: pd.DataFrame, target: float) -> dict[str, float]:
    """From one seed set's steps to target (``steps.race``'s rows): "steps@B", the median steps to
    ``target`` at each batch size's fastest lr (chosen afresh on these seeds), and the fit's
    "b_crit" (examples) and "s_min" (steps); NaN where the fit is undefined."""
    t = fastest(first, target)
    out = {f"steps@{int(b)}": float(s) for b, s in zip(t["batch_size"], t["steps"], strict=True)}
    try:
        fit = steps_fit(t["batch_size"].to_numpy(float), t["steps"].to_numpy(float))
    except ValueError:  # fewer than 3 batch sizes reached the target
        return {"b_crit": math.nan, "s_min": math.nan, **out}
    return {"b_crit": fit.b_crit, "s_min": fit.s_min, **out}


def two_sets(
    first: pd.DataFrame,
    second: pd.DataFrame,
    statistics: Statistics,
    *,
    n_resamples: int = N_RESAMPLES,
    rng: int = 0,
) -> pd.DataFrame:
    """Every number of ``statistics`` on the first seed set's frame, with its seed-bootstrap
    interval (``seed_bootstrap_many``: choices remade on every resample), and beside it the same
    number on the second set's frame (``second``) and whether it falls inside (``inside``: True,
    False, or None when either is undefined)."""
    a = seed_bootstrap_many(first, statistics, n_resamples=n_resamples, rng=rng)
    b = _values(statistics, second, list(a["name"]))
    a["second"] = [b[n] for n in a["name"]]
    known = a[["second", "low", "high"]].notna().all(axis=1)
    inside = (a["second"] >= a["low"]) & (a["second"] <= a["high"])
    a["inside"] = [bool(i) if k else None for i, k in zip(inside, known, strict=True)]
    return a


def inside_rate(
    values: Sequence[float] | np.ndarray,
    n: int,
    statistic: Callable[[np.ndarray], float] = np.median,
    *,
    reps: int = 1000,
    n_resamples: int = 200,
    confidence: float = CONFIDENCE,
    rng: int = 0,
) -> float:
    """How often a second set's ``statistic`` of ``n`` seeds falls inside the first set's percentile
    bootstrap interval of it, when both sets are drawn from ``values`` (per-seed values: the pooled
    seeds stand in for the population), over ``reps`` simulated pairs of runs. A fraction in [0, 1];
    for a normal estimate with a calibrated interval it is about 0.83, not 0.95."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2 or n < 2:
        return math.nan
    gen = np.random.default_rng(rng)
    q = 100 * np.array([(1 - confidence) / 2, (1 + confidence) / 2])
    hits = 0
    for _ in range(reps):
        a, b = v[gen.integers(len(v), size=n)], v[gen.integers(len(v), size=n)]
        boots = np.apply_along_axis(statistic, 1, a[gen.integers(n, size=(n_resamples, n))])
        low, high = np.percentile(boots, q)
        hits += bool(low <= statistic(b) <= high)
    return hits / reps
