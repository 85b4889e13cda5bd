"""The training loop: R replicas (seeds, optionally learning rates) of one configuration in lockstep.

``train`` is the only place in the package that steps an engine. Studies that need more than
"evaluate after every epoch" use its hooks: ``eval_at`` (evaluate after given step counts),
``stop`` (drop replicas: reached a target, lost a race) and ``transform`` (change each batch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import data as mdata
from .augment import random_shifts
from .batching import batch_order, gather_batch, spans
from .config import TrainConfig, resolve_device
from .engine import ENGINES, ReferenceEngine, StackedEngine, evaluate, weight_norms
from .model import MLP

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Mean cross-entropy (nats) above which a replica counts as diverged: chance level is ln 10 = 2.3,
# and a runaway replica can sit at a huge but finite loss once its ReLUs have died.
DIVERGED_LOSS = 1e3
# Collapse: at chance level. A learning MLP passes 20% accuracy within its first hundred steps,
# and a training loss above ln 10 (a uniform guess) for a whole epoch means it learned nothing.
CHANCE_LOSS = math.log(mdata.N_CLASSES)
COLLAPSED_ACC = 0.2

#: ``stop(rows) -> flags``: given one evaluation's rows (one dict per live replica, the history's
#: columns), True for each replica to stop now.
StopRule = Callable[[list[dict]], Sequence[bool]]
#: ``transform(x) -> x``: a batch [R, b, 784] in, the batch to train on out.
Transform = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (unchanged when None), then restore."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier on the base lr at 0-based ``step`` of ``total`` steps."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total))
    if schedule == "linear":
        return 1.0 - step / total
    return 1.0


def split_train(train: mdata.Split, config: TrainConfig) -> tuple[mdata.Split, mdata.Split | None]:
    """(training split, validation split or None) after ``train_limit`` and ``holdout``."""
    if config.train_limit is not None:
        train = train.head(config.train_limit)
    if not config.holdout:
        return train, None
    return train.head(len(train) - config.holdout), train.tail(config.holdout)


def init_models(config: TrainConfig) -> tuple[list[MLP], list[torch.Generator]]:
    """One MLP per replica, initialised from its seed, and that seed's generator.

    The same generator then shuffles the replica's batches, so a seed fixes both the
    initialisation and the batch order, whatever the engine or the other replicas.
    """
    gens = [torch.Generator().manual_seed(s) for s in config.seeds]
    return [MLP(config.hidden, generator=g) for g in gens], gens


@dataclass
class TrainResult:
    """``history``: one row per replica and evaluation (see ``train``). ``state_dicts``: final
    weights per replica (None where it diverged). ``snapshots``: epoch -> state dicts."""

    config: TrainConfig
    history: pd.DataFrame
    state_dicts: list[dict | None]
    snapshots: dict[int, list[dict | None]] = field(default_factory=dict)
    device: str = "cpu"
    seconds: float = 0.0
    first_step_at: float | None = None  # wall clock (time.time()) after the first SGD step

    def _last_flag(self, column: str) -> list[int]:
        if self.history.empty:
            return []
        last = self.history.groupby(["seed", "lr"]).tail(1)
        return sorted(last.loc[last[column].astype(bool), "seed"].unique().tolist())

    @property
    def diverged(self) -> list[int]:
        """Seeds of the replicas that diverged."""
        return self._last_flag("diverged")

    @property
    def collapsed(self) -> list[int]:
        """Seeds of the replicas whose last evaluation was at chance level."""
        return self._last_flag("collapsed")


def _tensors(
    config: TrainConfig, data: mdata.MNIST, device: torch.device, splits: Sequence[str] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, mdata.Split]]:
    """The training images X [N, 784] and labels Y [N] on ``device``, their exact uint8 pixels
    (on a CPU, where gathering them is cheaper; else None) and the splits to evaluate."""
    dtype = DTYPES[config.dtype]
    train_split, val_split = split_train(data.train, config)
    X, Y = train_split.x.to(device, dtype), train_split.y.to(device)
    pixels = None
    if dtype == torch.float32 and device.type == "cpu":
        pixels = train_split.pixels if train_split.pixels is not None else mdata.to_pixels(X)
    evals = {"test": data.test.to(device, dtype)}
    if val_split is not None:
        evals = {"val": val_split.to(device, dtype), **evals}
    if splits is not None:
        if unknown := set(splits) - set(evals):
            raise ValueError(f"splits {sorted(unknown)} not available; choose from {sorted(evals)}")
        evals = {k: v for k, v in evals.items() if k in splits}
    return X, Y, pixels, evals


@dataclass
class _Window:
    """What the steps since the last evaluation saw, summed per live replica."""

    loss: torch.Tensor | None = None  # summed -log p(true class), nats
    correct: torch.Tensor | None = None
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0

    def add(self, logp: torch.Tensor, pred: torch.Tensor, y: torch.Tensor) -> None:
        """Steps' outputs and labels, each [S, R, b]."""
        loss, correct = -logp.double().sum((0, 2)), (pred == y).sum((0, 2))
        self.loss = loss if self.loss is None else self.loss + loss
        self.correct = correct if self.correct is None else self.correct + correct
        self.examples += y.shape[0] * y.shape[2]
        self.steps += y.shape[0]

    def means(self, n_replicas: int) -> tuple[list[float], list[float]]:
        """(mean training loss in nats, training accuracy) per replica; NaN without steps."""
        if self.loss is None or self.correct is None:
            nan = [math.nan] * n_replicas
            return nan, nan
        return (self.loss / self.examples).tolist(), (self.correct.double() / self.examples).tolist()


