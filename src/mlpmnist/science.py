"""A fair batch-size study: tuned learning rates, steps to target and a tuned recipe.

The reference study holds lr = 0.1 fixed while it changes the batch size, so its curves mix
the batch size with the step size lr / B. The functions here give each batch size its own
learning rate, chosen on a validation split (the last ``holdout`` training images), and then
measure what the literature measures:

* ``tune_lr`` / ``best_lr`` / ``lr_scaling``: a log grid of learning rates x seeds per batch
  size, trained in lockstep by ``train`` (per-replica lr), chosen by validation accuracy.
* ``train_to_target`` / ``first_reaching`` / ``steps_table`` / ``scaling_regimes``: the number
  of SGD steps until validation accuracy first reaches a target (Shallue et al. 2018), with the
  model S(B) = S_min (1 + B_crit / B) of McCandlish et al. (2018) fitted to it.
* ``train_tuned``: the same 784-64-64-10 MLP with momentum, a cosine schedule, weight decay,
  more epochs and (optionally) random translations of the training images.

The gradient noise scale lives in ``noise.py``; the ``plot_*`` functions at the end draw the
figures (a ``matplotlib.figure.Figure`` each; save them with ``plots.save``).

Every training loop here takes only full batches (``drop_last``): n // B steps an epoch, each
of exactly B examples. The reference study (``run.ipynb``) keeps the remainder as a smaller last
batch, like the original DataLoader.
Accuracies are fractions in [0, 1], losses mean cross-entropy in nats, times in seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from . import data as mdata
from .batching import batch_order, gather_batch
from .engine import StackedEngine, evaluate
from .train import (
    TrainConfig,
    init_models,
    lr_factor,
    resolve_device,
    split_train,
    torch_threads,
    train,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Powers of two from 8 to 4096 plus the reference study's 48, 90 and 150.
BATCH_SIZES: tuple[int, ...] = (8, 16, 32, 48, 64, 90, 128, 150, 256, 512, 1024, 2048, 4096)
#: The reference study's fixed learning rate.
REFERENCE_LR = 0.1
#: The last 5,000 training images are the validation split.
HOLDOUT = 5000


def lr_grid(
    center: float = REFERENCE_LR, factor: float = 3.0, below: int = 3, above: int = 3
) -> tuple[float, ...]:
    """Log-spaced learning rates ``center * factor**k`` for k in [-below, above].

    The default (0.0037 ... 2.7, 7 values a factor 3 apart) contains the reference's 0.1, so
    the reference's fixed-lr curve comes out of the same runs at the same epoch budget.
    """
    if not (math.isfinite(center) and center > 0 and math.isfinite(factor) and factor > 1):
        raise ValueError(f"center must be > 0 and factor > 1; got center={center!r}, factor={factor!r}")
    if below < 0 or above < 0:
        raise ValueError(f"below and above must be >= 0; got {below}, {above}")
    return tuple(float(f"{center * factor**k:.6g}") for k in range(-below, above + 1))


def _check_positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive integers; got {values!r}")
    return values


def _check_lrs(lrs: Sequence[float]) -> tuple[float, ...]:
    lrs = tuple(float(v) for v in lrs)
    if not lrs or not all(math.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"lrs must be a non-empty list of finite positive numbers; got {lrs!r}")
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"lrs must be distinct; got {lrs!r}")
    return lrs


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers >= 0; got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct; got {seeds!r}")
    return seeds


def grid_config(batch_size: int, lrs: Sequence[float], seeds: Sequence[int], **kwargs: object) -> TrainConfig:
    """A ``TrainConfig`` whose replicas are every (seed, lr) pair: seed-major, lr-minor."""
    lrs, seeds = _check_lrs(lrs), _check_seeds(seeds)
    return TrainConfig(
        batch_size=batch_size,
        seeds=tuple(s for s in seeds for _ in lrs),
        lr=tuple(lr for _ in seeds for lr in lrs),
        **kwargs,
    )


# --------------------------------------------------------------------------------------------
# 1. Tuned learning rate per batch size


def tune_lr(
    batch_sizes: Sequence[int] = BATCH_SIZES,
    lrs: Sequence[float] = lr_grid(),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 3,
    data: mdata.MNIST | None = None,
    *,
    holdout: int = HOLDOUT,
    train_limit: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
    progress: bool = False,
    drop_last: bool = True,
) -> pd.DataFrame:
    """Train every (batch size, lr, seed) for a fixed budget of ``epochs`` with plain SGD.

    One ``train`` call per batch size runs its lr x seed grid in lockstep. Returns the
    concatenated histories (one row per replica and epoch; columns of ``train``'s history plus
    ``batch_size``). Replicas that diverge stop there and keep a row with ``diverged=True``.
    ``drop_last`` (the default) leaves out each epoch's ragged remainder (e.g. 10 of 55,000
    images at batch 90), so every step has the batch size it claims: at a large lr that one
    small, noisy step right before the evaluation can otherwise cost many points of accuracy.
    """
    batch_sizes = _check_positive_ints("batch_sizes", batch_sizes)
    data = data if data is not None else mdata.load()
    frames = []
    for b in batch_sizes:
        config = grid_config(
            b,
            lrs,
            seeds,
            epochs=epochs,
            holdout=holdout,
            train_limit=train_limit,
            threads=threads,
            device=device,
            drop_last=drop_last,
        )
        result = train(config, data, progress=False, verbose=False)
        h = result.history
        h.insert(0, "batch_size", b)
        frames.append(h)
        if progress:
            print(f"tune_lr: batch {b:>4}: {len(config.seeds)} replicas, {result.seconds:.1f} s", flush=True)
    return pd.concat(frames, ignore_index=True)


def final_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The last row of every replica (batch_size, seed, lr): its final epoch, or where it diverged."""
    keys = [k for k in ("batch_size", "seed", "lr") if k in history.columns]
    last = history.loc[history.groupby(keys)["epoch"].idxmax()]
    return last.reset_index(drop=True)


