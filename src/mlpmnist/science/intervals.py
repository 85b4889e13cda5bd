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
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats as sps

from mlpmnist.science.common import final_rows
from mlpmnist.science.lr_tuning import best_lr, lr_scaling
from mlpmnist.science.noise import noise_at_target
from mlpmnist.science.steps import scaling_regimes, steps_table

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

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in [low, high] (False when the interval is unknown)."""
        return bool(self.low <= value <= self.high)

    @property
    def width(self) -> float:
        """high - low, in the statistic's units."""
        return self.high - self.low

    def text(self, fmt: str = ".3g") -> str:
        """'estimate [low, high]' with ``fmt``, and the failed resamples when any."""
        s = f"{self.estimate:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"
        return s + (f" ({self.n_failed}/{self.n_resamples} resamples undefined)" if self.n_failed else "")


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
    names: list[str] | None,
    seed_column: str,
    confidence: float,
    n_resamples: int,
    rng: int | np.random.Generator,
) -> dict[str, Interval]:
    """name -> ``Interval`` for each of ``names`` (None: the names ``statistics`` returns on
    ``frame``; none when it raises there)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples!r}")
    groups = seed_groups(frame, seed_column)
    estimates = _values(statistics, frame, names)
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
    """``seed_bootstrap`` for several statistics computed together on the same resamples.

    ``statistics(frame)`` returns a mapping name -> value (e.g. steps to target per batch
    size); the names are those it returns on all seeds (none when it raises there). Returns
    one row per name: name, and ``Interval``'s fields as columns (estimate, low, high,
    n_seeds, n_failed, n_resamples, confidence).
    """
    intervals = _bootstrap(frame, statistics, None, seed_column, confidence, n_resamples, rng)
    rows = [{"name": k, **asdict(iv)} for k, iv in intervals.items()]
    return pd.DataFrame(rows, columns=["name", *(f.name for f in fields(Interval))])


def seed_bootstrap(
    frame: pd.DataFrame,
    statistic: Statistic,
    *,
    seed_column: str = "seed",
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    rng: int | np.random.Generator = 0,
) -> Interval:
    """Percentile interval of ``statistic(frame)`` by a cluster bootstrap over seeds.

    Each of ``n_resamples`` resamples draws as many seeds as ``frame`` has, with replacement,
    takes all rows of each drawn seed (``resample_seeds``) and recomputes ``statistic`` on
    them; the interval is the percentiles of the defined results (``Interval``). ``rng`` (a
    seed or a generator) makes it reproducible: the same frame and rng give the same interval.
    With fewer than 2 seeds there is nothing to resample: low and high are NaN and
    ``n_resamples`` is 0.

    A hand loop rather than ``scipy.stats.bootstrap``: scipy resamples arrays, not groups of
    frame rows; an exception in one resample aborts it; and one NaN resample turns its interval
    NaN. The percentile rule is the one scipy's ``method="percentile"`` uses (``np.percentile``,
    linear interpolation).
    """
    return _bootstrap(
        frame, lambda f: {"value": statistic(f)}, ["value"], seed_column, confidence, n_resamples, rng
    )["value"]


# ------------------------------------------------------------------------------- proportions


@dataclass(frozen=True)
class Proportion:
    """k of n seeds, the share k / n and its binomial interval (fractions in [0, 1])."""

    k: int
    n: int
    estimate: float
    low: float
    high: float
    method: str
    confidence: float = CONFIDENCE

    def text(self) -> str:
        """'k/n (p%, CI low-high%)'."""
        return (
            f"{self.k}/{self.n} ({100 * self.estimate:.0f}%, {100 * self.confidence:.0f}% CI "
            f"{100 * self.low:.0f}-{100 * self.high:.0f}%)"
        )


def proportion_interval(k: int, n: int, confidence: float = CONFIDENCE, method: str = "wilson") -> Proportion:
    """The share k / n with ``scipy.stats.binomtest(k, n).proportion_ci``.

    Wilson's score interval by default: for a handful of seeds its coverage stays close to the
    nominal level for every true rate, while the exact (Clopper-Pearson) interval is built never
    to undercover and so is much wider at n = 10 (4 of 10: Wilson 17-69%, exact 12-74%), and the
    normal (Wald) interval collapses to a point at k = 0 or n (Brown, Cai & DasGupta 2001).
    ``method="exact"`` gives Clopper-Pearson where a guaranteed bound is wanted.
    """
    if not (isinstance(k, int | np.integer) and isinstance(n, int | np.integer) and 0 <= k <= n and n >= 1):
        raise ValueError(f"need integers 0 <= k <= n, n >= 1; got k={k!r}, n={n!r}")
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method=method)
    return Proportion(int(k), int(n), k / n, float(ci.low), float(ci.high), method, confidence)


def tail_rate(
    final: pd.DataFrame,
    *,
    below: float = 0.85,
    column: str = "test_acc",
    where: Mapping[str, Any] | None = None,
    confidence: float = CONFIDENCE,
    method: str = "wilson",
) -> Proportion:
    """The share of seeds whose ``column`` (an accuracy, a fraction) ends below ``below``.

    ``final``: one row per seed (each replica's last row, e.g. ``final_rows`` of a history),
    narrowed to the rows matching every ``where`` column == value (e.g. {"batch_size": 8,
    "lr": 0.1}). A seed without a value there (diverged: NaN) counts as below. ``ValueError``
    when a seed has several rows after ``where``.
    """
    rows = final
    for col, value in (where or {}).items():
        rows = rows[np.isclose(rows[col], value)] if isinstance(value, float) else rows[rows[col] == value]
    if rows.empty:
        raise ValueError(f"no rows match {dict(where or {})}")
    if rows["seed"].duplicated().any():
        raise ValueError("several rows per seed: pass each replica's last row, narrowed by where=")
    acc = rows[column].to_numpy(float)
    k = int((~(acc >= below)).sum())  # NaN (diverged) counts as below
    return proportion_interval(k, len(acc), confidence, method)


# ----------------------------------------------------------------------- headline statistics


def lr_slope(history: pd.DataFrame, column: str = "lr_interp") -> float:
    """The exponent of tuned lr ~ B^slope: ``best_lr`` per batch size (chosen afresh on this
    frame's seeds), then ``lr_scaling``'s least-squares slope in log-log. ``history`` is
    ``tune_lr``'s frame, or its ``final_rows`` (the same result, much faster to resample)."""
    return lr_scaling(best_lr(history), column)["slope"]


def b_crit(first: pd.DataFrame) -> float:
    """The critical batch size (examples) of S(B) = S_min (1 + B_crit / B) fitted to
    ``steps_table(first)``; ``first`` is ``first_reaching``'s frame. Raises ``ValueError``
    (undefined) with fewer than 3 batch sizes that reached the target."""
    return scaling_regimes(steps_table(first)).b_crit


def s_min(first: pd.DataFrame) -> float:
    """S_min (SGD steps) of the same fit as ``b_crit``."""
    return scaling_regimes(steps_table(first)).s_min


def steps_per_batch(first: pd.DataFrame) -> dict[str, float]:
    """Median steps to target over seeds at each batch size's fastest lr (``steps_table``),
    keyed by the batch size as text; NaN where no lr got every seed there."""
    t = steps_table(first)
    return {str(int(b)): float(s) for b, s in zip(t["batch_size"], t["steps"], strict=True)}


def steps_statistics(first: pd.DataFrame) -> dict[str, float]:
    """From one ``steps_table`` of ``first``: "b_crit" (examples) and "s_min" (steps) of the
    fit (NaN when it is undefined) and "steps@B" per batch size B (``steps_per_batch``), so
    one resample serves them all."""
    t = steps_table(first)
    out = {f"steps@{int(b)}": float(s) for b, s in zip(t["batch_size"], t["steps"], strict=True)}
    try:
        fit = scaling_regimes(t)
    except ValueError:  # fewer than 3 batch sizes reached the target
        return {"b_crit": math.nan, "s_min": math.nan, **out}
    return {"b_crit": fit.b_crit, "s_min": fit.s_min, **out}


def steps_intervals(first: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """``steps_per_batch`` with intervals over seeds: one row per batch size (batch_size and
    ``seed_bootstrap_many``'s columns; steps in SGD steps). ``kwargs`` go to the bootstrap."""
    out = seed_bootstrap_many(first, steps_per_batch, **kwargs)
    out.insert(0, "batch_size", out.pop("name").astype(int))
    return out


def mean_accuracy(last: pd.DataFrame, column: str = "test_acc") -> float:
    """The mean of ``column`` over the rows (one per seed, e.g. ``RecipeRun.last``): the tuned
    recipe's test accuracy, a fraction."""
    return float(last[column].mean())


def b_simple_at_target(noise: pd.DataFrame, target: float) -> float:
    """The median over seeds of B_simple (examples) at each seed's first snapshot that reached
    ``target`` (``noise_at_target``); ``noise`` is ``noise_scale_during_training``'s rows for
    several seeds with a seed column added. Seeds that never reached it are left out; NaN when
    none did."""
    per_seed = [noise_at_target(g, target) for _, g in noise.groupby("seed")]
    return float(np.nanmedian(per_seed)) if np.isfinite(per_seed).any() else math.nan


def headline_intervals(
    *,
    tuning: pd.DataFrame | None = None,
    first: pd.DataFrame | None = None,
    tuned_last: pd.DataFrame | None = None,
    noise: pd.DataFrame | None = None,
    target: float | None = None,
    n_resamples: int = N_RESAMPLES,
    rng: int = 0,
) -> pd.DataFrame:
    """The science's headline numbers with seed-bootstrap intervals, for whichever frames are
    given, each bootstrapped over the seeds of its own frame with ``n_resamples`` and ``rng``:
    ``tuning`` (``tune_lr`` or ``search_lr``) -> lr_slope; ``first`` (``first_reaching``) ->
    b_crit, s_min and steps@B per batch size (``steps_statistics``, one bootstrap); ``tuned_last``
    (the chosen ``RecipeRun.last``) -> tuned_test_acc; ``noise`` (``noise_scale_during_training``
    rows of several seeds with a seed column) and ``target`` -> b_simple_at_target. Returns one
    row per number: quantity, unit (exponent, examples, steps or fraction), and ``Interval``'s
    fields. The tail rate is a proportion, not a bootstrap: see ``tail_rate``.
    """
    if noise is not None and (target is None or "seed" not in noise.columns):
        raise ValueError("noise needs a seed column and a target")
    kw: dict[str, Any] = {"n_resamples": n_resamples, "rng": rng}
    rows: list[dict[str, Any]] = []

    def add(quantity: str, unit: str, frame: pd.DataFrame, statistic: Statistic) -> None:
        rows.append({"quantity": quantity, "unit": unit, **asdict(seed_bootstrap(frame, statistic, **kw))})

    if tuning is not None:
        add("lr_slope", "exponent", final_rows(tuning), lr_slope)
    if first is not None:
        for r in seed_bootstrap_many(first, steps_statistics, **kw).to_dict("records"):
            name = r.pop("name")
            rows.append({"quantity": name, "unit": "examples" if name == "b_crit" else "steps", **r})
    if tuned_last is not None:
        add("tuned_test_acc", "fraction", tuned_last, mean_accuracy)
    if noise is not None and target is not None:
        add("b_simple_at_target", "examples", noise, lambda f: b_simple_at_target(f, target))
    return pd.DataFrame(rows, columns=["quantity", "unit", *(f.name for f in fields(Interval))])


def of_seeds(frame: pd.DataFrame, seeds: Sequence[int]) -> pd.DataFrame:
    """The rows of ``frame`` whose seed is one of ``seeds``."""
    return frame[frame["seed"].isin(list(seeds))]


def second_values(
    *,
    tuning: pd.DataFrame | None = None,
    first: pd.DataFrame | None = None,
    tuned_last: pd.DataFrame | None = None,
    noise: pd.DataFrame | None = None,
    target: float | None = None,
) -> dict[str, float]:
    """The headline numbers of ``headline_intervals`` as plain values (no intervals), for a
    second run's frames: quantity -> value, NaN where undefined."""
    out: dict[str, float] = {}

    def safe(f: Callable[[], float]) -> float:
        try:
            return float(f())
        except UNDEFINED:
            return math.nan

    if tuning is not None:
        out["lr_slope"] = safe(lambda: lr_slope(final_rows(tuning)))
    if first is not None:
        out |= steps_statistics(first)
    if tuned_last is not None:
        out["tuned_test_acc"] = safe(lambda: mean_accuracy(tuned_last))
    if noise is not None and target is not None:
        out["b_simple_at_target"] = safe(lambda: b_simple_at_target(noise, target))
    return out


def two_runs(
    seeds: Sequence[int],
    second_seeds: Sequence[int],
    *,
    tuning: pd.DataFrame | None = None,
    first: pd.DataFrame | None = None,
    tuned: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    noise: pd.DataFrame | None = None,
    target: float | None = None,
    n_resamples: int = N_RESAMPLES,
    rng: int = 0,
) -> pd.DataFrame:
    """The headline numbers of the run on ``seeds`` with their intervals (``headline_intervals``),
    and beside them the same numbers of the run on ``second_seeds`` (``second``) and whether each
    falls inside the first's interval (``inside``: True, False, or None when either is undefined).
    ``tuning``, ``first`` and ``noise`` hold both seed sets; ``tuned`` is (first set's
    ``RecipeRun.last``, second set's)."""
    a = headline_intervals(
        tuning=None if tuning is None else of_seeds(tuning, seeds),
        first=None if first is None else of_seeds(first, seeds),
        tuned_last=None if tuned is None else tuned[0],
        noise=None if noise is None else of_seeds(noise, seeds),
        target=target,
        n_resamples=n_resamples,
        rng=rng,
    )
    b = second_values(
        tuning=None if tuning is None else of_seeds(tuning, second_seeds),
        first=None if first is None else of_seeds(first, second_seeds),
        tuned_last=None if tuned is None else tuned[1],
        noise=None if noise is None else of_seeds(noise, second_seeds),
        target=target,
    )
    a["second"] = [b.get(q, math.nan) for q in a["quantity"]]
    known = a[["second", "low", "high"]].notna().all(axis=1)
    inside = (a["second"] >= a["low"]) & (a["second"] <= a["high"])
    a["inside"] = [bool(i) if k else None for i, k in zip(inside, known, strict=True)]
    return a


def steps_with_intervals(headlines: pd.DataFrame) -> pd.DataFrame:
    """From ``two_runs``'s rows: steps to target per batch size with its interval (batch_size,
    steps, low, high: SGD steps of the first seed set)."""
    rows = headlines[headlines["quantity"].str.startswith("steps@")]
    return pd.DataFrame(
        {
            "batch_size": rows["quantity"].str.removeprefix("steps@").astype(int).to_numpy(),
            "steps": rows["estimate"].to_numpy(float),
            "low": rows["low"].to_numpy(float),
            "high": rows["high"].to_numpy(float),
        }
    )


def steps_second(headlines: pd.DataFrame) -> pd.DataFrame:
    """From ``two_runs``'s rows: the second seed set's steps to target per batch size."""
    rows = headlines[headlines["quantity"].str.startswith("steps@")]
    return pd.DataFrame(
        {
            "batch_size": rows["quantity"].str.removeprefix("steps@").astype(int).to_numpy(),
            "steps": rows["second"].to_numpy(float),
        }
    )


def headlines_report(headlines: pd.DataFrame) -> str:
    """``two_runs``'s rows as text: each number with its 95% interval, the second run's value and
    whether it falls inside, and how many of the second run's values did."""
    t = headlines[["quantity", "unit", "estimate", "low", "high", "second", "inside", "n_seeds", "n_failed"]]
    ok = headlines[headlines["inside"].notna()]
    return "\n".join(
        [
            "headline numbers: first seed set (estimate, 95% interval over seeds), second seed set beside:",
            t.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
            f"the second run's value falls inside the first's interval for {int(ok['inside'].sum())} of "
            f"{len(ok)} numbers",
        ]
    )
