"""The results store: keyed records, the tidy frame, selection, and files that are not what they claim."""

import json

import pytest

from mlpmnist import TrainConfig, results, train
from mlpmnist.results import StoreError

QUIET = {"progress": False, "verbose": False}


@pytest.fixture(scope="module")
def two_configs(mnist, tmp_path_factory):
    """Two experiments that differ only in lr, stored side by side in one results directory."""
    root = tmp_path_factory.mktemp("store")
    configs = [
        TrainConfig(batch_size=100, epochs=2, seeds=(0, 1), lr=lr, train_limit=2000) for lr in (0.05, 0.1)
    ]
    for cfg in configs:
        res = train(cfg, mnist, **QUIET)
        results.write_record(results.make_record(res), results.path(root, "runs", cfg.key()))
        results.save_models(res, results.path(root, "models", cfg.key()))
    return root, configs


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
    assert rec["key"] == configs[0].key() and rec["error"] is None and rec["collapsed"] == []
    assert [r["status"] for r in rec["replicas"]] == ["ok", "ok"]
    assert rec["config"] == configs[0].to_dict()


def test_is_done_needs_record_notebook_and_weights(two_configs, tmp_path):
    root, configs = two_configs
    cfg = configs[0]
    assert not results.is_done(root, cfg)  # no executed notebook yet
    results.atomic_write_text(results.path(root, "notebooks", cfg.key()), "{}")
    try:
        assert results.is_done(root, cfg)
        assert not results.is_done(root, TrainConfig(**{**cfg.to_dict(), "epochs": 3}))
    finally:
        results.path(root, "notebooks", cfg.key()).unlink()


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
        results.load(tmp_path)


def test_empty_or_missing_results_dir(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        results.load(tmp_path / "nowhere")
    (tmp_path / "runs").mkdir()
    with pytest.raises(StoreError, match="no run records in"):
        results.load(tmp_path)


def test_atomic_write_leaves_no_temporary(tmp_path):
    p = results.atomic_write_bytes(tmp_path / "a" / "b.bin", b"x" * 10)
    assert p.read_bytes() == b"x" * 10 and [f.name for f in p.parent.iterdir()] == ["b.bin"]
