"""Stores that were tampered with, made by older code, or hold links, read by every reader through
the one trust check; and the CLI's one-line messages for runs that end badly (issue 23: W2-W4,
W7-W11, W14-W16, W18-W20, W22). Real MNIST, small trainings, the CLI in-process."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mlpmnist import cli, store
from mlpmnist.config import TrainConfig
from mlpmnist.store import StoreError, retire_legacy
from mlpmnist.training.loop import train
from mlpmnist.workbench.study import Study

CONFIG = TrainConfig(batch_size=90, epochs=1, seeds=(0, 1), train_limit=4000)  # both seeds learn
SWEEP = ["sweep", "--batch-sizes", "90", "--epochs", "1", "--seeds", "0-1", "--train-limit", "4000"]


@pytest.fixture(scope="module")
def stored(mnist, tmp_path_factory) -> Path:
    """A results folder holding one trusted experiment (``CONFIG``), as a sweep leaves it."""
    root = tmp_path_factory.mktemp("store")
    store.save_result(train(CONFIG, mnist, progress=False, verbose=False), root)
    assert store.find(root, CONFIG)[0] is not None
    return root


@pytest.fixture
def copy(stored, tmp_path) -> Path:
    return Path(shutil.copytree(stored, tmp_path / "res"))


def edit(root: Path, change: Callable[[dict], object], key: str = CONFIG.key()) -> None:
    p = root / "runs" / f"{key}.json"
    rec = json.loads(p.read_text())
    change(rec)
    p.write_text(json.dumps(rec))


def refused(capsys, argv: list[str], *words: str) -> str:
    """Run the CLI in-process: exit 2, one ``error:`` line holding ``words``, no control character."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "\x1b" not in err and "\x07" not in err
    return lines[0]


# ---------------------------------------- W8, W9: figures and the model cells trust the same


def zero_weights(root: Path) -> None:
    models = root / "models" / f"{CONFIG.key()}.pt"
    models.write_bytes(bytes(models.stat().st_size))  # zeroed in place, the key kept


def cut_replica(root: Path) -> None:
    edit(root, lambda r: r["replicas"].pop())


@pytest.mark.parametrize(
    "damage,why",
    [(zero_weights, "not the one its record names (checksum)"), (cut_replica, "holds 1 replicas, not the 2")],
    ids=["zeroed-weights", "one-of-two-replicas"],
)
def test_figures_and_the_model_cells_refuse_what_the_store_cannot_trust(copy, capsys, tmp_path, damage, why):
    damage(copy)
    run = f"runs/{CONFIG.key()}.json cannot be used"
    refused(capsys, ["figures", "--results", str(copy), "--media", str(tmp_path / "m")], run, why)
    assert not (tmp_path / "m").exists()
    # run.ipynb's model cells: store.trusted(results_dir, chosen.key).models()
    with pytest.raises(StoreError, match=rf"{CONFIG.key()}\.json cannot be used: its .*{why[:20]}"):
        store.trusted(copy, CONFIG.key()).models()
    with pytest.raises(StoreError, match=why[:20]):
        store.load(copy)


# ------------------------------------------- W15, W16, W18, W19, W20: records it did not write


def evil_key(root: Path) -> None:
    edit(root, lambda r: r.update(key="../../outside3/evil"))


def nan_accuracy(root: Path) -> None:
    p = root / "runs" / f"{CONFIG.key()}.json"
    rec = json.loads(p.read_text())
    rec["replicas"][0]["history"][-1]["test_acc"] = float("nan")  # status ok, not diverged
    p.write_text(json.dumps(rec))  # Python writes JSON's NaN token


def deep_json(root: Path) -> None:
    (root / "runs" / f"{CONFIG.key()}.json").write_text("[" * 200_000 + "]" * 200_000)


def escapes(root: Path) -> None:
    edit(root, lambda r: r["replicas"][0].update(status="ok\x1b[2K\rerror: fine\x1b]0;t\x07"))


class Payload:
    """Any class in a weights file: loading it without weights_only would run code."""


def code_in_weights(root: Path) -> None:
    edit(root, lambda r: r.pop("weights_sha256"))  # a record from before checksums: the file is read
    torch.save(
        {"state_dicts": [], "x": Payload()}, root / "models" / f"{CONFIG.key()}.pt", pickle_module=pickle
    )


