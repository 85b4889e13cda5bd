"""The store never reaches outside its folder, honours the umask, cleans up after killed writers,
and reads any file it did not write as a bad file in one line (issue 23: W2, W3, W7, W14-W20).

No data, no process: files made by hand under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import time
from pathlib import Path

import pytest
import torch

from mlpmnist import store
from mlpmnist.errors import StoreError, printable
from mlpmnist.store import records, weights
from mlpmnist.sweep import jobs

KEY = "bs0100-lr0.1-e1-s1-0123456789abcdef"


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def old(p: Path, seconds: float = 3600) -> Path:
    """``p`` with its times set ``seconds`` into the past (a file a killed writer left)."""
    t = time.time() - seconds
    os.utime(p, (t, t), follow_symlinks=False)
    return p


# ------------------------------------------------- W15, W2: keys are names, links stay inside


@pytest.mark.parametrize("key", ["../../outside3/evil", "a/b", ".hidden", "", "x" * 300, "a\x1b[31m"])
def test_a_key_that_is_not_a_file_name_is_refused(tmp_path, key):
    with pytest.raises(StoreError, match="is not a store key"):
        store.path(tmp_path, "models", key)
    record, why = store.problem(tmp_path, key)
    assert record is None and "is not a store key" in why and "\x1b" not in why


def test_a_link_in_the_store_that_leaves_it_is_never_written_through(tmp_path):
    root, outside = tmp_path / "res", tmp_path / "outside"
    (root / "models").mkdir(parents=True)
    outside.mkdir()
    private = outside / "secret.pt"
    private.write_bytes(b"mine")
    private.chmod(0o600)
    (root / "models" / f"{KEY}.pt").symlink_to(private)
    with pytest.raises(
        StoreError, match=rf"models/{KEY}\.pt leads to .*secret\.pt, outside the results folder"
    ):
        store.path(root, "models", KEY)
    assert private.read_bytes() == b"mine" and mode(private) == 0o600
    # A store folder that is a link out of the results folder is refused before any work.
    (root / "logs").symlink_to(outside)
    with pytest.raises(StoreError, match=r"res/logs leads to .*outside, outside the results folder"):
        store.check_store(root)
    # The trust check names it too: a reader never opens it.
    (root / "models" / f"{KEY}.pt").unlink()
    (root / "runs").mkdir()
    (root / "runs" / f"{KEY}.json").symlink_to(private)
    assert "outside the results folder" in store.problem(root, KEY)[1]


def test_writing_through_a_link_outside_the_store_keeps_the_files_mode(tmp_path):
    # train --out: a link the user chose is written through, and the file keeps its mode.
    target = tmp_path / "private.json"
    target.write_text("old")
    target.chmod(0o600)
    (tmp_path / "out.json").symlink_to(target)
    store.atomic_write_bytes(tmp_path / "out.json", b"new")
    assert target.read_text() == "new" and mode(target) == 0o600 and target.stat().st_uid == os.getuid()
    with store.Reservation(tmp_path / "out.json", 100, "--out") as room:
        room.write(b"newer")
    assert target.read_text() == "newer" and mode(target) == 0o600


# ------------------------------------------------------------------------ W17: the umask


def test_new_files_follow_the_umask(tmp_path):
    before = os.umask(0o077)
    try:
        store.atomic_write_text(tmp_path / "a.json", "{}")
        with store.Reservation(tmp_path / "b.json", 100, "--out") as room:
            room.write(b"{}")
    finally:
        os.umask(before)
    assert mode(tmp_path / "a.json") == 0o600 and mode(tmp_path / "b.json") == 0o600
    os.umask(0o022)
    try:
        store.atomic_write_text(tmp_path / "c.json", "{}")
    finally:
        os.umask(before)
    assert mode(tmp_path / "c.json") == 0o644


# ------------------------------------------------- W3, W14: scratch folders and what is in them


def test_scratch_cleanup_never_deletes_outside_and_skips_what_it_cannot_read(tmp_path):
    root, other = tmp_path / "res", tmp_path / "other"
    (other / "old-job").mkdir(parents=True)
    old(other / "old-job", 3 * 86_400)
    root.mkdir()
    (root / ".scratch").symlink_to(other)
    with pytest.raises(StoreError, match=r"\.scratch leads to .*other, outside the results folder"):
        store.check_store(root)
    assert jobs.remove_dead_scratch(root) == [] and (other / "old-job").is_dir()
    # Inside: a dangling link, a link loop and a link to a folder outside are removed themselves
    # (never what they point at), a dead job's folder too, and the cleanup goes on.
    (root / ".scratch").unlink()
    scratch = root / ".scratch"
    scratch.mkdir()
    (scratch / "dangling").symlink_to(tmp_path / "nothing")
    (scratch / "loop").symlink_to("loop")
    (scratch / "to-other").symlink_to(other)
    (scratch / "job-dead").mkdir()
    (scratch / "job-dead" / "owner.json").write_text(
        json.dumps({"pid": 2**22 + 7, "host": os.uname().nodename})
    )
    (scratch / "job-live").mkdir()
    (scratch / "job-live" / "owner.json").write_text(
        json.dumps({"pid": os.getpid(), "host": os.uname().nodename})
    )
    store.check_store(root)
    removed = {p.name for p in jobs.remove_dead_scratch(root)}
    assert removed == {"dangling", "loop", "to-other", "job-dead"}
    assert sorted(p.name for p in scratch.iterdir()) == ["job-live"] and (other / "old-job").is_dir()


def test_remove_never_follows_a_link_out(tmp_path):
    root, other = tmp_path / "res", tmp_path / "other"
    (other / "keep").mkdir(parents=True)
    (root / "locks").mkdir(parents=True)
    (root / "locks" / "x").symlink_to(other)
    store.remove(root, root / "locks" / "x")  # the link goes, the folder it pointed at stays
    assert not os.path.lexists(root / "locks" / "x") and (other / "keep").is_dir()
    (root / "failed").symlink_to(other)
    with pytest.raises(StoreError, match="outside the results folder"):
        store.remove(root, root / "failed" / "keep")
    assert (other / "keep").is_dir()


# ---------------------------------------------------- W7: what killed writers leave behind


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    stale = tmp_path / ".run.json.dead1234.tmp"
    stale.touch()
    old(stale)
    young = tmp_path / ".run.json.young123.tmp"
    young.touch()
    other = tmp_path / ".other.json.dead5678.tmp"
    other.touch()
    old(other)
    (tmp_path / "victim").write_text("keep")
    link = tmp_path / ".run.json.link1234.tmp"
    link.symlink_to(tmp_path / "victim")
    with store.Reservation(tmp_path / "run.json", 1000, "--out") as room:  # its own stale one goes
        live = next(p for p in tmp_path.glob(".run.json.*.tmp") if p not in (young, link))
        old(live)
        assert not stale.exists() and young.exists() and other.exists()
        # A writer that is alive holds its temporary: another cleanup leaves it alone.
        assert store.remove_stale_temporaries(tmp_path) == [other]
        assert live.exists()
        room.write(b"{}")
    assert (tmp_path / "victim").read_text() == "keep" and link.is_symlink()


def test_gitignore_lists_the_temporaries():
    lines = (Path(__file__).parents[2] / ".gitignore").read_text().splitlines()
    assert ".*.tmp" in lines


# -------------------------------------------------------- W16: escapes in file contents


def test_messages_built_from_files_show_control_characters_escaped(tmp_path):
    fake = "ok\x1b[2K\rerror: all good\x1b]0;title\x07\u202e"
    assert printable(fake) == "ok\\x1b[2K\\x0derror: all good\\x1b]0;title\\x07\\u202e"
    assert printable("é ü {x}") == "é ü {x}"
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / f"{KEY}.json").write_text(json.dumps({"key": KEY, "error": fake}))
    failure = store.read_failure(tmp_path, KEY)
    assert failure is not None and "\x1b" not in failure["error"] and "\\x1b[2K" in failure["error"]
    (tmp_path / "locks").mkdir()
    owner = {"pid": 1, "host": "h\x1b[31m", "job": "j\nerror: x", "since": time.time()}
    (tmp_path / "locks" / f"{KEY}.owner").write_text(json.dumps(owner))
    said = store.owner(tmp_path, KEY)
    assert "\x1b" not in said and "\n" not in said and "\\x1b[31m" in said


# --------------------------------------------- W18, W19, W20: files the store did not write


def a_record(**row: object) -> dict:
    history = [{"epoch": 1, "step": 10, "train_loss": 0.5, "test_acc": 0.9, **row}]
    return {
        "key": KEY,
        "config": {"batch_size": 100},
        "replicas": [{"seed": 0, "lr": 0.1, "status": "ok", "history": history}],
    }


def test_non_finite_values_outside_diverged_rows_are_refused(tmp_path):
    assert records.record_problem(a_record()) is None
    why = records.record_problem(a_record(test_acc=float("nan")))
    assert why and "test_acc nan at epoch 1" in why and "did not diverge" in why
    assert "train_loss inf" in str(records.record_problem(a_record(train_loss=float("inf"))))
    assert records.record_problem(a_record(train_loss=float("nan"), test_acc=None, diverged=True)) is None
    (tmp_path / "nan.json").write_text(json.dumps(a_record(test_acc=float("nan"))))  # JSON's NaN token
    with pytest.raises(StoreError, match="nan.json is not a run record .replica 0 has test_acc nan"):
        records.read_record(tmp_path / "nan.json")


def test_json_nested_too_deeply_is_a_bad_record_not_a_crash(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / f"{KEY}.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(StoreError, match="is not a readable run record .its JSON is nested too deeply"):
        records.read_record(tmp_path / "runs" / f"{KEY}.json")
    assert "nested too deeply" in store.problem(tmp_path, KEY)[1]
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / f"{KEY}.json").write_text("{" + '"a":{' * 100_000 + "}" * 100_001)
    assert store.read_failure(tmp_path, KEY) is None


def test_a_huge_sparse_weights_file_is_refused_without_reading_it(tmp_path):
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:
        f.truncate(30 * 10**9)  # sparse: no disk used, and far too long to read whole
    t0 = time.perf_counter()
    with pytest.raises(StoreError, match="30,000,000,000 bytes, far more than its experiment writes"):
        weights.sha256(huge, limit=10**6)
    assert time.perf_counter() - t0 < 1


class Payload:
    """Any class: a weights file that pickles one runs code when loaded without weights_only."""


def test_a_weights_file_holding_code_is_refused_in_the_package_words(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"state_dicts": [], "x": Payload()}, bad, pickle_module=pickle)
    with pytest.raises(StoreError) as e:
        weights.read_payload(bad)
    assert "holds objects other than weights, which are never loaded" in str(e.value)
    assert "weights_only" not in str(e.value) and "Unpickler" not in str(e.value)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"\xff\xfe not utf-8", "not a readable run record"),
        (b"{ truncated", "not a readable run record"),
        (json.dumps({"config": {}, "replicas": []}).encode(), "not a run record"),
        (json.dumps({"config": {"batch_size": 8}}).encode(), "not a run record"),
    ],
    ids=["non-utf8", "truncated", "no-batch-size", "no-replicas"],
)
def test_bad_record_names_the_file(tmp_path, content, match):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "bad.json").write_bytes(content)
    with pytest.raises(StoreError, match=rf"bad\.json.*{match}|{match}.*bad\.json|bad\.json is {match}"):
        store.load(tmp_path)


def test_empty_or_missing_results_dir(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        store.load(tmp_path / "nowhere")
    (tmp_path / "runs").mkdir()
    with pytest.raises(StoreError, match="no run records in"):
        store.load(tmp_path)


def test_atomic_write_leaves_no_temporary(tmp_path):
    p = store.atomic_write_bytes(tmp_path / "a" / "b.bin", b"x" * 10)
    assert p.read_bytes() == b"x" * 10 and [f.name for f in p.parent.iterdir()] == ["b.bin"]


def test_store_folders_in_the_way_are_named(tmp_path):
    assert store.check_store(tmp_path / "new") == tmp_path / "new"  # nothing made but the folder
    assert [p.name for p in (tmp_path / "new").iterdir()] == []
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "models").symlink_to("nowhere")
    with pytest.raises(
        StoreError, match=r"models is not a folder \(a link to nowhere, which does not exist\)"
    ):
        store.check_store(tmp_path / "r")
    (tmp_path / "r" / "models").unlink()
    (tmp_path / "r" / "runs").write_text("")
    with pytest.raises(StoreError, match=r"runs is not a folder \(a file\)"):
        store.check_store(tmp_path / "r")


def test_a_reservation_too_big_for_its_disk_is_refused(tmp_path):
    with pytest.raises(store.StoreError, match=r"--out .*big\.json: its disk has .* free, and the file"):
        store.Reservation(tmp_path / "big.json", 10**18, "--out")
    assert not list(tmp_path.iterdir())
    with store.Reservation(tmp_path / "r.json", 10_000, "--out") as room:
        assert len(list(tmp_path.glob(".r.json.*.tmp"))) == 1
        room.write(b"{}")
    assert (tmp_path / "r.json").read_bytes() == b"{}" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_out_and_store_files_never_replace_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "to-fifo").symlink_to("fifo")
    (tmp_path / "null").symlink_to("/dev/null")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "to-real").symlink_to("real.json")
    for name, words in [
        ("fifo", "fifo is a FIFO, not a regular file"),
        ("to-fifo", "to-fifo links to a FIFO"),
        ("null", "null links to a character device"),
        ("loop", "loop cannot be followed"),
    ]:
        with pytest.raises(store.StoreError, match=words):
            store.atomic_write_bytes(tmp_path / name, b"x")
    with pytest.raises(store.StoreError, match="is not a readable run record .it is a FIFO"):
        store.read_record(fifo)  # not a read that blocks for ever
    assert fifo.is_fifo() and (tmp_path / "to-fifo").is_symlink() and (tmp_path / "null").is_symlink()
    store.atomic_write_bytes(tmp_path / "to-real", b"new")  # a link to a file: written through
    assert (tmp_path / "to-real").is_symlink() and (tmp_path / "real.json").read_text() == "new"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["fifo", "loop", "null", "real.json", "to-fifo", "to-real"]
