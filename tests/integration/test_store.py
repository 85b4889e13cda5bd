"""The results store: keyed records, the tidy frame, selection, and files that are not what they claim."""

import dataclasses
import json

import pytest

from mlpmnist import TrainConfig, train
from mlpmnist import store as results
from mlpmnist.config import meta
from mlpmnist.store import StoreError

QUIET = {"progress": False, "verbose": False}


@pytest.fixture(scope="module")
def two_configs(mnist, tmp_path_factory):
    """Two experiments that differ only in lr, stored side by side in one results directory."""
    root = tmp_path_factory.mktemp("store")
    configs = [
        TrainConfig(batch_size=100, epochs=2, seeds=(0, 1), lr=lr, train_limit=2000) for lr in (0.05, 0.1)
    ]
    for cfg in configs:
        results.save_result(train(cfg, mnist, **QUIET), root)
    return root, configs


def a_notebook(target) -> None:
    import nbformat

    results.atomic_write_text(
        target, nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]))
    )


def test_records_of_different_configs_coexist_and_select(two_configs):
    root, configs = two_configs
    df = results.load(root)
    assert set(df["key"]) == {c.key() for c in configs} and len(df) == 2 * 2 * 2
    for col in ("batch_size", "epochs", "hidden", "momentum", "seed", "lr", "step", "dead_1", "status"):
        assert col in df.columns, col
    assert (df["hidden"] == "64x64").all() and (df["status"] == "ok").all()
    only = results.load(root, keys=[configs[1].key()])
    assert set(only["lr"]) == {0.1}
    assert set(results.load(root, where={"lr": 0.05})["lr"]) == {0.05}
    assert len(results.load(root, where={"lr": [0.05, 0.1], "batch_size": 100})) == len(df)
    assert len(results.load(root, where={"hidden": [64, 64]})) == len(df)
    with pytest.raises(StoreError, match="matching the selection"):
        results.load(root, where={"batch_size": 8})
    with pytest.raises(ValueError, match="unknown TrainConfig field 'batchsize'"):
        results.load(root, where={"batchsize": 8})


def test_record_says_status_and_key(two_configs):
    root, configs = two_configs
    rec = results.read_record(results.path(root, "runs", configs[0].key()))
    assert rec["key"] == configs[0].key() and rec["note"] is None
    assert rec["collapsed"] == rec["diverged"] == []
    assert [r["status"] for r in rec["replicas"]] == ["ok", "ok"]
    assert rec["config"] == configs[0].to_dict()
    prov = rec["provenance"]  # what made it, as far as its bits depend on it
    assert prov["threads"] == configs[0].threads and prov["device"] == "cpu" and prov["cpu"]
    assert prov["torch"] and len(prov["git_commit"] or "x" * 40) == 40


def test_done_needs_its_record_and_weights_not_a_notebook(two_configs, tmp_path):
    # The executed notebook is provenance: a record written by `train` or by the experiment
    # notebook run by hand is trusted on its own checks.
    root, configs = two_configs
    cfg = configs[0]
    assert results.find(root, cfg)[0] and not results.path(root, "notebooks", cfg.key()).exists()
    assert results.find(root, TrainConfig(**{**cfg.to_dict(), "epochs": 3}))[1] == "no record"
    assert results.trusted(root, cfg.key()).config == cfg


def copy_store(root, tmp_path, cfg):
    """A results folder holding one finished experiment (record, notebook, weights)."""
    import shutil

    for kind in ("runs", "models"):
        p = results.path(tmp_path, kind, cfg.key())
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(results.path(root, kind, cfg.key()), p)
    assert results.find(tmp_path, cfg)[0]
    return tmp_path


def edit_record(root, cfg, change) -> None:
    p = results.path(root, "runs", cfg.key())
    rec = json.loads(p.read_text())
    change(rec)
    p.write_text(json.dumps(rec))


@pytest.mark.parametrize(
    "damage,reason",
    [
        (lambda root, cfg, other: edit_record(root, cfg, lambda r: r["replicas"].pop()), "holds 1 replicas"),
        (lambda root, cfg, other: edit_record(root, cfg, lambda r: r.update(replicas=[])), "no replicas"),
        (
            lambda root, cfg, other: edit_record(root, cfg, lambda r: r["replicas"][0]["history"].pop()),
            "stops before epoch 2",
        ),
        (
            lambda root, cfg, other: edit_record(root, cfg, lambda r: r["replicas"][0].pop("status")),
            "status None",
        ),
        (
            lambda root, cfg, other: edit_record(
                root, cfg, lambda r: r["replicas"][0]["history"][0].update(test_acc="0.9")
            ),
            "without a numeric epoch and test_acc",
        ),
        (
            lambda root, cfg, other: results.path(root, "models", cfg.key()).unlink(),
            "no weights file",
        ),
        (
            lambda root, cfg, other: results.path(root, "models", cfg.key()).write_bytes(
                results.path(other[0], "models", other[1].key()).read_bytes()
            ),
            "checksum",
        ),
    ],
    ids=[
        "one-replica-missing",
        "no-replicas",
        "short-history",
        "no-status",
        "string-acc",
        "no-weights",
        "other-weights",
    ],
)
def test_the_store_trusts_only_what_it_can_check(two_configs, tmp_path, damage, reason):
    root, configs = two_configs
    cfg = configs[0]
    store = copy_store(root, tmp_path, cfg)
    damage(store, cfg, (root, configs[1]))
    problem = results.find(store, cfg)[1]
    assert problem is not None and reason in problem
    # Every reader refuses it by name: the frame, and the models.
    with pytest.raises(StoreError, match=f"{cfg.key()}.json cannot be used: .*{reason}"):
        results.load(store)
    with pytest.raises(StoreError, match=reason):
        results.trusted(store, cfg.key()).models()


