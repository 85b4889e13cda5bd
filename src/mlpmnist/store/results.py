"""The results store and the tidy frame.

Every experiment has one key (``TrainConfig.key()``: readable fields and a hash of every
result-changing field), and under a results directory its files are named by it::

    runs/<key>.json       the run record: config, per-replica history and status, versions
    notebooks/<key>.ipynb the executed experiment notebook
    models/<key>.pt       final weights of every replica
    logs/<key>.log        the experiment kernel's own stderr
    failed/<key>.json     why the last attempt failed (removed when it succeeds)
    locks/<key>.lock      held while the experiment runs, so it never runs twice at once

Experiments of different configs coexist in one directory. Every file is written atomically
(a temporary file in the same directory, then a rename).
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import json
import math
import os
import platform
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mlpmnist.config import FIELDS, TrainConfig, baseline, check_names, field_names, field_types
from mlpmnist.errors import StoreError
from mlpmnist.model import MLP
from mlpmnist.paths import package_version
from mlpmnist.training.loop import TrainResult, divergence_message

RECORD_VERSION = 2
KINDS = {
    "runs": ".json",
    "notebooks": ".ipynb",
    "models": ".pt",
    "logs": ".log",
    "failed": ".json",
    "locks": ".lock",
}
# Columns first in the frame; then the config's other fields, then the metrics.
LEAD = ["key", "batch_size", "seed", "lr", "epoch", "step"]


def path(results_dir: str | os.PathLike, kind: str, key: str) -> Path:
    """Where the ``kind`` file (runs, notebooks, models, logs, failed, locks) of ``key`` lives."""
    return Path(results_dir) / kind / f"{key}{KINDS[kind]}"


def writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """``folder``, created if needed, checked by writing to it; ``ValueError`` naming ``what``
    (e.g. ``--media``) and the folder when it is a file or cannot be created or written."""
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise ValueError(f"{what} {folder} is {_what_is(folder)}, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # a unique name, gone when closed
            pass
    except OSError as e:
        raise ValueError(
            f"{what} {folder} cannot be created or written ({e.strerror}); choose another path"
        ) from e
    return folder


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "a file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def file_target(target: str | os.PathLike, what: str = "") -> Path:
    """Where writing ``target`` by a rename lands: ``target``, or the regular file it links to
    (the link stays). ``StoreError`` when ``target`` exists and is not a regular file (a folder,
    a FIFO, a device, a socket, a link to one, or a link that loops), which a rename would
    replace; ``what`` (e.g. ``--out``) starts the message."""
    target = Path(target)
    label = f"{what} {target}".strip()
    try:
        st = target.stat()  # follows links
    except OSError as e:
        if e.errno != errno.ELOOP:  # nothing there (yet): its folder's checks say the rest
            return Path(os.path.realpath(target)) if target.is_symlink() else target
        raise StoreError(
            f"{label} cannot be followed ({e.strerror}); remove it or choose another path"
        ) from e
    if not stat.S_ISREG(st.st_mode):
        link = " links to" if target.is_symlink() else " is"
        raise StoreError(
            f"{label}{link} {_kind(st.st_mode)}, not a regular file, and writing would replace it; "
            "choose another path"
        )
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def _what_is(p: Path) -> str:
    """What ``p`` is, in words: a link that loops or points nowhere, or its kind of file."""
    try:
        return _kind(p.stat().st_mode)
    except FileNotFoundError:
        return f"a link to {os.readlink(p)}, which does not exist"
    except OSError as e:
        return f"a link that cannot be followed: {e.strerror}"


def check_store(results_dir: str | os.PathLike) -> Path:
    """``results_dir`` as a writable folder whose store folders (runs, notebooks, models, logs,
    failed, locks, .scratch), where they exist, are folders; else ``StoreError`` naming the one in
    the way (a file, a link that loops or points nowhere), found before any work. Returns it."""
    root = writable_folder(results_dir, "results folder")
    for kind in (*KINDS, ".scratch"):
        sub = root / kind
        if os.path.lexists(sub) and not sub.is_dir():
            raise StoreError(
                f"{sub} is not a folder ({_what_is(sub)}); remove it or choose another --results"
            )
    return root


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` via a temporary file in the same directory and a rename,
    so a reader never sees a half-written file. Returns the path. A link to a regular file is
    written through; anything else that is not a regular file is refused (``file_target``). An
    ``OSError`` (a full disk) names ``target``, and no temporary file is left."""
    target = file_target(target)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make outputs private to their writer
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename in (None, tmp):  # name the file meant, not its temporary
            raise type(e)(e.errno, e.strerror or str(e), str(target)) from e
        raise
    return target


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """``atomic_write_bytes`` for UTF-8 text."""
    return atomic_write_bytes(target, text.encode())


