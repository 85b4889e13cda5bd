"""Experiments as the experiment notebook (``experiment.ipynb``, shipped in the package) runs
them: its parameters in (``PARAMETERS``, described in its ``parameters`` cell, or any
``TrainConfig`` field on its own: ``papermill ... -p batch_size 32``), records and weights out.

The experiments train as groups (``groups.plan_groups``: those that differ only in seeds and lr
share an engine) through ``train_groups``, so one kernel pays the fixed costs once for all of
them; each experiment is stored as soon as its group finishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from mlpmnist import paths, store
from mlpmnist.config import FIELDS, TrainConfig, check_names
from mlpmnist.data import loader as mdata
from mlpmnist.store.checkpoint import Checkpoints
from mlpmnist.store.records import failed_seeds, median_final
from mlpmnist.training.groups import Group, member_result, plan_groups
from mlpmnist.training.many import GroupOutcome, train_groups

PARAMETERS = ("config", "configs", "data_dir", "results_dir", "check_data", "job", "concurrency")
#: Seconds between two heartbeats of a running job (the sweep's stall watchdog reads them).
HEARTBEAT_S = 2.0


def notebook_path() -> Path:
    """The experiment notebook shipped with the package."""
    return Path(str(resources.files("mlpmnist.sweep") / "experiment.ipynb"))


def heartbeat_path(results_dir: str | os.PathLike, job: str) -> Path:
    """Where job ``job`` says it is alive, in its scratch folder (``store.inside``)."""
    return store.inside(results_dir, Path(results_dir) / ".scratch" / job / "heartbeat.json")


@dataclass(frozen=True)
class Experiments:
    """What one notebook run computes (``configs``) and where it reads and writes."""

    configs: tuple[TrainConfig, ...]
    data_dir: str | None
    results_dir: Path
    check_data: bool = True
    job: str = field(default_factory=lambda: f"run-{uuid.uuid4().hex[:8]}")
    concurrency: int | None = None

    def describe(self) -> str:
        """One line per group: its experiments' keys and its replicas."""
        lines = [f"job {self.job}: {len(self.configs)} experiment(s) -> {self.results_dir}"]
        for g in plan_groups(self.configs):
            lines.append(f"  {len(g.config.seeds)} replicas in one engine: {', '.join(g.keys)}")
        return "\n".join(lines)


def _as_mapping(value: object, name: str) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{name} must be a dict of TrainConfig fields (or its JSON); got {value!r}"
            ) from e
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict of TrainConfig fields; got {value!r}")
    return value


def from_parameters(names: Mapping[str, Any], before: set[str] | frozenset[str] = frozenset()) -> Experiments:
    """The experiments that ``names`` (a notebook's ``globals()``, less ``before`` and private
    names) describe. ``config`` may be a dict or its JSON text, and field names override it;
    ``configs`` (a list of such dicts) stands alone. ``ValueError`` names an unknown name."""
    names = {k: v for k, v in names.items() if k not in before and not k.startswith("_")}
    check_names(names, "experiment parameter", (*PARAMETERS, *FIELDS))
    fields = {k: v for k, v in names.items() if k in FIELDS}
    many = names.get("configs") or []
    if many and (names.get("config") or fields):
        raise ValueError(
            "give either configs (a sweep's list) or config and fields (one experiment), not both"
        )
    if not isinstance(many, (list, tuple)):
        raise ValueError(f"configs must be a list of dicts of TrainConfig fields; got {many!r}")
    dicts = [_as_mapping(c, "each of configs") for c in many] or [
        {**_as_mapping(names.get("config") or {}, "config"), **fields}
    ]
    results_dir = names.get("results_dir")
    extra = {"job": names["job"]} if names.get("job") else {}
    return Experiments(
        configs=tuple(TrainConfig.from_mapping(d) for d in dicts),
        data_dir=names.get("data_dir"),
        results_dir=Path(results_dir) if results_dir else paths.base() / "results",
        check_data=bool(names.get("check_data", True)),
        concurrency=names.get("concurrency"),
        **extra,
    )


class Heartbeat:
    """A daemon thread that rewrites ``path`` every ``HEARTBEAT_S`` seconds with the pid, time and
    ``progress`` (key -> [latest evaluated epoch, epochs]), so a watchdog tells a frozen kernel
    from a slow one. A context manager; the file goes on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.progress: dict[str, list[float]] = {}
        self._lock = threading.Lock()  # groups on a GPU tick from their own threads
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the sweep's scratch folder stays; a bare run's goes
            self.path.parent.rmdir()

    def tick(self, group: Group, rows: list[dict]) -> None:
        """``train_groups``'s ``on_eval`` hook: one more evaluation of ``group`` done."""
        epoch = max((float(r["epoch"]) for r in rows), default=0.0)
        with self._lock:
            for m in group.members:
                self.progress[m.key()] = [epoch, float(m.epochs)]

    def done(self, key: str) -> None:
        """The experiment ``key`` is stored: no longer in ``progress``."""
        with self._lock:
            self.progress.pop(key, None)

    def _beat(self) -> None:
        while True:
            with self._lock:
                state = {"pid": os.getpid(), "time": time.time(), "progress": dict(self.progress)}
            try:
                store.atomic_write_text(self.path, json.dumps(state))
            except (OSError, store.StoreError):
                # A full disk: the file's time alone, which the watchdog reads, needs no space.
                with contextlib.suppress(OSError):
                    self.path.touch()
            if self._stop.wait(HEARTBEAT_S):
                return


