"""The training loop: R replicas (seeds, optionally learning rates) of one configuration in lockstep.

``train`` is the only place in the package that steps an engine. Studies that need more than
"evaluate after every epoch" use its hooks: ``eval_at`` (evaluate after given step counts),
``stop`` (drop replicas: reached a target, lost a race), ``transform`` (change each batch) and
``on_eval`` (see each evaluation as it happens).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from mlpmnist.config import TrainConfig, resolve_device
from mlpmnist.data import loader as mdata
from mlpmnist.engine.base import Engine, evaluate
from mlpmnist.engine.stacked import make_engine
from mlpmnist.model import MLP
from mlpmnist.training.augment import ReplicaShifts
from mlpmnist.training.batching import batch_order, spans
from mlpmnist.training.health import COLLAPSED_ACC, DIVERGED_LOSS, chance_loss
from mlpmnist.training.result import TrainResult

DTYPES = {"float32": torch.float32, "float64": torch.float64}

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
    spec = config.spec
    gens = [torch.Generator().manual_seed(s) for s in config.seeds]
    models = [
        MLP(config.hidden, spec.n_features, spec.n_classes, generator=g, activation=config.activation)
        for g in gens
    ]
    return models, gens


def input_transform(
    config: TrainConfig, train_x: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """How ``config.inputs`` changes the [-1, 1] pixels, from the training images ``train_x``
    [N, 784]: None (scaled, the reference), minus each pixel's mean (centered), or also divided
    by its standard deviation (standardized; a constant pixel keeps SD 1)."""
    if config.inputs == "scaled":
        return None
    mean = train_x.double().mean(0)
    sd = train_x.double().std(0) if config.inputs == "standardized" else torch.ones_like(mean)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    mean, sd = mean.to(train_x.dtype), sd.to(train_x.dtype)
    return lambda x: (x - mean.to(x.device)) / sd.to(x.device)


@dataclass
class _Data:
    """What one run reads: training images X [N, 784] and labels Y [N] on the device, and the
    splits to evaluate."""

    X: torch.Tensor
    Y: torch.Tensor
    evals: dict[str, mdata.Split]


def _data(
    config: TrainConfig, data: mdata.MNIST, device: torch.device, splits: Sequence[str] | None
) -> _Data:
    dtype = DTYPES[config.dtype]
    train_split, val_split = split_train(data.train, config)
    X, Y = train_split.x.to(device, dtype), train_split.y.to(device)
    evals = {"test": data.test.to(device, dtype)}
    if val_split is not None:
        evals = {"val": val_split.to(device, dtype), **evals}
    if splits is not None:
        if unknown := set(splits) - set(evals):
            raise ValueError(f"splits {sorted(unknown)} not available; choose from {sorted(evals)}")
        evals = {k: v for k, v in evals.items() if k in splits}
    if (change := input_transform(config, X)) is not None:
        X = change(X)
        evals = {k: mdata.Split(change(v.x), v.y) for k, v in evals.items()}
    return _Data(X, Y, evals)


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


def default_eval_steps(config: TrainConfig) -> list[int]:
    """Evaluate after every epoch: the step counts at the epoch ends."""
    return [e * config.steps_per_epoch for e in range(1, config.epochs + 1)]


class _Run:
    """One ``train`` call's state: the engine, the live replicas, the steps taken, the rows."""

    def __init__(
        self,
        config: TrainConfig,
        d: _Data,
        device: torch.device,
        checks: list[int],
        stop: StopRule | None,
        transform: Transform | None,
        on_eval: Callable[[list[dict]], None] | None,
    ) -> None:
        self.config, self.d, self.device, self.checks = config, d, device, checks
        self.stop, self.transform, self.on_eval = stop, transform, on_eval
        models, self.gens = init_models(config)
        dtype = DTYPES[config.dtype]
        c = config
        self.engine: Engine = make_engine(
            c.engine, [m.to(dtype) for m in models], device, c.optimizer, c.momentum, c.weight_decay
        )
        self.shifts = ReplicaShifts(c.max_shift, c.seeds, device) if c.max_shift else None
        self.replicas = list(config.replicas)
        self.alive = list(range(len(self.replicas)))  # indices into replicas, in engine order
        self.lrs = torch.tensor(config.lrs, dtype=dtype, device=device)
        self.step, self.next_check = 0, 0
        self.rows: list[dict] = []
        self.window, self.t0 = _Window(), time.perf_counter()
        self.keep_rows: torch.Tensor | None = None  # live rows of this epoch's order after a drop
        self.first_step_at: float | None = None

    @property
    def finished(self) -> bool:
        return not self.alive or self.next_check >= len(self.checks)

    def epoch(self, verbose: bool) -> None:
        """One pass over the training images (or until the run finishes)."""
        c, n = self.config, len(self.d.Y)
        self.t0 = time.perf_counter()
        spe, total = c.steps_per_epoch, c.steps_per_epoch * c.epochs
        order = batch_order([self.gens[i] for i in self.alive], n).to(self.device)[
            :, : min(n, spe * c.batch_size)
        ]
        self.keep_rows = None
        cuts = [k - self.step for k in self.checks[self.next_check :] if k - self.step <= spe]
        for idx, yb in spans(order, self.d.Y[order], c.batch_size, cuts):
            if self.keep_rows is not None:
                idx, yb = idx[:, self.keep_rows], yb[:, self.keep_rows]
            factors = torch.tensor([lr_factor(c.schedule, self.step + k, total) for k in range(len(idx))])
            lr = factors.to(self.lrs)[:, None] * self.lrs[self.alive][None, :]  # [S, R]
            self.first_step_at = self.first_step_at or time.time()
            self.window.add(*self.engine.steps(self.d.X, idx, yb, lr, self._transform()), yb)
            self.step += len(idx)
            if self.step == self.checks[self.next_check]:
                self.evaluate(verbose)
                if self.finished:
                    return
        self.window.seconds += time.perf_counter() - self.t0

    def _transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        shifts, user, alive = self.shifts, self.transform, list(self.alive)
        if shifts is None:
            return user
        return lambda x: shifts(x, alive) if user is None else user(shifts(x, alive))

    def evaluate(self, verbose: bool) -> None:
        """History rows of the live replicas now; then drop the diverged and the stopped."""
        self.next_check += 1
        self.window.seconds += time.perf_counter() - self.t0
        new = _evaluate(
            self.engine, self.d.evals, self.window, self.replicas, self.alive, self.step, self.config
        )
        self.rows += new
        self.window = _Window()
        if verbose:
            tqdm.write(_eval_line(self.config, new))
        if self.on_eval is not None:
            self.on_eval(new)
        drop = [r["diverged"] for r in new]
        if verbose and any(drop):
            tqdm.write(divergence_message(self.config, [r for r in new if r["diverged"]]))
        if self.stop is not None:
            drop = [a or bool(b) for a, b in zip(drop, self.stop(new), strict=True)]
        if any(drop):
            self.drop(drop)
        self.t0 = time.perf_counter()

    def drop(self, flags: list[bool]) -> None:
        """Stop the live replicas flagged True, mid-epoch too (the epoch's order keeps its rows)."""
        keep = torch.tensor([not f for f in flags], device=self.device)
        self.engine.keep(keep)
        self.alive = [i for i, f in zip(self.alive, flags, strict=True) if not f]
        pos = keep.nonzero().flatten()
        self.keep_rows = pos if self.keep_rows is None else self.keep_rows[pos]

    def state_dicts(self) -> list[dict | None]:
        """The live replicas' weights, None for the others, in the config's order."""
        out: list[dict | None] = [None] * len(self.replicas)
        for i, sd in zip(self.alive, self.engine.state_dicts(), strict=True):
            out[i] = sd
        return out


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
    on_eval: Callable[[list[dict]], None] | None = None,
) -> TrainResult:
    """Train every replica of ``config`` with its optimizer on the mean cross-entropy.

    Returns a ``TrainResult`` whose ``history`` has one row per live replica and evaluation:
    seed, lr, epoch (fractional between epoch ends), step (steps so far), train_loss and
    train_acc (mean over the steps since the previous evaluation, in nats and as a fraction),
    ``<split>_loss``/``<split>_acc`` for each evaluated split (test; val when ``holdout`` > 0),
    dead_1.. (fraction of each hidden layer's units that are zero on every test image),
    wnorm_1.. (Frobenius norm of each layer's weights), seconds (training wall time since the
    previous evaluation), eval_seconds, diverged and collapsed.

    Hooks: ``eval_at`` gives the step counts after which to evaluate (default: every epoch end);
    ``splits`` the splits to evaluate (default all); ``stop`` may drop replicas after each
    evaluation; ``transform`` changes every batch before its step (after ``max_shift``'s shifts);
    ``on_eval`` sees each evaluation's rows. A replica whose loss is non-finite or above
    ``DIVERGED_LOSS`` gets a row with diverged=True and stops; one at chance level (accuracy <
    ``COLLAPSED_ACC``, or a training loss above ln 10 over a whole epoch) is flagged collapsed and
    goes on. ``snapshot_epochs`` (0 = before training) selects epochs whose weights are kept.
    """
    config.validate()
    device = resolve_device(config.device)  # the machine is checked here, not in the config
    snapshot_epochs, t_start = set(snapshot_epochs), time.perf_counter()
    with torch_threads(config.threads):
        tensors = _data(config, _own(config, data), device, splits)
        run = _Run(config, tensors, device, _checks(config, eval_at), stop, transform, on_eval)
        snapshots = {0: run.state_dicts()} if 0 in snapshot_epochs else {}
        with tqdm(
            total=config.epochs, desc=f"batch {config.batch_size}", disable=not progress, mininterval=1
        ) as bar:
            for epoch in range(1, config.epochs + 1):
                if run.finished:
                    break
                run.epoch(verbose)
                if epoch in snapshot_epochs and run.step == epoch * config.steps_per_epoch:
                    snapshots[epoch] = run.state_dicts()
                bar.update()
        final = run.state_dicts()
    seconds = time.perf_counter() - t_start
    return TrainResult(
        config, pd.DataFrame(run.rows), final, snapshots, str(device), seconds, run.first_step_at
    )


