"""The training loop: R replicas (seeds, optionally learning rates) of one configuration in lockstep.

``train`` is the only place that steps an engine; what it computes (when it evaluates, when a
replica stops, which weights it keeps) is its config's, so every run is an experiment with a key.
Resumed from a ``Checkpoint``, a run ends with the history and weights of an uninterrupted one."""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from mlpmnist.config import TrainConfig, resolve_device
from mlpmnist.data import loader as mdata
from mlpmnist.engine.base import Engine, Transform, evaluate
from mlpmnist.engine.reference import ReferenceEngine
from mlpmnist.engine.stacked import StackedEngine
from mlpmnist.model import MLP
from mlpmnist.training import memory
from mlpmnist.training.augment import ReplicaShifts
from mlpmnist.training.health import DIVERGED_LOSS, classify, eval_line, outcome_message
from mlpmnist.training.result import TrainResult

#: What a checkpoint's state holds (see ``_Run.state``); a state of another version is not used.
STATE_VERSION = 1


class Checkpoint(Protocol):
    """Where ``train`` keeps its state between epochs (``store.checkpoint``): ``load`` the last
    saved one (None if none, or not this run's), ``save`` one."""

    def load(self) -> dict[str, Any] | None: ...
    def save(self, state: dict[str, Any]) -> object: ...


#: No step: larger than any step count (a replica that never had a bad step).
NO_STEP = 2**62
#: What sees each evaluation's history rows as they are made, or None.
OnEval = Callable[[list[dict]], None] | None


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier on the base lr at 0-based ``step`` of ``total`` steps."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total))
    if schedule == "linear":
        return 1.0 - step / total
    return 1.0


def spans(order: Tensor, Yo: Tensor, B: int, cuts: Iterable[int]) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch's steps as runs of consecutive steps, each (indices [S, R, b], labels [S, R, b]):
    the full batches of ``B`` in runs that end at each of ``cuts`` (step counts into the epoch,
    where the caller evaluates), then the remainder of ``order`` [R, n] as a step of its own."""
    R, n = order.shape
    full = n // B
    # One copy per epoch makes every full batch a contiguous [R, B] block.
    blocks = order[:, : full * B].view(R, full, B).transpose(0, 1).contiguous()
    labels = Yo[:, : full * B].view(R, full, B).transpose(0, 1).contiguous()
    start = 0
    for end in sorted({c for c in cuts if 0 < c < full} | {full}):
        yield blocks[start:end], labels[start:end]
        start = end
    if full * B < n:
        yield order[None, :, full * B :], Yo[None, :, full * B :]


def split_train(train: mdata.Split, config: TrainConfig) -> tuple[mdata.Split, mdata.Split | None]:
    """(training split, validation split or None): the first ``n_train`` images, then ``holdout``."""
    n = config.n_train
    end = n + config.holdout
    val = mdata.Split(train.x[n:end], train.y[n:end]) if config.holdout else None
    return mdata.Split(train.x[:n], train.y[:n]), val


def init_models(config: TrainConfig) -> tuple[list[MLP], list[torch.Generator]]:
    """One MLP per replica, initialised from its seed, and that seed's generator, which then
    shuffles the replica's batches: a seed fixes both, whatever the engine or the other replicas."""
    c, gens = config, [torch.Generator().manual_seed(s) for s in config.seeds]
    models = [
        MLP(c.hidden, c.spec.n_features, c.spec.n_classes, generator=g, activation=c.activation) for g in gens
    ]
    return models, gens


def input_transform(config: TrainConfig, train_x: Tensor) -> Transform:
    """How ``config.inputs`` changes the pixels, from the training images ``train_x`` [N, 784]: None
    (scaled), minus each pixel's mean (centered), also divided by its SD (standardized; 0 -> 1)."""
    if config.inputs == "scaled":
        return None
    mean = train_x.double().mean(0)
    sd = train_x.double().std(0) if config.inputs == "standardized" else torch.ones_like(mean)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    mean, sd = mean.to(train_x.dtype), sd.to(train_x.dtype)
    return lambda x: (x - mean.to(x.device)) / sd.to(x.device)


