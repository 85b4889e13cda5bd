"""Steps to target (Shallue et al. 2018): SGD steps until validation accuracy first reaches a
target, per batch size at its best learning rates, and the fit S(B) = S_min (1 + B_crit / B) of
McCandlish et al. (2018) with the ends of perfect scaling and of diminishing returns.

Steps count SGD updates of full batches; accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpmnist.config import TrainConfig
from mlpmnist.data import loader as mdata
from mlpmnist.science.common import grid_config
from mlpmnist.training.loop import train
from mlpmnist.training.many import train_many

Replica = tuple[int, float]  # (seed, lr)


def eval_steps(max_steps: int, ratio: float = 1.05, first: int = 1) -> np.ndarray:
    """Steps (1-based, after that many SGD steps) at which to evaluate: geometric from ``first``
    with ratio ``ratio``, rounded up, deduplicated, always ending at ``max_steps``.

    Geometric spacing gives every batch size the same relative resolution: the first step that
    reaches a target is overestimated by at most a factor ``ratio``.
    """
    if max_steps < 1 or first < 1:
        raise ValueError(f"max_steps and first must be >= 1; got {max_steps}, {first}")
    if not ratio > 1:
        raise ValueError(f"ratio must be > 1; got {ratio!r}")
    first = min(first, max_steps)
    n = int(math.ceil(math.log(max_steps / first) / math.log(ratio))) + 1
    steps = np.ceil(first * ratio ** np.arange(n) - 1e-9).astype(np.int64)
    return np.unique(np.clip(np.append(steps, max_steps), first, max_steps))


def lost_race(replicas: Sequence[Replica], reached: Mapping[Replica, int], step: int) -> set[float]:
    """Learning rates whose median steps to target over seeds must exceed another lr's.

    ``reached`` maps each replica that got there to its first step at or above the target;
    ``step`` is the current step. A seed not there yet needs more than ``step`` steps, so the
    median with ``step`` in its place is a lower bound on its lr's median. An lr is settled when
    its median is known (every seed reached, or a known middle value with an odd count). Returns
    the lrs whose lower bound exceeds the best settled median (empty while none is settled).
    """
    by_lr: dict[float, list[Replica]] = {}
    for r in replicas:
        by_lr.setdefault(r[1], []).append(r)
    settled, bound = {}, {}
    for lr, reps in by_lr.items():
        got = [reached[r] for r in reps if r in reached]
        missing = len(reps) - len(got)
        bound[lr] = float(np.median(got + [step] * missing))
        if not missing:
            settled[lr] = bound[lr]
        elif len(got) > len(reps) // 2 and len(reps) % 2:  # odd count: the middle value is known
            settled[lr] = float(np.median(got + [math.inf] * missing))
    if not settled:
        return set()
    best = min(settled.values())
    return {lr for lr in by_lr if bound[lr] > best}


@dataclass
class TargetRace:
    """A ``train`` stop rule: a replica stops once its ``metric`` reaches ``target`` (it has
    nothing left to show), and, with ``race``, once its lr has lost the race (``lost_race``).

    ``replicas`` are all (seed, lr) pairs of the run, in the config's order; ``reached`` fills
    in as replicas reach the target (replica -> first step at or above it).
    """

    replicas: list[Replica]
    target: float
    race: bool = True
    metric: str = "val_acc"
    reached: dict[Replica, int] = field(default_factory=dict)

    def __call__(self, rows: list[dict]) -> list[bool]:
        """For one evaluation's rows (one per live replica): True for each replica to stop."""
        done = []
        for r in rows:
            hit = r[self.metric] >= self.target
            if hit:
                self.reached.setdefault((r["seed"], r["lr"]), r["step"])
            done.append(hit)
        if not (self.race and rows):
            return done
        lost = lost_race(self.replicas, self.reached, rows[0]["step"])
        return [d or r["lr"] in lost for d, r in zip(done, rows, strict=True)]