def lr_summary(history: pd.DataFrame) -> pd.DataFrame:
    """Per batch size and lr: final val/test accuracy mean and std over seeds and n_diverged.

    A diverged replica's accuracies are NaN here (they are not averaged in); ``n_diverged``
    counts them so ``best_lr`` can rule such learning rates out.
    """
    last = final_rows(history).copy()
    for col in ("val_acc", "test_acc", "val_loss", "test_loss"):
        if col in last.columns:
            last.loc[last["diverged"], col] = np.nan
    agg = last.groupby(["batch_size", "lr"]).agg(
        val_acc_mean=("val_acc", "mean"),
        val_acc_std=("val_acc", "std"),
        test_acc_mean=("test_acc", "mean"),
        test_acc_std=("test_acc", "std"),
        n_seeds=("seed", "nunique"),
        n_diverged=("diverged", "sum"),
    )
    return agg.reset_index()


def best_lr(history: pd.DataFrame, reference_lr: float = REFERENCE_LR) -> pd.DataFrame:
    """Per batch size, the grid lr with the highest mean validation accuracy over seeds.

    Learning rates where any seed diverged are ruled out. Columns: batch_size, lr (grid best),
    lr_interp (vertex of a parabola through the best and its two grid neighbours in log lr,
    clipped to them; a finer estimate for the scaling fit), val_acc_mean/std, test_acc_mean/std
    at the chosen lr, and ref_test_acc_mean/std at ``reference_lr`` (NaN if not in the grid).
    """
    summ = lr_summary(history)
    out = []
    for b, g in summ.groupby("batch_size"):
        g = g.sort_values("lr").reset_index(drop=True)
        ok = g[(g["n_diverged"] == 0) & g["val_acc_mean"].notna()]
        if ok.empty:
            continue
        i = int(ok["val_acc_mean"].idxmax())
        row = g.loc[i]
        lr_interp = float(row["lr"])
        if 0 < i < len(g) - 1 and g.loc[[i - 1, i + 1], "n_diverged"].eq(0).all():
            xs = np.log(g.loc[[i - 1, i, i + 1], "lr"].to_numpy(float))
            ys = g.loc[[i - 1, i, i + 1], "val_acc_mean"].to_numpy(float)
            a, bb, _ = np.polyfit(xs, ys, 2)
            if a < 0:  # a maximum: take the vertex, kept between the neighbours
                lr_interp = float(np.exp(np.clip(-bb / (2 * a), xs[0], xs[2])))
        ref = g[np.isclose(g["lr"], reference_lr)]
        out.append(
            {
                "batch_size": int(b),
                "lr": float(row["lr"]),
                "lr_interp": lr_interp,
                "val_acc_mean": float(row["val_acc_mean"]),
                "val_acc_std": float(row["val_acc_std"]),
                "test_acc_mean": float(row["test_acc_mean"]),
                "test_acc_std": float(row["test_acc_std"]),
                "ref_test_acc_mean": float(ref["test_acc_mean"].iloc[0]) if len(ref) else float("nan"),
                "ref_test_acc_std": float(ref["test_acc_std"].iloc[0]) if len(ref) else float("nan"),
            }
        )
    return pd.DataFrame(out)


