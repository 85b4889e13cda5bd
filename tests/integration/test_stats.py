"""Statistics and findings of a small real training run (real MNIST)."""

from __future__ import annotations

from mlpmnist.analysis import compare, findings, stats
from mlpmnist.store import frame, make_record
from mlpmnist.training.loop import TrainConfig, train


def test_a_real_frame(mnist):
    cfg = TrainConfig(batch_size=128, epochs=2, seeds=(0, 1, 2), train_limit=3000, threads=1)
    real = frame([make_record(train(cfg, mnist, progress=False, verbose=False))])
    fin = stats.final(real)
    assert len(fin) == 3 and not fin["failed"].any()
    summ = stats.summary(real)
    assert summ["n"].tolist() == [3] and 0.5 < summ.loc[0, "median"] < 1
    lines = findings.conclusions(summ, compare.pairwise(real))
    assert lines[0].startswith("Final test accuracy: batch 128, median")
    assert stats.per_epoch(real)["replicas"].tolist() == [3, 3]
    assert summ[["reference", "reference_headline"]].isna().all().all()  # 2 epochs, not the reference's 15