def target_run(
    batch_size: int,
    lrs: Sequence[float],
    seeds: Sequence[int],
    *,
    target: float = 0.97,
    max_epochs: float = 50.0,
    eval_ratio: float = 1.05,
    eval_from_examples: int = 1024,
    race: bool = True,
    **fields: Any,
) -> tuple[TrainConfig, dict[str, Any]]:
    """The config and the ``train`` hooks of one batch size's race to ``target`` (see
    ``train_to_target``): every (seed, lr) pair a replica, evaluations on the validation split
    after the steps of ``eval_steps``, and the stop rule (``TargetRace``)."""
    if not 0 < target <= 1:
        raise ValueError(f"target must be an accuracy in (0, 1]; got {target!r}")
    if not (math.isfinite(max_epochs) and max_epochs > 0):
        raise ValueError(f"max_epochs must be > 0; got {max_epochs!r}")
    config = grid_config(batch_size, lrs, seeds, epochs=math.ceil(max_epochs), **fields)
    if not config.holdout:
        raise ValueError("holdout must be > 0: the target is a validation accuracy")
    max_steps = max(1, int(max_epochs * config.steps_per_epoch))
    checks = eval_steps(max_steps, eval_ratio, max(1, math.ceil(eval_from_examples / batch_size)))
    rule = TargetRace(list(config.replicas), target, race and len(set(config.lrs)) > 1)
    return config, {"eval_at": checks.tolist(), "splits": ["val"], "stop": rule}


def _curve(config: TrainConfig, history: pd.DataFrame, hooks: dict[str, Any]) -> pd.DataFrame:
    """The history with batch_size and examples; a warning when a replica had already reached
    the target at the first evaluation (its steps would then be overestimated)."""
    rule, first = hooks["stop"], hooks["eval_at"][0]
    at_first = history[history["step"] == first] if len(history) else history
    early = int((at_first[rule.metric] >= rule.target).sum()) if len(at_first) else 0
    if early and first > 1:
        warnings.warn(
            f"batch {config.batch_size}: {early} run(s) reached the target by the first validation "
            f"(after {first * config.batch_size:,} images); lower eval_from_examples to measure them",
            RuntimeWarning,
            stacklevel=3,
        )
    h = history.copy()
    h.insert(0, "batch_size", config.batch_size)
    h.insert(h.columns.get_loc("step") + 1, "examples", h["step"] * config.batch_size)
    return h


