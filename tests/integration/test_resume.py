"""An interrupted training run resumes from its last finished epoch and ends as an uninterrupted
one does, bit for bit (history and weights; only the timing columns differ): the engine's
parameters and optimizer state, every generator (batch order, shifts), the rows so far, the
replicas already dropped and the snapshots all come back from the checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from mlpmnist.config import TrainConfig
from mlpmnist.store.checkpoint import Checkpoints
from mlpmnist.training.loop import train

pytestmark = pytest.mark.slow  # each trains on real MNIST

TIMING = ["seconds", "eval_seconds"]


class Stop(Exception):
    pass


class StopAfter(Checkpoints):
    """The store's checkpoint, and an interruption right after the ``epochs``-th save."""

    def __init__(self, results_dir, config, epochs: int) -> None:
        super().__init__(results_dir, config)
        self.left, self.saved = epochs, 0

    def save(self, state):
        out = super().save(state)
        self.saved += 1
        self.left -= 1
        if self.left == 0:
            raise Stop
        return out


def same(a, b) -> None:
    """Two ``TrainResult``s hold the same history (timings aside), final weights and snapshots."""
    ha, hb = a.history.drop(columns=TIMING), b.history.drop(columns=TIMING)
    assert ha.columns.tolist() == hb.columns.tolist() and len(ha) == len(hb)
    for col in ha.columns:
        for x, y in zip(ha[col], hb[col], strict=True):
            assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), (col, x, y)
    for sa, sb in zip(a.state_dicts, b.state_dicts, strict=True):
        assert (sa is None) == (sb is None)
        for k in sa or {}:
            assert torch.equal(sa[k], sb[k]), k
    assert a.snapshots.keys() == b.snapshots.keys()
    for e in a.snapshots:
        for sa, sb in zip(a.snapshots[e], b.snapshots[e], strict=True):
            assert (sa is None) == (sb is None) and all(torch.equal(sa[k], sb[k]) for k in sa or {})


CASES = {
    # Momentum buffers, random shifts (a second generator per replica), a replica that diverges
    # (dropped mid-run: the engine keeps fewer replicas) and a snapshot before the interruption.
    "sgd": dict(momentum=0.9, max_shift=1, lr=(0.05, 0.1, 40.0), snapshots=(1, 3)),
    # Adam's moments and its step count (a tensor in the rule's state).
    "adam": dict(optimizer="adam", lr=0.003, snapshots=(0.5,)),
}


@pytest.mark.parametrize("case", CASES)
def test_an_interrupted_run_resumes_to_the_same_history_and_weights(mnist, tmp_path, case):
    config = TrainConfig(batch_size=50, epochs=4, seeds=(0, 1, 2), train_limit=3000, **CASES[case])
    whole = train(config, mnist, progress=False, verbose=False)
    assert whole.history["diverged"].any() == (case == "sgd")  # the lr-40 replica diverges

    first = StopAfter(tmp_path, config, epochs=2)
    with pytest.raises(Stop):
        train(config, mnist, progress=False, verbose=False, checkpoint=first)
    assert first.path.is_file() and first.saved == 2
    seen: list[float] = []
    resumed = train(
        config,
        mnist,
        progress=False,
        verbose=False,
        checkpoint=Checkpoints(tmp_path, config),
        on_eval=lambda rows: seen.extend(r["epoch"] for r in rows),
    )
    assert min(seen) > 2  # epochs 1 and 2 came from the checkpoint, not from training again
    same(resumed, whole)


def test_a_checkpoint_of_another_run_or_unreadable_is_not_used(mnist, tmp_path):
    config = TrainConfig(batch_size=100, epochs=2, seeds=(0, 1), train_limit=2000)
    other = TrainConfig(batch_size=100, epochs=2, seeds=(0, 1), train_limit=2000, lr=0.05)
    with pytest.raises(Stop):
        train(other, mnist, progress=False, verbose=False, checkpoint=StopAfter(tmp_path, config, 1))
    # Saved under config's name but holding other's state: neither the store nor the loop uses it.
    assert Checkpoints(tmp_path, config).path.is_file() and Checkpoints(tmp_path, config).load() is None

    class Raw(Checkpoints):
        def load(self):
            return torch.load(self.path, weights_only=True)

    whole = train(config, mnist, progress=False, verbose=False)
    fresh = train(config, mnist, progress=False, verbose=False, checkpoint=Raw(tmp_path, config))
    same(fresh, whole)
    broken = Checkpoints(tmp_path, config)
    broken.path.write_bytes(b"not a checkpoint")
    assert broken.load() is None and not broken.path.exists()  # removed, and training starts over


def test_train_into_a_store_resumes_an_interrupted_run(mnist, tmp_path, capsys):
    import argparse
    import signal

    from mlpmnist import cli
    from mlpmnist import store as results

    config = TrainConfig(batch_size=100, epochs=3, seeds=(0, 1), train_limit=2000, threads=1)
    with pytest.raises(Stop):  # as a Ctrl-C after epoch 2 leaves it
        train(config, mnist, progress=False, verbose=False, checkpoint=StopAfter(tmp_path, config, 2))
    args = ["train", "--results", str(tmp_path), "--batch-size", "100", "--epochs", "3", "--seeds", "0", "1"]
    capsys.readouterr()
    assert cli.main([*args, "--train-limit", "2000", "--threads", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "epoch     3/3" in out and "epoch     1/3" not in out  # went on from epoch 2
    stored = results.trusted(tmp_path, config.key())
    whole = train(config, mnist, progress=False, verbose=False)
    for rep, seed in zip(stored.record["replicas"], config.seeds, strict=True):
        mine = whole.history[whole.history["seed"] == seed].drop(columns=TIMING)
        rows = [{k: v for k, v in row.items() if k not in TIMING} for row in rep["history"]]
        assert rows == mine.to_dict("records")
    assert not results.path(tmp_path, "checkpoints", config.key()).exists()
    said = cli.interrupted_message(
        argparse.Namespace(command="train", out=None, results=tmp_path), signal.SIGINT
    )
    assert (
        said
        == f"interrupted by Ctrl-C; its last finished epoch is kept in {tmp_path}: rerun to resume from there"
    )
    capsys.readouterr()