def run(exp: Experiments, log: Any = print) -> pd.DataFrame:
    """Train and store every experiment of ``exp`` (see the module). Returns one row per
    experiment (``_finish``). A group that fails, or cannot be stored, fails its experiments
    (``failed/<key>.json``) and the others go on. Each group resumes from its checkpoint
    (``store.checkpoint``), which goes once its experiments are stored."""
    t0 = time.time()
    rows: dict[str, dict] = {}
    with Heartbeat(heartbeat_path(exp.results_dir, exp.job)) as beat:
        names = dict.fromkeys(c.dataset for c in exp.configs)
        datasets = {d: mdata.load(exp.data_dir, dataset=d, check=exp.check_data) for d in names}
        # train_groups shares one device and one dataset among its groups.
        batches: dict[tuple[str, str], list] = {}
        for g in plan_groups(exp.configs):
            batches.setdefault((g.config.device, g.config.dataset), []).append(g)
        for (_, dataset), groups in batches.items():
            outcomes = train_groups(
                groups,
                datasets[dataset],
                concurrency=exp.concurrency,
                on_eval=beat.tick,
                checkpoints=lambda g: Checkpoints(exp.results_dir, g.config),
            )
            for out in outcomes:
                for m in out.group.members:
                    rows[m.key()] = _finish(exp, m, out, t0, log)
                    beat.done(m.key())
                if all(rows[m.key()]["status"] == "done" for m in out.group.members):
                    Checkpoints(exp.results_dir, out.group.config).remove()  # stored: not needed
    return pd.DataFrame([rows[c.key()] for c in exp.configs])


def _finish(exp: Experiments, member: TrainConfig, out: GroupOutcome, t0: float, log: Any) -> dict:
    """Store one member of a trained group and ``log`` its line; its row of ``run``'s table: key,
    ``table_row``'s columns for batch_size and lr (status done, or failed: ``failed/<key>.json``
    says why), seconds (the stored record's training time; the group's wall time if it failed),
    error."""
    key = member.key()
    record = None
    error = out.error
    if out.result is not None:
        mine = member_result(out.result, member)
        job = {"id": exp.job, "start_seconds": (mine.first_step_at or t0) - t0}
        try:
            record = store.save_result(mine, exp.results_dir, job=job)
        except (OSError, store.StoreError) as e:  # a full disk, a FIFO: this one fails, the others go on
            error = cannot(e)
    if record is None:
        # On a full disk the sweep names the failure from the notebook's error instead.
        store.write_failure(exp.results_dir, key, str(error), job=exp.job, config=member.to_dict())
        log(f"{key}: FAILED: {error}")
        row = table_row(member, ("batch_size", "lr"), "failed", None)
        return {"key": key, **row, "seconds": round(out.seconds, 1), "error": error}
    log(finished_line(key, record))
    row = table_row(member, ("batch_size", "lr"), "done", record)
    # The record's seconds: line and record agree.
    return {"key": key, **row, "seconds": round(record["seconds"], 1), "error": error, "note": record["note"]}


def table_row(exp: TrainConfig, names: Iterable[str], status: str, record: dict | None) -> dict:
    """An experiment's row in a table of experiments (its kernel's, its sweep's, the live view's):
    its fields ``names``, ``status``, replicas, failed seeds and median final test accuracy (%,
    ``record``'s)."""
    return {
        **{name: getattr(exp, name) for name in names},
        "status": status,
        "replicas": len(exp.seeds),
        "failed_seeds": len(failed_seeds(record)) if record else 0,
        "median_test_acc_%": round(median_final(record), 2) if record else float("nan"),
    }


def cannot(e: OSError | store.StoreError) -> str:
    """A file fault in words: 'cannot write <file> (<cause>)', or the store's own message."""
    if isinstance(e, OSError):
        return f"cannot write {e.filename or 'a file'} ({e.strerror or e})"
    return str(e)


def finished_line(key: str, record: dict) -> str:
    """A stored experiment's log line, in its kernel and in the sweep: its median final test
    accuracy, seconds, and what its failed seeds did (the record's note)."""
    bad = failed_seeds(record)
    flag = f"; {len(bad)} of {len(record['replicas'])} seeds failed: {record['note']}" if bad else ""
    accuracy = f"median final test accuracy {median_final(record):.2f}%"
    return f"{key}: done, {accuracy} ({record['seconds']:.1f} s){flag}"


def check(table: pd.DataFrame) -> None:
    """``RuntimeError`` listing every failed experiment as ``key: error``, one per line (so the
    notebook, and through it the sweep, fails them)."""
    failed = table[table["status"] == "failed"]
    if len(failed):
        lines = [f"{k}: {e}" for k, e in zip(failed["key"], failed["error"], strict=True)]
        raise RuntimeError(f"{len(failed)} experiment(s) failed:\n" + "\n".join(lines))
