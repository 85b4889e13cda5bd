"""The one trust check. Every reader of the store goes through it: the sweep (what it may skip),
``load`` and ``figures`` (what they may draw), the notebooks' model cells and the live view.

A stored experiment is trusted when its record reads as a record, names the key its file is named
by, is for the configuration that key stands for, holds one replica per (seed, lr) with a history
to the last epoch (or to where it diverged or reached its target), and its weights file is the one
the record names (its SHA-256; for records made before checksums, the key inside the file).
Anything else is not trusted: the sweep reruns it, and a reader refuses it by name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpmnist.config import TrainConfig, check_names, field_types
from mlpmnist.errors import StoreError, printable
from mlpmnist.model import MLP
from mlpmnist.store.files import KEY_PATTERN, outside, path, remove, what_is
from mlpmnist.store.records import output_bytes, read_record, stored_config
from mlpmnist.store.weights import load_models, read_payload, sha256


@dataclass(frozen=True)
class Stored:
    """A trusted experiment: its ``key``, ``record`` and the results folder ``root`` it is in."""

    key: str
    record: dict
    root: Path

    @property
    def config(self) -> TrainConfig:
        return stored_config(self.record)

    def models(self, epoch: float | None = None) -> dict[int, MLP]:
        """Seed -> ``MLP``: the final weights, or the snapshot after ``epoch`` (``load_models``)."""
        return load_models(path(self.root, "models", self.key), epoch)


def replicas_problem(record: dict, config: TrainConfig) -> str | None:
    """What is missing from the record's replicas for ``config``, or None."""
    reps = {(r.get("seed"), r.get("lr")): r for r in record["replicas"]}
    if len(reps) != len(record["replicas"]) or set(reps) != set(config.replicas):
        return (
            f"its record holds {len(record['replicas'])} replicas, not the {len(config.seeds)} of its seeds"
        )
    for (seed, _), r in reps.items():
        ends = {row["epoch"] for row in r["history"] if float(row["epoch"]).is_integer()}
        if r["status"] not in ("diverged", "reached") and not set(range(1, config.epochs + 1)) <= ends:
            return f"seed {seed}'s history stops before epoch {config.epochs}"
    return None


def weights_problem(root: Path, key: str, record: dict, config: TrainConfig) -> str | None:
    """Why ``key``'s weights file is not the one ``record`` names, or None."""
    models = Path(root) / "models" / f"{key}.pt"
    if (where := outside(root, models)) is not None:
        return f"its weights file leads to {where}, outside the results folder"
    if not models.is_file():
        return "no weights file" if not os.path.lexists(models) else f"its weights are {what_is(models)}"
    want = record.get("weights_sha256")
    try:
        if want is not None:
            # Far larger than its experiment writes: not its weights, and not worth reading.
            got = sha256(models, limit=4 * output_bytes(config)["weights"] + (1 << 20))
            return None if got == want else "its weights file is not the one its record names (checksum)"
        payload = read_payload(models)  # records made before checksums: the key inside
        owner = payload.get("key") or stored_config({"config": payload["config"]}).key()
    except (OSError, StoreError, KeyError, TypeError, ValueError) as e:
        return f"its weights do not read ({printable(str(e).split(';')[0] or type(e).__name__)})"
    return None if owner == key else "its weights file belongs to another experiment"


def problem(
    root: str | os.PathLike, key: str, config: TrainConfig | None = None
) -> tuple[dict | None, str | None]:
    """(record, None) when the experiment stored under ``key`` (a key or a ``legacy_key``) is
    trusted, else (None, why not: one phrase, e.g. 'no record'). Given ``config``, the record must
    also be for that computation."""
    root = Path(root)
    if not (isinstance(key, str) and KEY_PATTERN.fullmatch(key)):
        return None, f"{printable(repr(key)[:80])} is not a store key"
    run = root / "runs" / f"{key}.json"
    if not os.path.lexists(run):
        return None, "no record"
    if (where := outside(root, run)) is not None:
        return None, f"its record leads to {where}, outside the results folder"
    try:
        record = read_record(run)
    except StoreError as e:
        return None, str(e).split(" is ", 1)[-1].split("; delete it")[0]
    named = record.get("key")
    if named is not None and named != key:
        return None, f"its record names another key ({printable(repr(named)[:80])})"
    try:
        stored = stored_config(record, type(config) if config is not None else TrainConfig)
    except (ValueError, TypeError) as e:
        return None, f"its record's config does not read ({printable(e)})"
    if key not in (stored.key(), stored.legacy_key()) or (
        config is not None and stored.identity() != config.identity()
    ):
        return None, "its record is for another configuration"
    why = replicas_problem(record, stored) or weights_problem(root, key, record, stored)
    return (None, why) if why else (record, None)