def lr_scaling(best: pd.DataFrame, column: str = "lr_interp") -> dict[str, float]:
    """Least-squares fit log(lr) = log(c) + slope * log(B) over the tuned learning rates.

    Returns ``{"slope", "c", "r2"}``. The linear rule (Goyal et al. 2017) predicts slope 1,
    the square-root rule 0.5; a slope near 0 means one lr suits every batch size.
    """
    if len(best) < 2:
        raise ValueError(f"need tuned learning rates for at least 2 batch sizes; got {len(best)}")
    x = np.log(best["batch_size"].to_numpy(float))
    y = np.log(best[column].to_numpy(float))
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (icpt + slope * x)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss if ss > 0 else float("nan")
    return {"slope": float(slope), "c": float(np.exp(icpt)), "r2": r2}


# --------------------------------------------------------------------------------------------
# 2. Steps to target


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


def train_to_target(
    batch_size: int,
    lrs: Sequence[float],
    seeds: Sequence[int],
    data: mdata.MNIST | None = None,
    *,
    target: float = 0.97,
    max_epochs: float = 50.0,
    eval_ratio: float = 1.05,
    eval_from_examples: int = 1024,
    holdout: int = HOLDOUT,
    train_limit: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
    race: bool = True,
) -> pd.DataFrame:
    """Plain SGD at constant lr until validation accuracy reaches ``target``, evaluated often.

    Every (seed, lr) pair is one replica of a ``StackedEngine`` (same init and batch order as
    ``train`` for that seed with ``drop_last=True``: only full batches, n // B steps an epoch).
    Validation accuracy is measured after the steps given by ``eval_steps`` (geometric, ratio
    ``eval_ratio``, from the step where ``eval_from_examples`` images have been seen). A
    replica stops once it has reached the target, or diverged, or after ``max_epochs`` epochs,
    or (``race``, with several lrs) once its lr can no longer have the fewest median steps
    over seeds (``steps_table``'s choice): the median of the steps reached so far, with the
    current step standing in for the seeds not there yet, is a lower bound, and it already
    exceeds another lr's settled median. Its steps are then NaN, as for a replica that never
    reached the target. Returns one row per replica and evaluation: batch_size, seed, lr,
    step, examples (step * batch_size), epoch (fractional), val_loss, val_acc, seconds
    (wall time since the start, evaluations included).
    """
    if not 0 < target <= 1:
        raise ValueError(f"target must be an accuracy in (0, 1]; got {target!r}")
    if not (math.isfinite(max_epochs) and max_epochs > 0):
        raise ValueError(f"max_epochs must be > 0; got {max_epochs!r}")
    if not holdout:
        raise ValueError("holdout must be > 0: the target is a validation accuracy")
    config = grid_config(
        batch_size,
        lrs,
        seeds,
        epochs=1,
        holdout=holdout,
        train_limit=train_limit,
        threads=threads,
        device=device,
    )
    device_ = resolve_device(device)
    data = data if data is not None else mdata.load()
    t0 = time.perf_counter()
    rows: list[dict] = []
    with torch_threads(threads):
        train_split, val_split = split_train(data.train, config)
        X, Y = train_split.x.to(device_), train_split.y.to(device_)
        pixels = mdata.to_pixels(X)
        xv, yv = val_split.x.to(device_), val_split.y.to(device_)
        models, gens = init_models(config)
        engine = StackedEngine(models, device_)
        replicas = list(zip(config.seeds, config.lrs))
        alive = list(range(len(replicas)))
        lrs_t = torch.tensor(config.lrs, dtype=torch.float32, device=device_)
        n, B = len(Y), batch_size
        per_epoch = n // B  # drop the ragged last batch so every step has B examples
        if per_epoch < 1:
            raise ValueError(f"batch_size {B} exceeds the {n} training images")
        max_steps = max(1, int(max_epochs * per_epoch))
        checks = eval_steps(max_steps, eval_ratio, max(1, math.ceil(eval_from_examples / B)))
        next_check = 0
        step = 0
        reached: dict[int, int] = {}  # replica -> first step at or above the target
        while alive and step < max_steps:
            order = batch_order([gens[i] for i in alive], n).to(device_)
            lr = lrs_t[alive]
            for s in range(per_epoch):
                idx = order[:, s * B : (s + 1) * B]
                engine.step(gather_batch(X, pixels, idx), Y[idx], lr)
                step += 1
                if step != checks[next_check]:
                    continue
                next_check += 1
                loss, acc, _ = evaluate(engine, xv, yv)
                secs = time.perf_counter() - t0
                keep = []
                for j, i in enumerate(alive):
                    lv, av = float(loss[j]), float(acc[j])
                    rows.append(
                        {
                            "batch_size": B,
                            "seed": replicas[i][0],
                            "lr": replicas[i][1],
                            "step": step,
                            "examples": step * B,
                            "epoch": step / per_epoch,
                            "val_loss": lv,
                            "val_acc": av,
                            "seconds": secs,
                        }
                    )
                    keep.append(math.isfinite(lv) and av < target)
                    if av >= target:
                        reached[i] = step
                if race:
                    for lr_lost in _lost_race(replicas, reached, step):
                        keep = [k and replicas[i][1] != lr_lost for k, i in zip(keep, alive)]
                if not all(keep):  # reached or diverged: this replica has nothing left to show
                    mask = torch.tensor(keep, device=device_)
                    engine.keep(mask)
                    alive = [i for i, k in zip(alive, keep) if k]
                    lr = lrs_t[alive]
                    order = order[mask]
                if not alive or step >= max_steps:
                    break
    return pd.DataFrame(rows)