@pytest.mark.parametrize(
    "damage,words",
    [
        (evil_key, ["its record names another key ('../../outside3/evil')"]),
        (nan_accuracy, ["test_acc nan at epoch 1, a non-finite value in a row that did not diverge"]),
        (deep_json, ["its JSON is nested too deeply to read"]),
        (escapes, ["status 'ok\\x1b[2K\\rerror: fine\\x1b]0;t\\x07'"]),
        (code_in_weights, ["its weights do not read", "holds objects other than weights"]),
    ],
    ids=["W15-key-path", "W18-nan", "W19-deep-json", "W16-escapes", "W20-code"],
)
def test_a_record_or_weights_it_did_not_write_is_refused_by_name(copy, capsys, tmp_path, damage, words):
    damage(copy)
    line = refused(capsys, ["figures", "--results", str(copy), "--media", str(tmp_path / "m")], *words)
    assert f"{CONFIG.key()}.json" in line and "weights_only" not in line
    assert not (tmp_path / "outside3").exists()


# ----------------------------------------------- W4: stores made before 16-digit keys


def as_legacy(root: Path, config: TrainConfig) -> str:
    """Move ``config``'s files to its legacy key, as a store made before 16-digit keys holds them."""
    new, old = config.key(), config.legacy_key()
    edit(root, lambda r: r.update(key=old), new)
    for kind in ("runs", "models"):
        ext = store.files.KINDS[kind]
        (root / kind / f"{new}{ext}").rename(root / kind / f"{old}{ext}")
    return old


def test_a_store_made_with_legacy_keys_is_read_and_trusted(copy):
    old = as_legacy(copy, CONFIG)
    found, why = store.find(copy, CONFIG)
    assert found is not None and found.key == old and why is None
    assert store.trusted(copy, old).models().keys() == {0, 1}
    assert [s.key for s in store.stored(copy)] == [old] and set(store.load(copy)["key"]) == {old}
    # The notebook's model choice uses the key the store holds it by.
    study = Study.from_parameters(
        batch_sizes=[90], epochs=1, seeds=[0, 1], lr=0.1, model_batch_size=90,
        config={"train_limit": 4000}, results_dir=str(copy),
    )  # fmt: skip
    assert study.choose_model(store.load(copy)).key == old


def test_a_legacy_record_is_never_taken_for_another_config_that_shares_its_key(mnist, tmp_path):
    # The two weight decays share a 32-bit key: a store made then holds the first.
    first, second = (
        TrainConfig(batch_size=64, lr=0.1, epochs=1, seeds=(0,), train_limit=2000, weight_decay=wd)
        for wd in (0.116274, 0.143149)
    )
    assert first.legacy_key() == second.legacy_key() and first.key() != second.key()
    store.save_result(train(first, mnist, progress=False, verbose=False), tmp_path)
    old = as_legacy(tmp_path, first)
    assert store.find(tmp_path, first)[0].key == old  # type: ignore[union-attr]
    assert store.find(tmp_path, second) == (None, "no record")  # so a sweep trains it
    store.save_result(train(second, mnist, progress=False, verbose=False), tmp_path)
    assert store.find(tmp_path, second)[0].key == second.key()  # type: ignore[union-attr]
    assert store.find(tmp_path, first)[0].key == old  # type: ignore[union-attr]
    assert not retire_legacy(tmp_path, second)  # the first's record is never touched


def test_a_broken_legacy_record_is_replaced_by_the_rerun(copy, mnist):
    old = as_legacy(copy, CONFIG)
    edit(copy, lambda r: r["replicas"].pop(), old)
    assert "holds 1 replicas" in store.find(copy, CONFIG)[1]  # the sweep reruns it, saying why
    assert not retire_legacy(copy, CONFIG)  # not until the new one is there
    store.save_result(train(CONFIG, mnist, progress=False, verbose=False), copy)
    assert retire_legacy(copy, CONFIG)
    assert not (copy / "runs" / f"{old}.json").exists() and not (copy / "models" / f"{old}.pt").exists()
    assert [s.key for s in store.stored(copy)] == [CONFIG.key()]


# -------------------------------------- W3, W7, W14: an all-done sweep tidies only its own