@dataclass
class _Window:
    """What the steps since the last evaluation saw, summed per live replica."""

    loss: Tensor | None = None  # summed -log p(true class), nats
    correct: Tensor | None = None
    bad: Tensor | None = None  # per replica: the first step whose loss was bad, else NO_STEP
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0

    def add(self, logp: Tensor, pred: Tensor, y: Tensor, before: int) -> None:
        """Steps' outputs and labels, each [S, R, b], of the steps after the first ``before``."""
        loss, correct = -logp.double().sum((0, 2)), (pred == y).sum((0, 2))
        self.loss = loss if self.loss is None else self.loss + loss
        self.correct = correct if self.correct is None else self.correct + correct
        # Where a replica diverged: its first step whose mean loss was non-finite or too large
        # (on the device, read at the evaluation: no synchronisation per step).
        mean = -logp.mean(2)
        bad_here = ~torch.isfinite(mean) | (mean > DIVERGED_LOSS)
        numbers = torch.arange(before + 1, before + 1 + len(mean), device=mean.device)[:, None]
        first = torch.where(bad_here, numbers, NO_STEP).amin(0)
        self.bad = first if self.bad is None else torch.minimum(self.bad, first)
        self.examples += y.shape[0] * y.shape[2]
        self.steps += y.shape[0]


def eval_steps(config: TrainConfig) -> list[int]:
    """The step counts after which ``config`` evaluates, sorted: every epoch's end, and with
    ``eval_ratio`` steps spaced by that ratio (rounded up) from ``eval_from`` images on, so a first
    step at a target is overestimated by at most the ratio, whatever the batch size."""
    spe = config.steps_per_epoch
    total = spe * config.epochs
    steps = {e * spe for e in range(1, config.epochs + 1)}
    if config.eval_ratio is not None:
        first = min(max(1, math.ceil(config.eval_from / config.batch_size)), total)
        n = math.ceil(math.log(total / first) / math.log(config.eval_ratio)) + 1
        steps |= {min(total, math.ceil(first * config.eval_ratio**k - 1e-9)) for k in range(n)}
    return sorted(steps)