def _steps(
    engine: StackedEngine | ReferenceEngine,
    X: torch.Tensor,
    pixels: torch.Tensor | None,
    idx: torch.Tensor,
    y: torch.Tensor,
    lr: list[float] | torch.Tensor,
    transform: Transform | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """S SGD steps on rows ``idx`` [S, R, b] with labels ``y`` and per-step ``lr`` (S floats, or
    [S, R]); returns (log-probability of the true class, predicted class), each [S, R, b]."""
    if transform is None and isinstance(engine, StackedEngine):
        return engine.steps(X, pixels, idx, y, lr)  # on CUDA, many steps per graph launch
    outs = [engine.step(_batch(X, pixels, idx[k], transform), y[k], lr[k]) for k in range(len(idx))]
    return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])


def _batch(
    X: torch.Tensor, pixels: torch.Tensor | None, idx: torch.Tensor, transform: Transform | None
) -> torch.Tensor:
    x = gather_batch(X, pixels, idx)
    return x if transform is None else transform(x)


def default_eval_steps(config: TrainConfig) -> list[int]:
    """Evaluate after every epoch: the step counts at the epoch ends."""
    return [e * config.steps_per_epoch for e in range(1, config.epochs + 1)]


def train(
    config: TrainConfig,
    data: mdata.MNIST | None = None,
    *,
    progress: bool = True,
    verbose: bool = True,
    snapshot_epochs: Iterable[int] = (),
    eval_at: Iterable[int] | None = None,
    splits: Sequence[str] | None = None,
    stop: StopRule | None = None,
    transform: Transform | None = None,
) -> TrainResult:
    """Train every replica of ``config`` with SGD on the mean cross-entropy.

    Returns a ``TrainResult`` whose ``history`` has one row per live replica and evaluation:
    seed, lr, epoch (fractional between epoch ends), step (SGD steps so far), train_loss and
    train_acc (mean over the steps since the previous evaluation, in nats and as a fraction),
    ``<split>_loss``/``<split>_acc`` for each evaluated split (test; val when ``holdout`` > 0),
    dead_1.. (fraction of each hidden layer's units that are zero on every test image),
    wnorm_1.. (Frobenius norm of each layer's weights), seconds (SGD wall time since the
    previous evaluation), eval_seconds, diverged and collapsed.

    Hooks: ``eval_at`` gives the step counts after which to evaluate (default: every epoch end);
    ``splits`` the splits to evaluate (default all); ``stop`` may drop replicas after each
    evaluation; ``transform`` changes every batch before its step (``config.max_shift`` > 0
    installs random shifts). A replica whose loss is non-finite or above ``DIVERGED_LOSS`` gets
    a row with diverged=True and stops; one at chance level (accuracy < ``COLLAPSED_ACC``, or a
    training loss above ln 10 over a whole epoch) is flagged collapsed and goes on.
    ``snapshot_epochs`` (0 = before training) selects epochs whose weights are kept.
    """
    config.validate()
    if transform is not None and config.max_shift:
        raise ValueError("give either transform= or config.max_shift, not both")
    device = resolve_device(config.device)
    snapshot_epochs = set(snapshot_epochs)
    t_start = time.perf_counter()
    with torch_threads(config.threads):
        dtype = DTYPES[config.dtype]
        X, Y, pixels, evals = _tensors(config, data if data is not None else mdata.load(), device, splits)
        if config.max_shift:
            transform = random_shifts(config.max_shift, config.seeds, device)

        models, gens = init_models(config)
        engine: StackedEngine | ReferenceEngine = ENGINES[config.engine](
            [m.to(dtype) for m in models], device, config.momentum, config.weight_decay
        )
        replicas = list(zip(config.seeds, config.lrs, strict=True))
        alive = list(range(len(replicas)))  # indices into replicas, in engine order
        lrs = torch.tensor(config.lrs, dtype=dtype, device=device)
        shared_lr = len(set(config.lrs)) == 1  # a plain float lets the engine fold it into alpha
        snapshots: dict[int, list[dict | None]] = {}
        if 0 in snapshot_epochs:
            snapshots[0] = _by_replica(engine.state_dicts(), alive, len(replicas))

        n, B, spe = len(Y), config.batch_size, config.steps_per_epoch
        used = min(n, spe * B)  # examples per epoch
        total = spe * config.epochs
        checks = sorted({s for s in (eval_at or default_eval_steps(config)) if 1 <= s <= total})
        rows: list[dict] = []
        window, step, next_check = _Window(), 0, 0
        first_step_at = None
        with tqdm(
            total=config.epochs, desc=f"batch {B}", unit="epoch", disable=not progress, mininterval=1
        ) as bar:
            for epoch in range(1, config.epochs + 1):
                if not alive or next_check >= len(checks):
                    break
                t0 = time.perf_counter()
                order = batch_order([gens[i] for i in alive], n).to(device)[:, :used]
                lr_alive = lrs[alive]
                keep_rows: torch.Tensor | None = None  # live rows of this epoch's order after a drop
                cuts = [c - step for c in checks[next_check:] if c - step <= spe]
                for idx, yb in spans(order, Y[order], B, cuts):
                    if keep_rows is not None:
                        idx, yb = idx[:, keep_rows], yb[:, keep_rows]
                    factors = [lr_factor(config.schedule, step + k, total) for k in range(len(idx))]
                    # Shared: Python floats, which the engine folds into its update; else [S, R].
                    lr = (
                        [config.lrs[0] * f for f in factors]
                        if shared_lr
                        else lr_alive * torch.tensor(factors, dtype=dtype, device=device)[:, None]
                    )
                    first_step_at = first_step_at or time.time()
                    window.add(*_steps(engine, X, pixels, idx, yb, lr, transform), yb)
                    step += len(idx)
                    if step != checks[next_check]:
                        continue
                    next_check += 1
                    window.seconds += time.perf_counter() - t0
                    new = _evaluate(engine, evals, window, replicas, alive, step, spe)
                    rows += new
                    window, t0 = _Window(), time.perf_counter()
                    if verbose:
                        tqdm.write(_eval_line(config, new))
                    drop = [r["diverged"] for r in new]
                    if stop is not None:
                        drop = [a or bool(b) for a, b in zip(drop, stop(new), strict=True)]
                    if any(drop):
                        if verbose and any(r["diverged"] for r in new):
                            tqdm.write(divergence_message(config, [r for r in new if r["diverged"]]))
                        keep = torch.tensor([not d for d in drop], device=device)
                        engine.keep(keep)
                        alive = [i for i, d in zip(alive, drop, strict=True) if not d]
                        lr_alive = lrs[alive]
                        pos = keep.nonzero().flatten()
                        keep_rows = pos if keep_rows is None else keep_rows[pos]
                    if not alive or next_check >= len(checks):
                        break
                window.seconds += time.perf_counter() - t0
                if epoch in snapshot_epochs and step == epoch * spe:
                    snapshots[epoch] = _by_replica(engine.state_dicts(), alive, len(replicas))
                bar.update()
        final = _by_replica(engine.state_dicts(), alive, len(replicas))
    return TrainResult(
        config=config,
        history=pd.DataFrame(rows),
        state_dicts=final,
        snapshots=snapshots,
        device=str(device),
        seconds=time.perf_counter() - t_start,
        first_step_at=first_step_at,
    )


