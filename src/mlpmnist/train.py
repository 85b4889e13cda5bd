"""Train R replicas (seeds, optionally learning rates) of one configuration in lockstep."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
from tqdm import tqdm

from . import data as mdata
from .batching import batch_order, batches, gather_batch
from .engine import ENGINES, evaluate
from .model import MLP

SCHEDULES = ("constant", "cosine", "linear")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Mean cross-entropy (nats) above which a replica counts as diverged: chance level is ln 10 = 2.3,
# and a runaway replica can sit at a huge but finite loss once its ReLUs have died.
DIVERGED_LOSS = 1e3
DEVICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def _fail(name: str, value: object, allowed: str) -> None:
    raise ValueError(f"{name} must be {allowed}; got {value!r}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _as_tuple(v: object) -> object:
    return tuple(v) if isinstance(v, (list, tuple)) else v


@dataclass(frozen=True)
class TrainConfig:
    """One training configuration; replicas differ by seed (and optionally by lr).

    ``lr`` is a number shared by all replicas, or one number per seed. ``holdout`` keeps the
    last N training images aside as a validation split. ``train_limit`` trains on the first N
    training images only (before the holdout is taken off). Like the reference's DataLoader,
    an epoch ends with the remainder as a smaller batch unless ``drop_last``. ``dtype``
    float64 is for checking the engines against each other, not for speed.
    """

    batch_size: int = 90
    epochs: int = 15
    lr: float | tuple[float, ...] = 0.1
    seeds: tuple[int, ...] = (0,)
    hidden: tuple[int, ...] = (64, 64)
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    engine: str = "fast"
    device: str = "auto"
    threads: int | None = None
    train_limit: int | None = None
    holdout: int = 0
    drop_last: bool = False
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("lr", "seeds", "hidden"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        if isinstance(self.lr, tuple) and len(self.lr) == 1 and len(self.seeds) != 1:
            object.__setattr__(self, "lr", self.lr[0])
        self.validate()

    @property
    def n_train(self) -> int:
        """Training examples per epoch."""
        n = mdata.TRAIN_SIZE if self.train_limit is None else self.train_limit
        return n - self.holdout

    @property
    def lrs(self) -> tuple[float, ...]:
        """One learning rate per replica."""
        return self.lr if isinstance(self.lr, tuple) else (self.lr,) * len(self.seeds)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field, its value and what is allowed."""
        if self.train_limit is not None and (
            not _is_int(self.train_limit) or not 1 <= self.train_limit <= mdata.TRAIN_SIZE
        ):
            _fail("train_limit", self.train_limit, f"None or an integer in [1, {mdata.TRAIN_SIZE}]")
        n_all = mdata.TRAIN_SIZE if self.train_limit is None else self.train_limit
        if not _is_int(self.holdout) or not 0 <= self.holdout < n_all:
            _fail("holdout", self.holdout, f"an integer in [0, {n_all - 1}]")
        if not _is_int(self.batch_size) or not 1 <= self.batch_size <= self.n_train:
            _fail(
                "batch_size",
                self.batch_size,
                f"an integer in [1, {self.n_train}] (the training-set size)",
            )
        if not _is_int(self.epochs) or self.epochs < 1:
            _fail("epochs", self.epochs, "an integer >= 1")
        if not isinstance(self.seeds, tuple) or not self.seeds:
            _fail("seeds", self.seeds, "a non-empty list of integers")
        if not all(_is_int(s) and 0 <= s < 2**63 for s in self.seeds):
            _fail("seeds", self.seeds, "a list of integers in [0, 2**63)")
        lrs = self.lr if isinstance(self.lr, tuple) else (self.lr,)
        if not all(_is_finite_number(v) and v > 0 for v in lrs):
            _fail("lr", self.lr, "a finite positive number (or one per seed)")
        if isinstance(self.lr, tuple) and len(self.lr) != len(self.seeds):
            _fail("lr", self.lr, f"a number or a list of {len(self.seeds)} (one per seed)")
        replicas = list(zip(self.seeds, self.lrs))
        if len(set(replicas)) != len(replicas):
            dup = sorted({r for r in replicas if replicas.count(r) > 1})
            _fail("seeds", self.seeds, f"distinct (seed, lr) replicas; duplicated: {dup}")
        if not self.hidden or not all(_is_int(h) and h >= 1 for h in self.hidden):
            _fail("hidden", self.hidden, "a non-empty list of positive integers")
        if not _is_finite_number(self.momentum) or not 0 <= self.momentum < 1:
            _fail("momentum", self.momentum, "a number in [0, 1)")
        if not _is_finite_number(self.weight_decay) or self.weight_decay < 0:
            _fail("weight_decay", self.weight_decay, "a finite number >= 0")
        if self.schedule not in SCHEDULES:
            _fail("schedule", self.schedule, f"one of {SCHEDULES}")
        if not isinstance(self.drop_last, bool):
            _fail("drop_last", self.drop_last, "True or False")
        if self.dtype not in DTYPES:
            _fail("dtype", self.dtype, f"one of {tuple(DTYPES)}")
        if self.engine not in ENGINES:
            _fail("engine", self.engine, f"one of {tuple(ENGINES)}")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            _fail("threads", self.threads, "None or an integer >= 1")
        resolve_device(self.device)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def resolve_device(device: str | None) -> torch.device:
    """``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
        _fail("device", device, DEVICES)
    try:
        dev = torch.device(device)
    except RuntimeError:
        _fail("device", device, DEVICES)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            _fail("device", device, "'cpu' or 'auto' here: torch.cuda.is_available() is False")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            _fail("device", device, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return dev


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
    """``history``: one row per replica per finished epoch (see ``train``). ``state_dicts``:
    final weights per replica (None where it diverged). ``snapshots``: epoch -> state dicts."""

    config: TrainConfig
    history: pd.DataFrame
    state_dicts: list[dict | None]
    snapshots: dict[int, list[dict | None]] = field(default_factory=dict)
    device: str = "cpu"
    seconds: float = 0.0

    @property
    def diverged(self) -> list[int]:
        """Seeds of the replicas that diverged."""
        if self.history.empty:
            return []
        return sorted(self.history.loc[self.history["diverged"], "seed"].unique().tolist())


def _epoch_line(epoch: int, epochs: int, rows: list[dict], seconds: float) -> str:
    acc = torch.tensor([r["test_acc"] for r in rows if not r["diverged"]], dtype=torch.float64)
    spread = f" ± {100 * acc.std().item():.2f}" if len(acc) > 1 else ""
    mean = f"{100 * acc.mean().item():.2f}%" if len(acc) else "n/a"
    loss = sum(r["train_loss"] for r in rows) / len(rows)
    return (
        f"epoch {epoch:>3}/{epochs}  train_loss {loss:.4f}  test_acc {mean}{spread}"
        f"  ({len(acc)} replicas, {seconds:.1f} s)"
    )


def train(
    config: TrainConfig,
    data: mdata.MNIST | None = None,
    *,
    progress: bool = True,
    verbose: bool = True,
    snapshot_epochs: Iterable[int] = (),
    on_epoch: Callable[[int, list[dict]], None] | None = None,
) -> TrainResult:
    """Train every replica of ``config`` with plain (or momentum) SGD on cross-entropy.

    Returns a ``TrainResult`` whose ``history`` has one row per replica and epoch with columns
    seed, lr, epoch, train_loss and test_loss (mean cross-entropy, nats), train_acc and
    test_acc (fractions in [0, 1]), val_loss/val_acc when ``holdout`` > 0, seconds (wall time
    of the epoch's SGD steps, all replicas together), eval_seconds (wall time of the
    evaluation after it) and diverged. Train loss and accuracy are running
    averages over the epoch's batches. A replica whose loss becomes NaN/inf (or exceeds
    ``DIVERGED_LOSS``) gets one row with diverged=True and stops; the others go on.
    ``snapshot_epochs`` (0 = before training) selects epochs whose weights are kept in
    ``snapshots``.
    """
    config.validate()
    device = resolve_device(config.device)
    snapshot_epochs = set(snapshot_epochs)
    t_start = time.perf_counter()
    with torch_threads(config.threads):
        data = data if data is not None else mdata.load()
        train_split, val_split = split_train(data.train, config)
        dtype = DTYPES[config.dtype]
        X, Y = train_split.x.to(device, dtype), train_split.y.to(device)
        pixels = mdata.to_pixels(X)
        evals = {"test": data.test.to(device, dtype)}
        if val_split is not None:
            evals["val"] = val_split.to(device, dtype)

        models, gens = init_models(config)
        models = [m.to(dtype) for m in models]
        engine = ENGINES[config.engine](models, device, config.momentum, config.weight_decay)
        replicas = list(zip(config.seeds, config.lrs))
        alive = list(range(len(replicas)))  # indices into replicas, in engine order
        lrs = torch.tensor(config.lrs, dtype=dtype, device=device)
        snapshots: dict[int, list[dict | None]] = {}
        if 0 in snapshot_epochs:
            snapshots[0] = engine.state_dicts()

        n, B = len(Y), config.batch_size
        steps = n // B if config.drop_last else math.ceil(n / B)
        used = min(n, steps * B)  # examples per epoch
        total = steps * config.epochs
        shared_lr = len(set(config.lrs)) == 1  # a plain float lets the engine fold it into alpha
        rows: list[dict] = []
        bar = tqdm(range(1, config.epochs + 1), desc=f"batch {B}", unit="epoch", disable=not progress)
        for epoch in bar:
            t0 = time.perf_counter()
            order = batch_order([gens[i] for i in alive], n).to(device)[:, :used]
            Yo = Y[order]  # labels in batch order, [R, used]
            lr_alive = lrs[alive]
            picked, preds = [], []
            for s, (idx, yb) in enumerate(batches(order, Yo, B)):
                factor = lr_factor(config.schedule, (epoch - 1) * steps + s, total)
                lr = config.lrs[0] * factor if shared_lr else lr_alive * factor
                lp, pred = engine.step(gather_batch(X, pixels, idx), yb, lr)
                picked.append(lp)
                preds.append(pred)
            train_loss = -torch.cat(picked, 1).double().sum(1) / used
            train_acc = (torch.cat(preds, 1) == Yo).double().sum(1) / used
            metrics = {"train_loss": train_loss.tolist(), "train_acc": train_acc.tolist()}
            t_eval = time.perf_counter()
            for name, split in evals.items():
                loss, acc, _ = evaluate(engine, split.x, split.y)
                metrics[f"{name}_loss"], metrics[f"{name}_acc"] = loss.tolist(), acc.tolist()
            seconds = t_eval - t0
            eval_seconds = time.perf_counter() - t_eval
            epoch_rows = []
            for j, i in enumerate(alive):
                row = {"seed": replicas[i][0], "lr": replicas[i][1], "epoch": epoch}
                row.update({k: v[j] for k, v in metrics.items()})
                row["seconds"] = seconds
                row["eval_seconds"] = eval_seconds
                row["diverged"] = not all(math.isfinite(v[j]) for v in metrics.values()) or (
                    row["train_loss"] > DIVERGED_LOSS
                )
                epoch_rows.append(row)
            rows += epoch_rows
            ok = torch.tensor([not r["diverged"] for r in epoch_rows])
            if not ok.all():
                bad = [r["seed"] for r in epoch_rows if r["diverged"]]
                if verbose:
                    tqdm.write(
                        f"batch {B}: replica(s) with seed {bad} diverged at epoch {epoch} "
                        f"(loss NaN/inf or > {DIVERGED_LOSS:g}); they stop here. Lower lr (now {config.lr})."
                    )
                engine.keep(ok.to(device))
                alive = [i for i, keep in zip(alive, ok.tolist()) if keep]
            if epoch in snapshot_epochs:
                snapshots[epoch] = _by_replica(engine.state_dicts(), alive, len(replicas))
            if verbose:
                line = _epoch_line(epoch, config.epochs, epoch_rows, seconds + eval_seconds)
                tqdm.write(f"batch {B:>4} {line}")
            if on_epoch is not None:
                on_epoch(epoch, epoch_rows)
            if not alive:
                break
        bar.close()
        final = _by_replica(engine.state_dicts(), alive, len(replicas))
    return TrainResult(
        config=config,
        history=pd.DataFrame(rows),
        state_dicts=final,
        snapshots=snapshots,
        device=str(device),
        seconds=time.perf_counter() - t_start,
    )


def _by_replica(state_dicts: list[dict], alive: list[int], n: int) -> list[dict | None]:
    out: list[dict | None] = [None] * n
    for i, sd in zip(alive, state_dicts):
        out[i] = sd
    return out