class _Run:
    """One ``train`` call's state: the engine, the live replicas, the steps taken, the rows."""

    def __init__(
        self, c: TrainConfig, data: mdata.Data | None, device: torch.device, on_eval: OnEval
    ) -> None:
        self.config, self.device, self.on_eval = c, device, on_eval
        # What the run reads, on the device: training images X [N, 784], labels Y [N], the splits to evaluate.
        data = data if data is not None else mdata.load(dataset=c.dataset)
        if data.spec.name != c.dataset:
            raise ValueError(f"dataset is {c.dataset!r} but the data given is {data.spec.name!r}")
        dtype = getattr(torch, c.dtype)
        train_split, val_split = split_train(data.train, c)
        self.X, self.Y = train_split.x.to(device, dtype), train_split.y.to(device)
        splits = {"val": val_split, "test": data.test}  # test last: a row's dead units are the last split's
        self.evals = {k: s.to(device, dtype) for k, s in splits.items() if s is not None}
        if (change := input_transform(c, self.X)) is not None:
            self.X = change(self.X)
            self.evals = {k: mdata.Split(change(v.x), v.y) for k, v in self.evals.items()}
        self.checks = eval_steps(c)
        self.snaps = {round(e * c.steps_per_epoch): float(e) for e in c.snapshots}  # step -> epoch
        models, self.gens = init_models(c)
        models = [m.to(dtype) for m in models]
        kind = ReferenceEngine if c.engine == "reference" else StackedEngine
        self.engine: Engine = kind(
            models, device, optimizer=c.optimizer, momentum=c.momentum, weight_decay=c.weight_decay
        )
        self.shifts = ReplicaShifts(c.max_shift, c.seeds, c.spec.image_shape, device) if c.max_shift else None
        self.replicas = list(c.replicas)
        self.alive = list(range(len(self.replicas)))  # indices into replicas, in engine order
        self.lrs = torch.tensor(c.lrs, dtype=dtype, device=device)
        self.step, self.next_check = 0, 0
        self.rows: list[dict] = []
        self.snapshots: dict[float, list[dict | None]] = {}
        self.window, self.t0 = _Window(), time.perf_counter()
        self.keep_rows: Tensor | None = None  # live rows of this epoch's order after a drop
        self.first_step_at: float | None = None
        if 0 in self.snaps:
            self.snapshots[0.0] = self.state_dicts()

    @property
    def finished(self) -> bool:
        return not self.alive or self.next_check >= len(self.checks)

    def epoch(self, verbose: bool) -> None:
        """One pass over the training images (or until the run finishes)."""
        c, n = self.config, len(self.Y)
        self.t0 = time.perf_counter()
        spe, total = c.steps_per_epoch, c.steps_per_epoch * c.epochs
        # Each replica's batches: a fresh permutation from its own generator.
        order = torch.stack([torch.randperm(n, generator=self.gens[i]) for i in self.alive])
        order = order.to(self.device)[:, : min(n, spe * c.batch_size)]
        self.keep_rows = None
        stops = [*self.checks[self.next_check :], *self.snaps]
        cuts = [k - self.step for k in stops if 0 < k - self.step <= spe]
        for idx, yb in spans(order, self.Y[order], c.batch_size, cuts):
            if self.keep_rows is not None:
                idx, yb = idx[:, self.keep_rows], yb[:, self.keep_rows]
            factors = torch.tensor([lr_factor(c.schedule, self.step + k, total) for k in range(len(idx))])
            lr = factors.to(self.lrs)[:, None] * self.lrs[self.alive][None, :]  # [S, R]
            self.first_step_at = self.first_step_at or time.time()
            shifts = None if self.shifts is None else functools.partial(self.shifts, alive=list(self.alive))
            self.window.add(*self.engine.steps(self.X, idx, yb, lr, shifts), yb, self.step)
            self.step += len(idx)
            if self.step in self.snaps:
                self.snapshots[self.snaps[self.step]] = self.state_dicts()
            if self.step == self.checks[self.next_check]:
                self.evaluate(verbose)
                if self.finished:
                    return
        self.window.seconds += time.perf_counter() - self.t0

    def evaluate(self, verbose: bool) -> None:
        """History rows of the live replicas now; then drop the diverged and those at their target."""
        self.next_check += 1
        self.window.seconds += time.perf_counter() - self.t0
        # Between epoch ends (eval_ratio's checks) only the validation split is looked at.
        evals = self.evals
        if self.step % self.config.steps_per_epoch and "val" in evals:
            evals = {"val": evals["val"]}
        new = self._rows(evals)
        self.rows += new
        self.window = _Window()
        if verbose:
            tqdm.write(eval_line(self.config, new))
        if self.on_eval is not None:
            self.on_eval(new)
        drop = [r["diverged"] or r["reached"] for r in new]
        if verbose and any(r["diverged"] for r in new):
            gone = {(r["seed"], r["lr"]) for r in new if r["diverged"]}
            history = [r for r in self.rows if (r["seed"], r["lr"]) in gone]
            tqdm.write(outcome_message(self.config, history) or "")
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

    def state(self) -> dict[str, Any] | None:
        """Everything the next epochs depend on, as CPU tensors and plain values; None for an engine
        without ``state`` (the reference engine)."""
        tensors = getattr(self.engine, "state", None)
        if tensors is None:
            return None
        return {
            "version": STATE_VERSION,
            "key": self.config.key(),
            "step": self.step,
            "next_check": self.next_check,
            "alive": list(self.alive),
            "engine": [t.detach().cpu().clone() for t in tensors()],
            "generators": [g.get_state() for g in self.gens],
            "shifts": [g.get_state() for g in self.shifts.gens] if self.shifts is not None else [],
            "rows": json.dumps(self.rows),  # floats round-trip exactly; NaN included
            "snapshots": [[e, sds] for e, sds in self.snapshots.items()],
            "first_step_at": self.first_step_at,
        }

    def restore(self, state: dict[str, Any]) -> bool:
        """Continue from ``state`` (``state``'s, for this config); else False, changing nothing."""
        tensors = getattr(self.engine, "state", None)
        if tensors is None or state.get("version") != STATE_VERSION or state.get("key") != self.config.key():
            return False
        self.drop([i not in state["alive"] for i in self.alive])  # alive: in order, as every drop leaves it
        for t, saved in zip(tensors(), state["engine"], strict=True):
            t.copy_(saved)
        gens = [*self.gens, *(self.shifts.gens if self.shifts is not None else [])]
        for g, saved in zip(gens, [*state["generators"], *state["shifts"]], strict=True):
            g.set_state(saved)
        self.step, self.next_check = int(state["step"]), int(state["next_check"])
        self.rows = json.loads(state["rows"])
        self.snapshots = {float(e): sds for e, sds in state["snapshots"]}
        self.first_step_at = state["first_step_at"]
        return True

    def state_dicts(self) -> list[dict | None]:
        """The live replicas' weights, None for the others, in the config's order."""
        live = dict(zip(self.alive, self.engine.state_dicts(), strict=True))
        return [live.get(i) for i in range(len(self.replicas))]

    def _rows(self, evals: dict[str, mdata.Split]) -> list[dict]:
        """One history row per live replica now (see ``train`` for the columns)."""
        t0, window = time.perf_counter(), self.window
        R, spe = len(self.alive), self.config.steps_per_epoch
        assert window.loss is not None and window.correct is not None, "an evaluation follows steps"
        metrics: dict[str, list[float]] = {
            "train_loss": (window.loss / window.examples).tolist(),  # nats
            "train_acc": (window.correct.double() / window.examples).tolist(),
        }
        for name, split in evals.items():  # the last split's dead units are kept (test's, see __init__)
            loss, acc, dead = evaluate(self.engine, split.x, split.y)
            metrics[f"{name}_loss"], metrics[f"{name}_acc"] = loss.tolist(), acc.tolist()
        metrics.update({f"dead_{k + 1}": dead[:, k].tolist() for k in range(dead.shape[1])})
        norms = self.engine.weight_norms()
        metrics.update({f"wnorm_{k + 1}": norms[:, k].tolist() for k in range(norms.shape[1])})
        eval_seconds = time.perf_counter() - t0
        epoch = self.step // spe if self.step % spe == 0 else self.step / spe
        bad = window.bad.tolist() if window.bad is not None else [NO_STEP] * R
        rows = []
        for j, i in enumerate(self.alive):
            seed, lr = self.replicas[i]
            row: dict = {"seed": seed, "lr": lr, "epoch": epoch, "step": self.step}
            row.update({k: v[j] for k, v in metrics.items()})
            row["seconds"], row["eval_seconds"] = window.seconds, eval_seconds
            row.update(classify(row, self.config, whole_epoch=window.steps >= spe))
            if row["diverged"] and bad[j] < NO_STEP:  # only there: a run that went well keeps its columns
                row["diverged_at"] = bad[j]
            rows.append(row)
        return rows