def _lost_race(replicas: list[tuple[int, float]], reached: dict[int, int], step: int) -> set[float]:
    """Learning rates whose median steps to target (over seeds) must exceed another lr's."""
    by_lr: dict[float, list[int]] = {}
    for i, (_, lr) in enumerate(replicas):
        by_lr.setdefault(lr, []).append(i)
    settled, bound = {}, {}
    for lr, idx in by_lr.items():
        got = [reached[i] for i in idx if i in reached]
        # Seeds not there yet will need more than ``step`` steps: ``step`` is a lower bound.
        bound[lr] = float(np.median(got + [step] * (len(idx) - len(got))))
        if len(got) == len(idx):
            settled[lr] = bound[lr]
        elif len(got) > len(idx) // 2 and len(idx) % 2:  # odd count: the middle value is known
            settled[lr] = float(np.median(got + [math.inf] * (len(idx) - len(got))))
    if not settled:
        return set()
    best = min(settled.values())
    return {lr for lr in by_lr if bound[lr] > best}


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
        g = g.sort_values("step")
        hit = g.loc[g[metric] >= target, "step"]
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
    n_seeds. Batch sizes where no lr reached the target keep NaN steps.
    """
    rows = []
    for b, g in first.groupby("batch_size"):
        best = None
        for lr, h in g.groupby("lr"):
            if h["steps"].isna().any():
                continue
            med = float(h["steps"].median())
            if best is None or med < best[1]:
                best = (float(lr), med, float(h["steps"].min()), float(h["steps"].max()), len(h))
        if best is None:
            lr0 = float(g["lr"].iloc[0])
            rows.append(
                {
                    "batch_size": int(b),
                    "lr": lr0,
                    "steps": np.nan,
                    "steps_min": np.nan,
                    "steps_max": np.nan,
                    "examples": np.nan,
                    "n_seeds": g["seed"].nunique(),
                }
            )
            continue
        lr, med, lo, hi, k = best
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
    reached the target.
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

    # Start from the smallest steps and the batch size where examples have doubled.
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


# --------------------------------------------------------------------------------------------
# 4. Tuned recipe


def _shift_index(max_shift: int, device: torch.device) -> torch.Tensor:
    """[(2m+1)^2, 784] indices into a 28x28 image padded by m on each side, one row per shift."""
    m, side = max_shift, 28 + 2 * max_shift
    rows, cols = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    out = []
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            out.append(((rows + m - dy) * side + (cols + m - dx)).reshape(-1))
    return torch.stack(out).to(device)


def translate(
    x: torch.Tensor, shifts: torch.Tensor, max_shift: int, index: torch.Tensor | None = None
) -> torch.Tensor:
    """Images ``x`` [..., 784] moved by whole pixels; the uncovered border is background (-1).

    ``shifts`` (same leading shape as x, int64 in [0, (2m+1)^2)) picks (dy, dx) =
    divmod(shift, 2m+1) - m for each image. Returns a new tensor shaped like ``x``.
    """
    m = max_shift
    index = _shift_index(m, x.device) if index is None else index
    lead = x.shape[:-1]
    imgs = x.reshape(-1, 28, 28)
    padded = torch.nn.functional.pad(imgs, (m, m, m, m), value=-1.0).reshape(len(imgs), -1)
    return padded.gather(1, index[shifts.reshape(-1)]).reshape(*lead, 784)


@dataclass(frozen=True)
class Recipe:
    """A training recipe for the unchanged 784-64-64-10 MLP.

    ``max_shift``: random translations of every training image by up to that many pixels in
    each direction, drawn afresh each time the image is used (0 = no augmentation).
    ``drop_last``: every epoch takes only full batches (n // B steps), as the rest of the
    science does; False ends it with the remainder as a smaller batch, like the reference.
    """

    batch_size: int = 128
    epochs: int = 30
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    max_shift: int = 0
    drop_last: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.max_shift, int) or not 0 <= self.max_shift <= 4:
            raise ValueError(f"max_shift must be an integer in [0, 4]; got {self.max_shift!r}")

    def config(self, seeds: Sequence[int], **kwargs: object) -> TrainConfig:
        """The ``TrainConfig`` (validated) of this recipe for ``seeds``."""
        return TrainConfig(
            batch_size=self.batch_size,
            epochs=self.epochs,
            lr=self.lr,
            seeds=tuple(seeds),
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            drop_last=self.drop_last,
            **kwargs,
        )

    def describe(self) -> str:
        aug = f", random shifts of up to {self.max_shift} px" if self.max_shift else ", no augmentation"
        last = "" if self.drop_last else ", ragged last batch kept"
        return (
            f"batch {self.batch_size}, {self.epochs} epochs, SGD lr {self.lr:g} momentum {self.momentum:g}, "
            f"weight decay {self.weight_decay:g}, {self.schedule} schedule{aug}{last}"
        )


#: The reference study's recipe: plain SGD, lr 0.1, batch 90, 15 epochs (here, like every
#: science recipe, on full batches only unless ``drop_last=False`` is set).
REFERENCE_RECIPE = Recipe(
    batch_size=90, epochs=15, lr=REFERENCE_LR, momentum=0.0, weight_decay=0.0, schedule="constant"
)


def train_tuned(
    recipe: Recipe,
    seeds: Sequence[int],
    data: mdata.MNIST | None = None,
    *,
    holdout: int = HOLDOUT,
    train_limit: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Train ``recipe`` for every seed in lockstep; returns the per-epoch history.

    Without augmentation this is ``train``. With ``max_shift`` > 0 it is the same SGD loop
    (same init, batch order, engine and schedule) with each batch randomly translated before
    the step. The shifts come from one generator seeded from the seeds together, so an
    augmented replica depends on which seeds it trains with (its init and order do not).
    Columns: seed, lr, epoch, val_loss, val_acc, test_loss, test_acc, seconds, diverged
    (plus train_loss/train_acc when ``train`` is used).
    """
    seeds = _check_seeds(seeds)
    config = recipe.config(seeds, holdout=holdout, train_limit=train_limit, threads=threads, device=device)
    data = data if data is not None else mdata.load()
    if not recipe.max_shift:
        h = train(config, data, progress=False, verbose=False).history
        return h
    device_ = resolve_device(device)
    rows: list[dict] = []
    with torch_threads(threads):
        train_split, val_split = split_train(data.train, config)
        X, Y = train_split.x.to(device_), train_split.y.to(device_)
        pixels = mdata.to_pixels(X)
        evals = (
            {"val": val_split.to(device_), "test": data.test.to(device_)}
            if val_split is not None
            else {"test": data.test.to(device_)}
        )
        models, gens = init_models(config)
        engine = StackedEngine(models, device_, config.momentum, config.weight_decay)
        lrs = torch.tensor(config.lrs, dtype=torch.float32, device=device_)
        # Shifts come from their own generator so the batch order matches ``train``'s.
        aug_gen = torch.Generator().manual_seed(int(sum(seeds)) + 12345)
        index = _shift_index(recipe.max_shift, device_)
        n_shifts = (2 * recipe.max_shift + 1) ** 2
        n, B = len(Y), config.batch_size
        steps = n // B if config.drop_last else math.ceil(n / B)
        used = min(n, steps * B)
        total = steps * config.epochs
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            order = batch_order(gens, n).to(device_)[:, :used]
            shifts = torch.randint(n_shifts, order.shape, generator=aug_gen).to(device_)
            for s in range(steps):
                sl = slice(s * B, (s + 1) * B)
                xb = translate(gather_batch(X, pixels, order[:, sl]), shifts[:, sl], recipe.max_shift, index)
                factor = lr_factor(config.schedule, (epoch - 1) * steps + s, total)
                engine.step(xb, Y[order[:, sl]], lrs * factor)
            seconds = time.perf_counter() - t0
            metrics = {}
            for name, split in evals.items():
                loss, acc, _ = evaluate(engine, split.x, split.y)
                metrics[f"{name}_loss"], metrics[f"{name}_acc"] = loss.tolist(), acc.tolist()
            for j, seed in enumerate(seeds):
                row = {"seed": seed, "lr": recipe.lr, "epoch": epoch}
                row.update({k: v[j] for k, v in metrics.items()})
                row["seconds"] = seconds
                row["diverged"] = not all(math.isfinite(v[j]) for v in metrics.values())
                rows.append(row)
            if progress:
                va = np.mean(metrics.get("val_acc", metrics["test_acc"]))
                print(
                    f"train_tuned: epoch {epoch}/{config.epochs} val_acc {va:.4f} ({seconds:.1f} s)",
                    flush=True,
                )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Figures
#
# Built like the figures module's: a ``matplotlib.figure.Figure`` (no pyplot), its style
# ``plots.STYLE``, constrained layout. Save them with ``plots.save(fig, path)`` (PNG at
# ``plots.DPI``); it clears the figure, so display it first.


@contextmanager
def _styled_figure(width: float, height: float) -> Iterator[Figure]:
    """A new figure; artists created inside the block take ``plots.STYLE``."""
    import matplotlib as mpl

    from . import plots

    with mpl.rc_context(plots.STYLE):
        yield plots._figure(width, height)


def plot_lr_tuning(
    summary: pd.DataFrame,
    best: pd.DataFrame,
    scaling: dict[str, float] | None = None,
    reference_lr: float = REFERENCE_LR,
) -> Figure:
    """Three panels: validation accuracy vs lr per batch size (``lr_summary``); tuned lr vs
    batch size on log-log axes with the linear and square-root rules (anchored at the
    smallest batch size) and the fit; test accuracy at the tuned lr vs at ``reference_lr``.
    Returns the figure."""
    from .plots import batch_colors

    with _styled_figure(17, 5.2) as fig:
        axes = fig.subplots(1, 3)
        ax = axes[0]
        sizes = sorted(int(b) for b in summary["batch_size"].unique())
        colors = batch_colors(sizes)
        for b in sizes:
            g = summary[(summary["batch_size"] == b) & (summary["n_diverged"] == 0)].sort_values("lr")
            ax.plot(g["lr"], 100 * g["val_acc_mean"], "o-", ms=3, color=colors[b], label=f"B={b}")
        ax.set_xscale("log")
        ax.set_ylim(max(10.0, 100 * summary["val_acc_mean"].min() - 1), 100)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("validation accuracy (%), mean over seeds")
        ax.set_title("Validation accuracy vs lr (diverged lrs left out)")
        ax.legend(fontsize=7, ncols=2)

        ax = axes[1]
        b = best["batch_size"].to_numpy(float)
        ax.plot(b, best["lr"], "o", label="best grid lr")
        ax.plot(b, best["lr_interp"], "x", label="interpolated best lr")
        b0, lr0 = b[0], float(best["lr_interp"].iloc[0])
        ax.plot(b, lr0 * b / b0, "--", color="grey", label="linear rule lr ∝ B")
        ax.plot(b, lr0 * np.sqrt(b / b0), ":", color="k", label="square-root rule lr ∝ √B")
        if scaling is not None:
            ax.plot(
                b,
                scaling["c"] * b ** scaling["slope"],
                "-",
                color="C3",
                label=f"fit: slope {scaling['slope']:.2f}",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylim(min(best["lr"].min(), lr0) / 3, max(best["lr"].max() * 3, 1.0))
        ax.set_xlabel("batch size")
        ax.set_ylabel("tuned learning rate")
        ax.set_title("Tuned lr vs batch size")
        ax.legend(fontsize=8)

        ax = axes[2]
        ax.errorbar(
            b,
            100 * best["test_acc_mean"],
            yerr=100 * best["test_acc_std"],
            fmt="o-",
            capsize=3,
            label="tuned lr (chosen on validation)",
        )
        if best["ref_test_acc_mean"].notna().any():
            ax.errorbar(
                b,
                100 * best["ref_test_acc_mean"],
                yerr=100 * best["ref_test_acc_std"],
                fmt="s--",
                capsize=3,
                label=f"fixed lr = {reference_lr:g} (reference)",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("test accuracy (%), mean ± std over seeds")
        ax.set_title("Same epoch budget: tuned vs fixed lr")
        ax.legend(fontsize=8)
    return fig


def plot_steps_to_target(table: pd.DataFrame, scaling: Scaling | None, target: float) -> Figure:
    """Steps to ``target`` vs batch size (log-log, median and min-max over seeds) with the
    perfect-scaling line through the smallest batch size, the fitted S(B) = s_min (1 + b_crit/B)
    and the ends of perfect scaling and of diminishing returns. Returns the figure."""
    with _styled_figure(8, 5.5) as fig:
        ax = fig.add_subplot()
        t = table.dropna(subset=["steps"]).sort_values("batch_size")
        b = t["batch_size"].to_numpy(float)
        s = t["steps"].to_numpy(float)
        ax.errorbar(
            b,
            s,
            yerr=[s - t["steps_min"], t["steps_max"] - s],
            fmt="o",
            capsize=3,
            label="measured (median, min-max over seeds)",
        )
        ax.plot(b, s[0] * b[0] / b, "--", color="grey", label="perfect scaling (steps ∝ 1/B)")
        if scaling is not None:
            bb = np.geomspace(b.min(), b.max(), 200)
            ax.plot(
                bb,
                scaling.s_min * (1 + scaling.b_crit / bb),
                "-",
                color="C3",
                label=f"fit S_min(1 + B_crit/B): B_crit ≈ {scaling.b_crit:.0f}",
            )
            ax.axhline(scaling.s_min, color="C3", lw=0.8, ls=":")
            ax.axvline(
                scaling.perfect_end,
                color="C2",
                ls="-.",
                label=f"perfect scaling ends ≈ {scaling.perfect_end:.0f}",
            )
            ax.axvline(
                scaling.diminishing_end,
                color="C1",
                ls="-.",
                label=f"diminishing returns end ≈ {scaling.diminishing_end:.0f}",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"SGD steps to {100 * target:g}% validation accuracy")
        ax.set_title("Steps to target at each batch size's best lr")
        ax.legend(fontsize=8)
    return fig


def plot_noise_scale(noise: pd.DataFrame, b_crit: float | None = None) -> Figure:
    """B_simple (and tr(Sigma), |G|^2) against the epoch of training, with the critical batch
    size from steps to target as a horizontal line. Returns the figure."""
    with _styled_figure(13, 5) as fig:
        axes = fig.subplots(1, 2)
        ok = noise[noise["grad_sq"] > 0]
        ax = axes[0]
        x = ok["epoch"].to_numpy(float)
        ax.plot(x, ok["b_simple"], "o-", label="B_simple = tr(Σ)/|G|²")
        if b_crit is not None and math.isfinite(b_crit):
            ax.axhline(
                b_crit, color="C3", ls="--", label=f"critical batch from steps to target ≈ {b_crit:.0f}"
            )
        ax.axhline(900, color="grey", ls=":", label="McCandlish et al.: MNIST ≈ 900")
        for _, r in ok.iterrows():
            if math.isfinite(r["val_acc"]):
                ax.annotate(
                    f"{100 * r['val_acc']:.1f}%",
                    (r["epoch"], r["b_simple"]),
                    fontsize=8,
                    textcoords="offset points",
                    xytext=(3, 5),
                )
        ax.set_yscale("log")
        ax.set_xlabel("epoch (labels: validation accuracy)")
        ax.set_ylabel("examples")
        ax.set_title("Gradient noise scale during training")
        ax.legend(fontsize=8)
        ax = axes[1]
        ax.plot(noise["epoch"], noise["trace"], "o-", label="tr(Σ)")
        ax.plot(ok["epoch"], ok["grad_sq"], "s-", label="|G|²")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title("The two parts of the ratio")
        ax.legend(fontsize=8)
    return fig


def plot_tuned(
    tuned: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    label: str = "tuned recipe",
    reference_label: str = "reference: plain SGD, lr 0.1, batch 90",
) -> Figure:
    """Test (dotted: validation) accuracy per epoch, mean ± std over seeds, of the tuned recipe
    and of a reference history when given; final test accuracy per seed on the right.
    Returns the figure."""
    with _styled_figure(13, 5) as fig:
        axes = fig.subplots(1, 2, width_ratios=[3, 1])
        runs = [
            (h, name, f"C{k}") for k, (h, name) in enumerate(((tuned, label), (reference, reference_label)))
        ]
        runs = [r for r in runs if r[0] is not None]
        finals = []
        ax = axes[0]
        for h, name, c in runs:
            ok = h[~h["diverged"]]
            g = ok.groupby("epoch")["test_acc"]
            m, sd = 100 * g.mean(), 100 * g.std().fillna(0)
            ax.plot(m.index, m, "-", color=c, label=f"{name}: test")
            ax.fill_between(m.index, m - sd, m + sd, color=c, alpha=0.2)
            if "val_acc" in ok.columns:
                ax.plot(
                    m.index,
                    100 * ok.groupby("epoch")["val_acc"].mean(),
                    ":",
                    color=c,
                    label=f"{name}: validation",
                )
            finals.append(100 * final_rows(ok)["test_acc"])
        lo = min(95.0, min(float(f.mean()) for f in finals) - 1.0)
        ax.axhline(98.0, color="grey", ls="--", lw=0.8, label="98%")
        ax.set_ylim(lo, 99.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%), mean ± std over seeds")
        ax.legend(fontsize=8, loc="lower right")
        ax = axes[1]
        for k, ((_, _, c), f) in enumerate(zip(runs, finals)):
            ax.plot(np.full(len(f), k), f, "o", color=c, alpha=0.6)
            ax.errorbar(
                [k + 0.25], [f.mean()], yerr=[f.std() if len(f) > 1 else 0.0], fmt="s", color=c, capsize=4
            )
        ax.axhline(98.0, color="grey", ls="--", lw=0.8)
        ax.set_xlim(-0.5, len(runs) - 0.2)
        ax.set_xticks(range(len(runs)), ["tuned", "reference"][: len(runs)])
        ax.set_ylabel("final test accuracy (%): seeds, mean ± std")
    return fig