def _evaluate(
    engine: StackedEngine | ReferenceEngine,
    evals: dict[str, mdata.Split],
    window: _Window,
    replicas: list[tuple[int, float]],
    alive: list[int],
    step: int,
    steps_per_epoch: int,
) -> list[dict]:
    """One history row per live replica after ``step`` steps (see ``train`` for the columns)."""
    t0 = time.perf_counter()
    R = len(alive)
    train_loss, train_acc = window.means(R)
    metrics: dict[str, list[float]] = {"train_loss": train_loss, "train_acc": train_acc}
    dead = None
    for name, split in evals.items():
        loss, acc, d = evaluate(engine, split.x, split.y)
        metrics[f"{name}_loss"], metrics[f"{name}_acc"] = loss.tolist(), acc.tolist()
        if dead is None or name == "test":
            dead = d
    assert dead is not None
    metrics.update({f"dead_{k + 1}": dead[:, k].tolist() for k in range(dead.shape[1])})
    norms = weight_norms(engine)
    metrics.update({f"wnorm_{k + 1}": norms[:, k].tolist() for k in range(norms.shape[1])})
    eval_seconds = time.perf_counter() - t0
    epoch = step // steps_per_epoch if step % steps_per_epoch == 0 else step / steps_per_epoch
    acc_key = "test_acc" if "test" in evals else f"{next(iter(evals))}_acc"
    rows = []
    for j, i in enumerate(alive):
        row: dict = {"seed": replicas[i][0], "lr": replicas[i][1], "epoch": epoch, "step": step}
        row.update({k: v[j] for k, v in metrics.items()})
        row["seconds"], row["eval_seconds"] = window.seconds, eval_seconds
        losses = [v for k, v in row.items() if k.endswith("_loss")]
        row["diverged"] = not all(math.isfinite(v) for v in losses) or row["train_loss"] > DIVERGED_LOSS
        # Training loss counts for collapse only over a whole epoch: a few steps are too noisy.
        at_chance_loss = window.steps >= steps_per_epoch and row["train_loss"] > CHANCE_LOSS
        row["collapsed"] = not row["diverged"] and (row[acc_key] < COLLAPSED_ACC or at_chance_loss)
        rows.append(row)
    return rows