#: What a record takes per replica and epoch (about 500 bytes measured), its fixed part, and an
#: executed experiment notebook (15-60 kB measured): the space checks' estimates, on the high side.
RECORD_BYTES_PER_EPOCH = 700
RECORD_BYTES = 4_000
NOTEBOOK_BYTES = 60_000


def output_bytes(config: TrainConfig) -> dict[str, int]:
    """Bytes that ``config``'s experiment writes, estimated from above: ``record``, ``weights``
    (every replica's parameters at the config's dtype, plus the file's own overhead) and
    ``notebook``."""
    layers = [config.spec.n_features, *config.hidden, config.spec.n_classes]
    params = sum((a + 1) * b for a, b in itertools.pairwise(layers))
    itemsize = torch.empty((), dtype=getattr(torch, config.dtype)).element_size()
    n = len(config.seeds)
    return {
        "record": RECORD_BYTES + n * (config.epochs * RECORD_BYTES_PER_EPOCH + 100),
        "weights": 8_000 + n * (params * itemsize + 2_000),
        "notebook": NOTEBOOK_BYTES,
    }


def size_text(nbytes: float) -> str:
    """``nbytes`` in words: '512 B', '4.1 kB', '3.2 MB', '1.5 GB' (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"


def check_space(folder: str | os.PathLike, need: float, what: str, fix: str, margin: float = 2.0) -> None:
    """``StoreError`` when ``folder``'s disk has less than ``margin`` x ``need`` bytes free, saying
    how much ``what`` (e.g. 'this sweep') writes, how much is free, and ``fix``."""
    free = shutil.disk_usage(folder).free
    if free < margin * need:
        raise StoreError(
            f"{folder} has {size_text(free)} free, and {what} writes about {size_text(need)} "
            f"(x{margin:g} margin); {fix}"
        )


class Reservation:
    """Room held on disk for a file that is written later: a hidden temporary file of ``nbytes``
    beside ``target`` (``os.posix_fallocate``), so a disk that fills meanwhile cannot lose it.
    ``write`` puts the data in it and renames it into place; leaving the ``with`` block removes
    it if unwritten. ``StoreError`` when ``target`` is not a file to write (``file_target``) or
    ``nbytes`` do not fit; ``what`` (e.g. ``--out``) starts the messages."""

    def __init__(self, target: str | os.PathLike, nbytes: int, what: str) -> None:
        self.target = file_target(target, what)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp")
        self.file: io.BufferedRandom | None = os.fdopen(fd, "r+b")
        try:
            os.fchmod(fd, 0o644)
            os.posix_fallocate(fd, 0, max(1, nbytes))
        except OSError as e:
            self.close()
            if e.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise
            free = shutil.disk_usage(self.target.parent).free
            raise StoreError(
                f"{what} {self.target}: its disk has {size_text(free)} free, and the file takes about "
                f"{size_text(nbytes)}; free some space or choose another path"
            ) from e

    def write(self, data: bytes) -> Path:
        """Write ``data`` into the held room, then rename it to ``target``; returns the path."""
        if self.file is None:
            raise ValueError("this reservation is closed")
        try:
            self.file.seek(0)
            self.file.write(data)
            self.file.truncate(len(data))
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.file = None
            os.replace(self.tmp, self.target)
        except OSError as e:
            self.close()
            raise type(e)(e.errno, e.strerror or str(e), str(self.target)) from e
        return self.target

    def close(self) -> None:
        """Give the room back (nothing is written)."""
        if self.file is not None:
            self.file.close()
            self.file = None
        Path(self.tmp).unlink(missing_ok=True)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- records


def _clean(v: object) -> object:
    # JSON has no NaN/inf; a diverged replica's metrics become null.
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers."""
    import numpy as np

    return {
        "mlpmnist": package_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def replica_status(history: list[dict]) -> str:
    """``diverged``, ``collapsed`` (its last evaluation at chance level) or ``ok``."""
    if not history:
        return "ok"
    last = history[-1]
    return "diverged" if last.get("diverged") else "collapsed" if last.get("collapsed") else "ok"


def make_record(result: TrainResult, **extra: Any) -> dict:
    """The JSON-ready record of one training call: key, config, per-replica status and history,
    versions, device, total seconds, ``error`` (None, or what diverged), ``collapsed`` (seeds),
    and ``extra`` (e.g. ``job``: which job trained it, ``weights_sha256``)."""
    history: dict[tuple, list[dict[str, Any]]] = {}
    for row in result.history.to_dict("records"):
        history.setdefault((row["seed"], row["lr"]), []).append({k: _clean(v) for k, v in row.items()})
    replicas: list[dict[str, Any]] = [
        {
            "seed": s,
            "lr": lr,
            "status": replica_status(history.get((s, lr), [])),
            "history": history.get((s, lr), []),
        }
        for s, lr in zip(result.config.seeds, result.config.lrs, strict=True)
    ]
    diverged = [r["history"][-1] for r in replicas if r["status"] == "diverged"]
    return {
        "version": RECORD_VERSION,
        "key": result.config.key(),
        "config": result.config.to_dict(),
        "replicas": replicas,
        "versions": versions(),
        "device": result.device,
        "seconds": result.seconds,
        "first_step_at": result.first_step_at,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "error": divergence_message(result.config, diverged) if diverged else None,
        "collapsed": [r["seed"] for r in replicas if r["status"] == "collapsed"],
        **extra,
    }


def record_text(record: dict) -> str:
    """A run record as the JSON text of its file (no NaN: JSON has none)."""
    return json.dumps(record, indent=1, allow_nan=False) + "\n"


def write_record(record: dict, target: str | os.PathLike) -> Path:
    """Atomically write a run record as JSON; returns the path."""
    return atomic_write_text(target, record_text(record))


STATUSES = ("ok", "collapsed", "diverged")


def read_record(source: str | os.PathLike) -> dict:
    """Read a run record; raise ``StoreError`` naming the file, what is wrong and what to do when
    it is not one: unreadable, not JSON, no config, or a replica without a valid ``status`` and
    a history whose rows hold a numeric ``epoch`` and ``test_acc`` (null once it diverged)."""
    source = Path(source)
    if source.exists() and not source.is_file():  # a FIFO would block the read for ever
        raise StoreError(f"{source} is not a readable run record ({_what_is(source)}); delete it and rerun")
    try:
        record = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{source} is not a readable run record ({e}); delete it and rerun") from e
    problem = record_problem(record)
    if problem:
        raise StoreError(f"{source} is not a run record ({problem}); delete it and rerun")
    return record


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record_problem(record: object) -> str | None:
    """What makes ``record`` (parsed JSON) not a run record, or None."""
    if not (isinstance(record, dict) and isinstance(record.get("config"), dict)):
        return "no config"
    if "batch_size" not in record["config"]:
        return "no config with batch_size"
    if not isinstance(record.get("error"), (str, type(None))):
        return f"error {record['error']!r} is neither text nor null"
    collapsed = record.get("collapsed", [])
    if not (isinstance(collapsed, list) and all(_number(s) for s in collapsed)):
        return f"collapsed {collapsed!r} is not a list of seeds"
    if not _number(record.get("seconds", 0)):
        return f"seconds {record['seconds']!r} is not a number"
    reps = record.get("replicas")
    if not isinstance(reps, list) or not reps:
        return "no replicas"
    for r in reps:
        if not isinstance(r, dict) or not isinstance(r.get("history"), list):
            return "a replica without a history"
        if r.get("status") not in STATUSES:
            return (
                f"replica {r.get('seed')!r} has status {r.get('status')!r}, not one of {', '.join(STATUSES)}"
            )
        for row in r["history"]:
            ok = isinstance(row, dict) and _number(row.get("epoch"))
            acc = row.get("test_acc") if isinstance(row, dict) else None
            if not ok or not (_number(acc) or (acc is None and row.get("diverged"))):
                return f"replica {r.get('seed')!r} has a history row without a numeric epoch and test_acc"
    return None


def record_key(record: dict) -> str:
    """The record's experiment key (computed from its config for records that predate keys)."""
    if "key" in record:
        return record["key"]
    return stored_config(record).key()


def stored_config(record: dict, cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """The config (a ``cls``) a record was made with; fields it predates take their baseline, so
    a record made before a field existed reads as the computation it was."""
    names = field_names(cls)
    known = {k: v for k, v in record["config"].items() if k in names}
    return cls.from_mapping({**{k: baseline(k, cls) for k in names if k not in known}, **known})


def done_problem(results_dir: str | os.PathLike, config: TrainConfig) -> str | None:
    """Why ``config``'s stored experiment is not done (one phrase), or None when it is: its record
    reads, is for this computation, did not fail, has one replica per (seed, lr) with a history
    to the last epoch (or to where it diverged); its notebook reads; and its weights read and
    belong to it (the checksum the record holds, or the key inside the weights file)."""
    key = config.key()
    run, nb, models = (path(results_dir, k, key) for k in ("runs", "notebooks", "models"))
    if not run.is_file():
        return "no record"
    try:
        record = read_record(run)
    except StoreError as e:
        return str(e).split(" is ", 1)[-1].split(";")[0]
    try:
        same = stored_config(record, type(config)).identity() == config.identity()
    except (ValueError, TypeError) as e:
        return f"its record's config does not read ({e})"
    if not same:
        return "its record is for another configuration"
    if record.get("error"):
        return f"its last run failed ({record['error']})"
    if problem := replicas_problem(record, config):
        return problem
    if not nb.is_file():
        return "no executed notebook"
    if problem := notebook_problem(nb):
        return problem
    return weights_problem(models, record)


def is_done(results_dir: str | os.PathLike, config: TrainConfig) -> bool:
    """True when ``done_problem`` finds nothing wrong."""
    return done_problem(results_dir, config) is None


def replicas_problem(record: dict, config: TrainConfig) -> str | None:
    """What is missing from the record's replicas for ``config``, or None."""
    reps = {(r.get("seed"), r.get("lr")): r for r in record["replicas"]}
    if len(reps) != len(record["replicas"]) or set(reps) != set(config.replicas):
        return (
            f"its record holds {len(record['replicas'])} replicas, not the {len(config.seeds)} of its seeds"
        )
    for (seed, _), r in reps.items():
        ends = {row["epoch"] for row in r["history"] if float(row["epoch"]).is_integer()}
        if r["status"] != "diverged" and not set(range(1, config.epochs + 1)) <= ends:
            return f"seed {seed}'s history stops before epoch {config.epochs}"
    return None


def notebook_problem(nb: Path) -> str | None:
    """Why the executed notebook ``nb`` is not readable, or None."""
    try:
        parsed = json.loads(nb.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"its notebook does not read ({type(e).__name__})"
    if not (isinstance(parsed, dict) and isinstance(parsed.get("cells"), list) and parsed["cells"]):
        return "its notebook has no cells"
    return None


def weights_problem(models: Path, record: dict) -> str | None:
    """Why the weights file ``models`` does not belong to ``record``, or None."""
    if not models.is_file():
        return "no weights file"
    want = record.get("weights_sha256")
    if want is not None:
        try:
            got = hashlib.sha256(models.read_bytes()).hexdigest()
        except OSError as e:
            return f"its weights do not read ({e.strerror})"
        return None if got == want else "its weights file is not the one its record names (checksum)"
    try:  # records made before checksums: the key inside the weights file
        payload = torch.load(models, map_location="cpu", weights_only=True)
        key = payload.get("key") or stored_config({"config": payload["config"]}).key()
    except Exception as e:  # torch raises many types for truncated or foreign files
        return f"its weights do not read ({type(e).__name__})"
    return None if key == record_key(record) else "its weights file belongs to another experiment"


# ---------------------------------------------------------------------------- the frame


def _filled(config: Mapping[str, Any]) -> dict[str, Any]:
    """A record's config with the fields it predates at their baseline (what it computed)."""
    return {**{k: baseline(k) for k in FIELDS if k not in config}, **config}


def _cell(v: object) -> object:
    # Lists (hidden) become readable strings such as "64x64" so a column can be grouped by.
    return "x".join(str(x) for x in v) if isinstance(v, list) else v


def frame(records: Sequence[dict]) -> pd.DataFrame:
    """Tidy DataFrame: one row per experiment x replica x evaluation.

    Columns: key, every config field but seeds and lr (hidden as e.g. "64x64"), seed, lr, epoch,
    step, the history's metrics (see ``train``) and status (ok, collapsed, diverged: the
    replica's final status, on all its rows).
    """
    rows: list[dict[str, Any]] = []
    for rec in records:
        config = {k: _cell(v) for k, v in _filled(rec["config"]).items() if k not in ("seeds", "lr")}
        key = record_key(rec)
        for rep in rec["replicas"]:
            status = rep.get("status") or replica_status(rep["history"])
            rows.extend({"key": key, **config, **h, "status": status} for h in rep["history"])
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=LEAD)
    num = [c for c in df.columns if c.endswith(("_loss", "_acc")) or c.startswith(("dead_", "wnorm_"))]
    df[num] = df[num].astype(float)
    for flag in ("diverged", "collapsed"):
        df[flag] = df[flag].fillna(False).astype(bool) if flag in df.columns else False
    lead = [c for c in LEAD if c in df.columns]
    df = df[lead + [c for c in df.columns if c not in lead]]
    return df.sort_values(["batch_size", "key", "lr", "seed", "step"], ignore_index=True)


def _options(name: str, want: Any) -> list:
    """The values ``where`` allows for field ``name``: one value, or a list of them."""
    many = isinstance(want, (list, tuple, set))
    if field_types()[name] == tuple[int, ...]:  # seeds, hidden: a list is one value unless nested
        many = many and all(isinstance(w, (list, tuple)) for w in want)
        return (
            [tuple(w) for w in want] if many else [tuple(want) if isinstance(want, (list, tuple)) else want]
        )
    return list(want) if many else [want]


def _matches(config: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    for name, want in where.items():
        have = config.get(name)
        if (tuple(have) if isinstance(have, list) else have) not in _options(name, want):
            return False
    return True


def load(
    results_dir: str | os.PathLike,
    *,
    keys: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The run records under ``results_dir/runs`` as one tidy frame (see ``frame``).

    ``keys`` keeps only those experiments (a sweep's own); ``where`` keeps those whose config
    field equals a value or one of a list of values, e.g. ``{"batch_size": [64, 128], "lr": 0.1}``.
    Raises ``StoreError`` when the directory holds no matching record.
    """
    runs = Path(results_dir) / "runs"
    if where:
        check_names(where)
    if not runs.is_dir():
        if os.path.lexists(runs):
            raise StoreError(
                f"{runs} is not a folder ({_what_is(runs)}); remove it or choose another --results"
            )
        raise StoreError(
            f"no run records in {runs} (the folder does not exist); run a sweep or `mlpmnist train` first"
        )
    wanted = None if keys is None else set(keys)
    records = []
    for p in sorted(runs.glob("*.json")):
        if wanted is not None and p.stem not in wanted:
            continue
        rec = read_record(p)
        if where and not _matches(_filled(rec["config"]), where):
            continue
        records.append(rec)
    if not records:
        what = "" if keys is None and not where else " matching the selection"
        raise StoreError(f"no run records{what} in {runs}; run a sweep or `mlpmnist train` first")
    return frame(records)


# ---------------------------------------------------------------------------- weights


def models_bytes(result: TrainResult) -> bytes:
    """The weights file of ``result``: every replica's final weights (None for diverged ones),
    with the experiment's key and config, as ``torch.save`` bytes."""
    payload = {
        "key": result.config.key(),
        "config": result.config.to_dict(),
        "seeds": list(result.config.seeds),
        "lrs": list(result.config.lrs),
        "state_dicts": result.state_dicts,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_models(result: TrainResult, target: str | os.PathLike) -> Path:
    """Atomically save ``models_bytes(result)`` at ``target``; returns the path."""
    return atomic_write_bytes(target, models_bytes(result))


def store(result: TrainResult, results_dir: str | os.PathLike, **extra: Any) -> dict:
    """Write ``result``'s weights, then its record (with the weights' checksum and ``extra``)
    under ``results_dir``, each atomically; the record last, since it marks the run finished.
    Returns the record."""
    key = result.config.key()
    weights = models_bytes(result)
    atomic_write_bytes(path(results_dir, "models", key), weights)
    record = make_record(result, weights_sha256=hashlib.sha256(weights).hexdigest(), **extra)
    write_record(record, path(results_dir, "runs", key))
    return record


def load_models(source: str | os.PathLike, key: str | None = None) -> dict[int, MLP]:
    """Seed -> trained ``MLP`` (eval mode, CPU) from a file written by ``save_models``; diverged
    replicas are left out. Loaded with ``weights_only=True``; a file that is not such a weights
    file, or (given ``key``) whose key is another experiment's, raises ``StoreError`` naming it."""
    source = Path(source)
    if not source.is_file():
        raise StoreError(f"no weights file {source}; run the sweep that trains it first")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
        models = {
            seed: MLP.from_state_dict(sd)
            for seed, sd in zip(payload["seeds"], payload["state_dicts"], strict=True)
            if sd is not None
        }
        owner = payload.get("key") or stored_config({"config": payload["config"]}).key()
    except Exception as e:  # torch raises many types for truncated or foreign files
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise StoreError(
            f"{source} is not a readable weights file ({reason}); delete it and rerun its sweep"
        ) from e
    if key is not None and owner != key:
        raise StoreError(
            f"{source} holds the weights of {owner}, not of {key}; delete it and rerun its sweep"
        )
    return models