def _own(config: TrainConfig, data: mdata.MNIST | None) -> mdata.MNIST:
    """``data``, or the config's dataset loaded; ``ValueError`` when it is another dataset."""
    data = data if data is not None else mdata.load(dataset=config.dataset)
    if data.spec.name != config.dataset:
        raise ValueError(f"dataset is {config.dataset!r} but the data given is {data.spec.name!r}")
    return data


def _checks(config: TrainConfig, eval_at: Iterable[int] | None) -> list[int]:
    """The step counts after which to evaluate, sorted, within the run."""
    total = config.steps_per_epoch * config.epochs
    return sorted({s for s in (eval_at or default_eval_steps(config)) if 1 <= s <= total})


def _evaluate(
    engine: Engine,
    evals: dict[str, mdata.Split],
    window: _Window,
    replicas: list[tuple[int, float]],
    alive: list[int],
    step: int,
    config: TrainConfig,
) -> list[dict]:
    """One history row per live replica after ``step`` steps (see ``train`` for the columns)."""
    t0 = time.perf_counter()
    R, spe = len(alive), config.steps_per_epoch
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
    norms = engine.weight_norms()
    metrics.update({f"wnorm_{k + 1}": norms[:, k].tolist() for k in range(norms.shape[1])})
    eval_seconds = time.perf_counter() - t0
    epoch = step // spe if step % spe == 0 else step / spe
    acc_key = "test_acc" if "test" in evals else f"{next(iter(evals))}_acc"
    at_chance = chance_loss(config.spec.n_classes)
    rows = []
    for j, i in enumerate(alive):
        row: dict = {"seed": replicas[i][0], "lr": replicas[i][1], "epoch": epoch, "step": step}
        row.update({k: v[j] for k, v in metrics.items()})
        row["seconds"], row["eval_seconds"] = window.seconds, eval_seconds
        losses = [v for k, v in row.items() if k.endswith("_loss")]
        row["diverged"] = not all(math.isfinite(v) for v in losses) or row["train_loss"] > DIVERGED_LOSS
        # Training loss counts for collapse only over a whole epoch: a few steps are too noisy.
        at_chance_loss = window.steps >= spe and row["train_loss"] > at_chance
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