def divergence_message(config: TrainConfig, rows: list[dict]) -> str:
    """What happened to the diverged replicas in ``rows``, and what to do, in one line."""
    parts = []
    for r in rows:
        loss = r["train_loss"]
        what = (
            "its loss became NaN/inf"
            if loss is None or not math.isfinite(loss)
            else f"its training loss reached {loss:.3g} nats, above {DIVERGED_LOSS:g}"
        )
        parts.append(f"seed {r['seed']} (lr {r['lr']:g}) diverged at step {r['step']}: {what}")
    return f"batch {config.batch_size}: {'; '.join(parts)}; lower the learning rate"


def _eval_line(config: TrainConfig, rows: list[dict]) -> str:
    r0 = rows[0]
    acc = torch.tensor(
        [r["test_acc"] for r in rows if not r["diverged"] and "test_acc" in r], dtype=torch.float64
    )
    if len(acc):
        q = torch.quantile(acc, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).mul(100).tolist()
        shown = (
            f"test_acc median {q[1]:.2f}% [{q[0]:.2f}, {q[2]:.2f}]"
            if len(acc) > 1
            else f"test_acc {q[1]:.2f}%"
        )
    else:
        shown = "no test accuracy"
    collapsed = sum(r["collapsed"] for r in rows)
    flag = f", {collapsed} at chance" if collapsed else ""
    seconds = r0["seconds"] + r0["eval_seconds"]
    return (
        f"batch {config.batch_size:>4} epoch {r0['epoch']:>5g}/{config.epochs}  {shown}"
        f"  ({len(rows)} replica{'s' if len(rows) > 1 else ''}{flag}, {seconds:.1f} s)"
    )


def _by_replica(state_dicts: list[dict], alive: list[int], n: int) -> list[dict | None]:
    out: list[dict | None] = [None] * n
    for i, sd in zip(alive, state_dicts, strict=True):
        out[i] = sd
    return out