def train_to_target(
    batch_size: int,
    lrs: Sequence[float],
    seeds: Sequence[int],
    data: mdata.Data | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Train at constant lr until validation accuracy reaches ``target``, evaluated often.

    Every (seed, lr) pair is one replica of one ``train`` call (further ``TrainConfig`` fields
    over the science defaults in ``kwargs``; plain SGD unless they say otherwise). Validation
    accuracy is measured after the steps of ``eval_steps`` (ratio ``eval_ratio``, from the step
    where ``eval_from_examples`` images have been seen). A replica stops once it reaches the
    target, diverges, or after ``max_epochs`` epochs, or (``race``, with several lrs) once its lr
    can no longer have the fewest median steps over seeds (``TargetRace``); a stopped replica's
    steps are NaN unless it reached the target. Returns ``train``'s history (validation only)
    with batch_size and examples (step * batch_size) added, one row per replica and evaluation;
    ``seconds`` is SGD wall time since the previous evaluation.
    """
    config, hooks = target_run(batch_size, lrs, seeds, **kwargs)
    return _curve(config, train(config, data, progress=False, verbose=False, **hooks).history, hooks)


def candidate_lrs(summary: pd.DataFrame, best: pd.DataFrame) -> dict[int, tuple[float, ...]]:
    """Per batch size, the learning rates that race to the target: its best lr from tuning, plus
    the next larger lr of its tuning grid when none of that lr's seeds diverged (a short budget
    favours small learning rates that are slow over a long run).

    ``summary`` is ``lr_summary``'s frame and ``best`` ``best_lr``'s.
    """
    out = {}
    for b, lr in zip(best["batch_size"], best["lr"], strict=True):
        g = summary[summary["batch_size"] == b].sort_values("lr")
        up = g[g["lr"] > lr].head(1)
        out[int(b)] = (float(lr), *(float(v) for v in up.loc[up["n_diverged"] == 0, "lr"]))
    return out


def steps_to_target(
    candidates: Mapping[int, Sequence[float]],
    seeds: Sequence[int],
    data: mdata.Data | None = None,
    *,
    progress: bool = False,
    concurrency: int | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """``train_to_target`` for every batch size of ``candidates`` (batch size -> lrs) with these
    seeds, the batch sizes at the same time where the device allows (``trainer.train_many``);
    ``kwargs`` go to ``target_run``. Returns the concatenated curves."""
    runs = [target_run(b, lrs, seeds, **kwargs) for b, lrs in candidates.items()]
    configs = [c for c, _ in runs]
    data = data if data is not None else mdata.load(dataset=configs[0].dataset)
    results = train_many(configs, data, hooks=[h for _, h in runs], concurrency=concurrency)
    curves = [_curve(c, r.history, h) for (c, h), r in zip(runs, results, strict=True)]
    if progress:
        for c, curve in zip(configs, curves, strict=True):
            print(
                f"batch {c.batch_size:>4}, lrs {sorted(set(c.lrs))}: last step {curve['step'].max()}",
                flush=True,
            )
    return pd.concat(curves, ignore_index=True)


def first_reaching(curve: pd.DataFrame, target: float = 0.97, metric: str = "val_acc") -> pd.DataFrame:
    """First evaluated step where ``metric`` >= ``target``, per (batch_size, seed, lr).

    ``curve`` needs columns batch_size, seed, lr, step and ``metric``. Returns columns
    batch_size, seed, lr, steps (NaN where the target was never reached), examples
    (steps * batch_size) and max_step (the last step evaluated).
    """
    need = {"batch_size", "seed", "lr", "step", metric}
    if missing := need - set(curve.columns):
        raise ValueError(f"curve lacks columns {sorted(missing)}")
    out = []
    for (b, s, lr), g in curve.groupby(["batch_size", "seed", "lr"]):
        hit = g.sort_values("step").loc[g[metric] >= target, "step"]
        steps = float(hit.iloc[0]) if len(hit) else float("nan")
        out.append(
            {
                "batch_size": int(b),
                "seed": int(s),
                "lr": float(lr),
                "steps": steps,
                "examples": steps * b,
                "max_step": int(g["step"].max()),
            }
        )
    return pd.DataFrame(out)


def steps_table(first: pd.DataFrame) -> pd.DataFrame:
    """Per batch size: the lr with the fewest median steps to target over seeds, and those steps.

    A (batch size, lr) counts only if every seed reached the target. Columns: batch_size, lr,
    steps (median over seeds), steps_min, steps_max, examples (= steps * batch_size),
    n_seeds. Batch sizes where no lr reached the target keep NaN steps (and their first lr).
    """
    rows, nan = [], float("nan")
    for b, g in first.groupby("batch_size"):
        done = [
            (float(h["steps"].median()), float(lr), h)
            for lr, h in g.groupby("lr")
            if h["steps"].notna().all()
        ]
        if done:
            med, lr, h = min(done, key=lambda t: t[0])  # the first (smallest) lr on a tie
            lo, hi, k = float(h["steps"].min()), float(h["steps"].max()), len(h)
        else:
            med, lr, lo, hi, k = nan, float(g["lr"].iloc[0]), nan, nan, g["seed"].nunique()
        rows.append(
            {
                "batch_size": int(b),
                "lr": lr,
                "steps": med,
                "steps_min": lo,
                "steps_max": hi,
                "examples": med * b,
                "n_seeds": k,
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Scaling:
    """Fit of S(B) = s_min * (1 + b_crit / B) to steps to target (McCandlish et al. 2018).

    ``b_crit``: the critical batch size, where S = 2 s_min and examples = 2 e_min
    (e_min = s_min * b_crit). ``perfect_end``/``diminishing_end``: the batch sizes where the
    fitted log-log slope d log S / d log B = -b_crit / (B + b_crit) crosses ``-perfect_slope``
    (doubling B still cuts steps almost in half) and ``-plateau_slope`` (doubling B hardly cuts
    steps). ``perfect_end_measured``/``diminishing_end_measured``: the largest measured batch
    sizes at or below those points. ``local_slopes``: measured slopes between neighbours.
    ``rms_log_error``: the fit's root-mean-square residual in log steps.
    """

    s_min: float
    b_crit: float
    e_min: float
    perfect_end: float
    diminishing_end: float
    perfect_end_measured: int | None
    diminishing_end_measured: int | None
    local_slopes: pd.DataFrame
    rms_log_error: float


def scaling_regimes(table: pd.DataFrame, perfect_slope: float = 0.8, plateau_slope: float = 0.2) -> Scaling:
    """Fit the steps-to-target curve and mark where perfect scaling and diminishing returns end.

    Under S = s_min (1 + b_crit / B) the slope magnitude b_crit / (B + b_crit) falls from 1
    (perfect scaling) to 0 (maximal data parallelism); it equals ``perfect_slope`` at
    B = b_crit (1 - p) / p and ``plateau_slope`` at B = b_crit (1 - q) / q: b_crit / 4 and
    4 b_crit with the defaults. The fit is least squares in log S over the batch sizes that
    reached the target. ``ValueError`` with fewer than 3 of them.
    """
    from scipy.optimize import least_squares

    if not 0 < plateau_slope < perfect_slope < 1:
        raise ValueError(f"need 0 < plateau_slope < perfect_slope < 1; got {plateau_slope}, {perfect_slope}")
    t = table.dropna(subset=["steps"]).sort_values("batch_size")
    if len(t) < 3:
        raise ValueError(f"need at least 3 batch sizes that reached the target to fit; got {len(t)}")
    b = t["batch_size"].to_numpy(float)
    s = t["steps"].to_numpy(float)

    def resid(p: np.ndarray) -> np.ndarray:
        return p[0] + np.log1p(np.exp(p[1]) / b) - np.log(s)

    # Start from the smallest steps and the median batch size.
    fit = least_squares(resid, x0=[np.log(s.min()), np.log(np.median(b))])
    s_min, b_crit = float(np.exp(fit.x[0])), float(np.exp(fit.x[1]))
    perfect_end = b_crit * (1 - perfect_slope) / perfect_slope
    diminishing_end = b_crit * (1 - plateau_slope) / plateau_slope
    below_p, below_d = b[b <= perfect_end], b[b <= diminishing_end]
    slopes = pd.DataFrame(
        {
            "b_from": b[:-1].astype(int),
            "b_to": b[1:].astype(int),
            "slope": np.diff(np.log(s)) / np.diff(np.log(b)),
        }
    )
    return Scaling(
        s_min=s_min,
        b_crit=b_crit,
        e_min=s_min * b_crit,
        perfect_end=perfect_end,
        diminishing_end=diminishing_end,
        perfect_end_measured=int(below_p.max()) if len(below_p) else None,
        diminishing_end_measured=int(below_d.max()) if len(below_d) else None,
        local_slopes=slopes,
        rms_log_error=float(np.sqrt(np.mean(fit.fun**2))),
    )


def try_scaling_regimes(table: pd.DataFrame) -> Scaling | None:
    """``scaling_regimes(table)``, or None when too few batch sizes reached the target."""
    try:
        return scaling_regimes(table)
    except ValueError:
        return None


def steps_report(steps: pd.DataFrame, regimes: Scaling | None, target: float, max_epochs: float) -> str:
    """The numbers behind the steps-to-target claims as text: the table, the fit, the regime
    ends and the measured log-log slopes between neighbouring batch sizes."""
    lines = [
        f"steps to {target:.0%} validation accuracy (median over seeds at the faster lr; "
        f"NaN: not reached in {max_epochs:g} epochs):",
        steps.to_string(index=False),
    ]
    if regimes is None:
        return "\n".join([*lines, "no fit: fewer than 3 batch sizes reached the target"])
    r = regimes
    return "\n".join(
        [
            *lines,
            f"fit S(B) = S_min (1 + B_crit/B): S_min {r.s_min:.0f} steps, B_crit {r.b_crit:.0f}, "
            f"E_min {r.e_min:.0f} examples, rms log error {r.rms_log_error:.2f}",
            f"perfect scaling ends near B = {r.perfect_end:.0f} "
            f"(largest measured: {r.perfect_end_measured}); "
            f"diminishing returns end near B = {r.diminishing_end:.0f} "
            f"(largest measured: {r.diminishing_end_measured})",
            "measured log-log slopes between neighbouring batch sizes (-1 = perfect scaling, 0 = no gain):",
            r.local_slopes.round(2).to_string(index=False),
        ]
    )