def test_an_all_done_sweep_never_deletes_outside_and_skips_broken_scratch(copy, capsys, tmp_path):
    other = tmp_path / "other"
    (other / "old-job").mkdir(parents=True)
    os.utime(other / "old-job", (0, 0))
    (copy / ".scratch").symlink_to(other)
    refused(capsys, [*SWEEP, "--results", str(copy)], ".scratch leads to", "outside the results folder")
    assert (other / "old-job").is_dir()
    # Dangling links, a loop and stale temporaries of killed writers: removed, and the sweep is done.
    (copy / ".scratch").unlink()
    (copy / ".scratch").mkdir()
    (copy / ".scratch" / "dangling").symlink_to(tmp_path / "nowhere")
    (copy / ".scratch" / "loop").symlink_to("loop")
    stale = [
        copy / "models" / f".{CONFIG.key()}.pt.dead1234.tmp",
        copy / "runs" / f".{CONFIG.key()}.json.x.tmp",
    ]
    for p in stale:
        p.write_bytes(b"half")
        os.utime(p, (0, 0))
    young = copy / "models" / ".other.pt.young123.tmp"
    young.write_bytes(b"being written")
    assert cli.main([*SWEEP, "--results", str(copy), "--no-progress"]) == 0, capsys.readouterr().err
    assert "skipped" in capsys.readouterr().out
    # The links are gone, and so is the then empty .scratch/ (a finished sweep tidies it away).
    assert not (copy / ".scratch").exists() and not any(p.exists() for p in stale) and young.exists()


# --------------------------------------------------- W2: --out through a link keeps the file


def test_train_out_through_a_link_keeps_the_files_mode(tmp_path, capsys):
    private = tmp_path / "private.json"
    private.write_text("{}")
    private.chmod(0o600)
    out = tmp_path / "out.json"
    out.symlink_to(private)
    argv = ["train", "--epochs", "1", "--seeds", "0", "--train-limit", "1000", "--batch-size", "100"]
    assert cli.main([*argv, "--no-progress", "--out", str(out)]) == 0, capsys.readouterr().err
    assert out.is_symlink() and stat.S_IMODE(private.stat().st_mode) == 0o600
    assert (
        store.read_record(private)["key"]
        == TrainConfig(epochs=1, seeds=(0,), train_limit=1000, batch_size=100).key()
    )


# ------------------------------------------- W10, W11, W22: runs that end badly, in one line


TRAIN = ["train", "--epochs", "1", "--seeds", "0-1", "--no-progress"]


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--lr", "1e-4", "--train-limit", "10000"], ["[0, 1] never learned", "raise the learning rate"]),
        (["--batch-size", "2000", "--train-limit", "2000"], ["never learned", "train longer"]),
        (
            ["--batch-size", "500", "--lr", "1", "--train-limit", "10000"],
            ["fell to chance", "collapsed", "lower the learning"],
        ),
    ],
    ids=["small-lr", "one-full-batch-step", "large-lr"],
)
def test_never_learned_and_fell_to_chance_get_opposite_advice(capsys, argv, words):
    assert cli.main([*TRAIN, *argv]) == 3
    line = capsys.readouterr().err.strip()
    assert line.startswith("failed seeds: batch ") and len(line.splitlines()) == 1
    for w in words:
        assert w in line, (w, line)


def test_a_run_that_diverged_in_its_only_epoch_names_its_step_and_the_weight_decay(capsys):
    argv = [*TRAIN, "--weight-decay", "1e30", "--batch-size", "100", "--train-limit", "2000"]
    assert cli.main(argv) == 3
    out, err = capsys.readouterr()
    assert "no finished epoch" in out and "Empty DataFrame" not in out
    assert "seeds [0, 1] (lr 0.1) diverged at step 2: its loss became NaN/inf" in err
    assert "lower the weight decay" in err and "lower the learning rate" not in err


def test_sizes_past_their_bound_are_refused_before_any_work(capsys, tmp_path):
    t0 = time.perf_counter()
    refused(capsys, ["train", "--hidden", "100000", "100000"], "hidden must be at most", "65,536")
    refused(capsys, [*SWEEP, "--workers", "100000000", "--results", str(tmp_path)], "--workers", "[1, 256]")
    assert time.perf_counter() - t0 < 10


def test_a_sweep_too_large_for_this_machine_is_refused_before_its_kernels(capsys, tmp_path):
    argv = ["sweep", "--batch-sizes", "90", "--epochs", "1", "--seeds", "0-999", "--hidden", "8192", "8192"]
    words = ("1,000 seeds of a 784-8192-8192-10 MLP", "need about", "are left")
    refused(capsys, [*argv, "--results", str(tmp_path / "r")], *words)
    assert not (tmp_path / "r" / "logs").exists()