def train(
    config: TrainConfig,
    data: mdata.Data | None = None,
    *,
    progress: bool = True,
    verbose: bool = True,
    on_eval: OnEval = None,
    checkpoint: Checkpoint | None = None,
) -> TrainResult:
    """Train every replica of ``config`` with its optimizer on the mean cross-entropy; returns a
    ``TrainResult`` whose ``history`` has one row per live replica and evaluation (``eval_steps``):
    seed, lr, epoch (fractional between epoch ends), step, train_loss and train_acc (over the steps
    since the previous evaluation; nats, fraction), ``<split>_loss``/``<split>_acc`` per evaluated
    split (test, and val with ``holdout``; between epoch ends val only), dead_1.. (fraction of each
    hidden layer's units zero on every image of the split, test at epoch ends), wnorm_1.. (Frobenius
    norm of each layer's weights), seconds (training wall time since the previous evaluation),
    eval_seconds and ``health.classify``'s flags. A diverged replica stops, as does one at its
    ``target``; one at chance level goes on. ``data`` defaults to the config's dataset, loaded.
    ``checkpoint``: where the state is saved after every epoch but the last and resumed from (the
    fast engine only)."""
    config.validate()
    device = resolve_device(config.device)  # the machine is checked here, not in the config
    memory.check(config, device)  # before anything is allocated: the numbers, in one line
    t_start = time.perf_counter()
    threads = torch.get_num_threads()  # the process's setting, restored at the end
    torch.set_num_threads(config.threads or threads)
    try:
        run = _Run(config, data, device, on_eval)
        saved = checkpoint.load() if checkpoint is not None else None
        done = run.step // config.steps_per_epoch if saved is not None and run.restore(saved) else 0
        with tqdm(
            total=config.epochs,
            initial=done,
            desc=f"batch {config.batch_size}",
            disable=not progress,
            mininterval=1,
        ) as bar:
            for _ in range(done, config.epochs):  # bounded, though the last epoch's evaluation finishes it
                if run.finished:
                    break
                run.epoch(verbose)
                bar.update()
                if checkpoint is not None and not run.finished and (state := run.state()) is not None:
                    checkpoint.save(state)
        final = run.state_dicts()
    except (MemoryError, RuntimeError) as e:
        if (error := memory.ran_out(config, device, e)) is None:
            raise
        raise error from None
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t_start
    return TrainResult(
        config, pd.DataFrame(run.rows), final, run.snapshots, str(device), seconds, run.first_step_at
    )