def test_weights_of_another_experiment_are_not_trusted(two_configs, tmp_path):
    root, configs = two_configs
    store = copy_store(root, tmp_path, configs[0])
    other = results.path(root, "models", configs[1].key())
    results.path(store, "models", configs[0].key()).write_bytes(other.read_bytes())
    with pytest.raises(StoreError, match="checksum"):
        results.trusted(store, configs[0].key())
    assert sorted(results.trusted(root, configs[1].key()).models()) == [0, 1]


def test_weights_round_trip_and_bad_files(two_configs, tmp_path):
    root, configs = two_configs
    models = results.load_models(results.path(root, "models", configs[0].key()))
    assert sorted(models) == [0, 1] and not models[0].training
    good = results.path(root, "models", configs[0].key()).read_bytes()
    for name, payload in [("truncated.pt", good[: len(good) // 2]), ("garbage.pt", b"not a checkpoint")]:
        p = tmp_path / name
        p.write_bytes(payload)
        with pytest.raises(StoreError, match=rf"{name} is not a readable weights file .*delete it"):
            results.load_models(p)
    with pytest.raises(StoreError, match="no weights file"):
        results.load_models(tmp_path / "missing.pt")


def test_space_estimates_are_from_above(two_configs):
    root, configs = two_configs
    for cfg in configs:
        need = results.output_bytes(cfg)
        assert results.path(root, "runs", cfg.key()).stat().st_size <= need["record"]
        assert results.path(root, "models", cfg.key()).stat().st_size <= need["weights"]
    with pytest.raises(StoreError, match=r"this sweep writes about 1000.0 GB .x2 margin.; free some space"):
        results.check_space(root, 1e12, "this sweep")


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda r: r.update(collapsed="0"), "collapsed '0' is not a list of seeds"),
        (lambda r: r.update(error=3), "error 3 is neither text nor null"),
        (lambda r: r.update(seconds="fast"), "seconds 'fast' is not a finite number"),
    ],
    ids=["collapsed", "error", "seconds"],
)
def test_a_record_whose_fields_a_table_reads_have_the_wrong_type_is_named(
    two_configs, tmp_path, change, match
):
    root, configs = two_configs
    rec = json.loads(results.path(root, "runs", configs[0].key()).read_text())
    change(rec)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "bad.json").write_text(json.dumps(rec))
    with pytest.raises(StoreError, match=rf"bad\.json cannot be used: not a run record \({match}\)"):
        results.load(tmp_path)


@dataclasses.dataclass(frozen=True)
class Extended(TrainConfig):
    """TrainConfig with one more field, as a future version might add (label smoothing)."""

    label_smoothing: float = dataclasses.field(
        default=0.0, metadata=meta("cross-entropy label smoothing", baseline=0.0)
    )


def test_a_new_field_keeps_every_key_and_every_stored_result(mnist, tmp_path):
    import nbformat

    small = dict(batch_size=250, epochs=1, seeds=(0,), train_limit=1000)
    assert Extended(**small).key() == TrainConfig(**small).key()  # at its baseline: out of the hash
    assert Extended(**small, label_smoothing=0.1).key() != TrainConfig(**small).key()
    # A store written by today's TrainConfig is done for the extended config at its baseline...
    old = TrainConfig(**small)
    results.save_result(train(old, mnist, progress=False, verbose=False), tmp_path)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    results.atomic_write_text(results.path(tmp_path, "notebooks", old.key()), nbformat.writes(nb))
    assert results.find(tmp_path, old)[0]
    assert results.find(tmp_path, Extended(**small))[0]
    # ...and never for another value of the new field (another key, so no record at all).
    assert results.find(tmp_path, Extended(**small, label_smoothing=0.1))[1] == "no record"
    # A record that holds the new field at another value is never taken for the baseline's.
    record = results.read_record(results.path(tmp_path, "runs", old.key()))
    record["config"]["label_smoothing"] = 0.1
    assert results.stored_config(record, Extended).identity() != Extended(**small).identity()


def test_a_selection_reads_past_an_untrusted_record_it_leaves_out(two_configs, tmp_path):
    # A broken experiment of another selection neither blocks this one nor is passed over when chosen.
    src, (low, high) = two_configs
    root = tmp_path / "store"
    for kind in ("runs", "models"):
        (root / kind).mkdir(parents=True)
        for c in (low, high):
            results.path(root, kind, c.key()).write_bytes(results.path(src, kind, c.key()).read_bytes())
    results.path(root, "models", high.key()).write_bytes(b"\0" * 64)  # zeroed weights: not trusted
    assert set(results.load(root, where={"lr": 0.05})["key"]) == {low.key()}
    with pytest.raises(StoreError, match=high.key()):
        results.load(root, where={"lr": 0.1})
    with pytest.raises(StoreError, match=high.key()):
        results.load(root)