#: What a record under a config's legacy key that belongs to another config is told apart by.
_ANOTHER = "its record is for another configuration"


def find(root: str | os.PathLike, config: TrainConfig) -> tuple[Stored | None, str | None]:
    """``config``'s trusted experiment (and None), or None and why not. Its key is looked up
    first, then its ``legacy_key`` (stores made before 16-digit keys), where another config's
    record (32 bits collide) counts as no record."""
    root = Path(root)
    record, why = problem(root, config.key(), config)
    if record is not None:
        return Stored(config.key(), record, root), None
    legacy = config.legacy_key()
    if why == "no record" and legacy != config.key():
        old, old_why = problem(root, legacy, config)
        if old is not None:
            return Stored(legacy, old, root), None
        if old_why != _ANOTHER:
            return None, old_why
    return None, why


def trusted(root: str | os.PathLike, key: str | TrainConfig) -> Stored:
    """The trusted experiment ``key`` (a key, a legacy key, or a config: as ``find`` looks it up);
    ``StoreError`` naming it, why it is not trusted, and what to do."""
    if isinstance(key, TrainConfig):
        found, why = find(root, key)
        key = key.key()
    else:
        record, why = problem(root, key)
        found = Stored(key, record, Path(root)) if record is not None else None
    if found is None:
        where = Path(root) / "runs" / f"{printable(key)}.json"
        raise StoreError(f"{where} cannot be used: {why}; rerun its sweep (or delete its files)")
    return found


def _options(name: str, want: Any) -> list:
    """The values ``where`` allows for field ``name``: one value, or a list of them."""
    many = isinstance(want, (list, tuple, set))
    if field_types()[name] == tuple[int, ...]:  # seeds, hidden: a list is one value unless nested
        if many and all(isinstance(w, (list, tuple)) for w in want):
            return [tuple(w) for w in want]
        return [tuple(want) if isinstance(want, (list, tuple)) else want]
    return list(want) if many else [want]


def matches(config: TrainConfig, where: Mapping[str, Any]) -> bool:
    """Whether ``config``'s field equals, for each name of ``where``, its value or one of its values."""
    return all(getattr(config, name) in _options(name, want) for name, want in where.items())


def _left_out(root: Path, run: Path, where: Mapping[str, Any]) -> bool:
    """Whether record ``run`` reads as a configuration that ``where`` leaves out (False when it
    does not read, or leads outside ``root``: the trust check then says why)."""
    if outside(root, run) is not None:
        return False
    try:
        return not matches(stored_config(read_record(run)), where)
    except (StoreError, ValueError, TypeError):
        return False


def stored(
    results_dir: str | os.PathLike,
    *,
    keys: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
) -> list[Stored]:
    """Every experiment under ``results_dir/runs`` (only ``keys``, and those that match ``where``),
    in key order; ``StoreError`` naming the first selected one not trusted, and when none matches."""
    runs = Path(results_dir) / "runs"
    if where:
        check_names(where)
    if not runs.is_dir():
        if os.path.lexists(runs):
            raise StoreError(
                f"{runs} is not a folder ({what_is(runs)}); remove it or choose another --results"
            )
        raise StoreError(
            f"no run records in {runs} (the folder does not exist); run a sweep or `mlpmnist train` first"
        )
    wanted = None if keys is None else set(keys)
    out = []
    for run in sorted(runs.glob("*.json")):
        if wanted is not None and run.stem not in wanted:
            continue
        if where and _left_out(Path(results_dir), run, where):
            continue  # another selection's: its weights are not hashed, its faults not ours to name
        out.append(trusted(results_dir, run.stem))  # it matches: a record that reads was sifted above
    if not out:
        what = "" if keys is None and not where else " matching the selection"
        raise StoreError(f"no run records{what} in {runs}; run a sweep or `mlpmnist train` first")
    return out


def retire_legacy(root: Path, config: TrainConfig) -> bool:
    """Remove the files under ``config``'s legacy key when its record there is this computation's
    but not trusted, and the experiment is now trusted under its new key (a rerun replaced it).
    Returns whether it did; another config's files, or a trusted record, are never touched."""
    legacy = config.legacy_key()
    if legacy == config.key():
        return False
    old, why = problem(root, legacy, config)
    if old is not None or why in ("no record", _ANOTHER) or problem(root, config.key(), config)[0] is None:
        return False
    try:
        for kind in ("runs", "models", "notebooks", "logs", "failed"):
            remove(root, path(root, kind, legacy))
    except (OSError, StoreError):  # a link out of the store, say: left for its reader to name
        return False
    return True
