"""Groups on real MNIST: experiments that differ only in seeds and lr train as one engine, and each member's
result is the one it would have had alone; the concurrent trainer runs many groups at once."""

import dataclasses

import pandas as pd
import pytest
import torch

from mlpmnist import TrainConfig, train
from mlpmnist.training.groups import member_result, plan_groups
from mlpmnist.training.many import train_groups

BASE = TrainConfig(batch_size=100, epochs=2, seeds=(0, 1), train_limit=2000, dtype="float64", device="cpu")
QUIET = dict(progress=False, verbose=False)
TIMING = ["seconds", "eval_seconds"]


def same_result(a, b) -> None:
    """Two results of one experiment agree: every history value (timings aside) to 1e-12 and
    every final weight to 1e-12."""
    ha, hb = a.history.drop(columns=TIMING), b.history.drop(columns=TIMING)
    pd.testing.assert_frame_equal(ha, hb, check_exact=False, rtol=0, atol=1e-12)
    assert len(a.state_dicts) == len(b.state_dicts)
    for x, y in zip(a.state_dicts, b.state_dicts, strict=True):
        assert max((x[k] - y[k]).abs().max().item() for k in x) < 1e-12


def test_a_members_result_equals_the_member_trained_alone(mnist):
    members = [
        BASE,
        dataclasses.replace(BASE, seeds=(1, 2), lr=0.05),
        dataclasses.replace(BASE, seeds=(0,), max_shift=0),
    ]
    (group,) = plan_groups(members)
    together = train(group.config, mnist, **QUIET)
    for m in members:
        same_result(member_result(together, m), train(m, mnist, **QUIET))


def test_shifts_and_a_schedule_group_too(mnist):
    base = dataclasses.replace(BASE, max_shift=1, schedule="cosine", momentum=0.9, epochs=1)
    members = [base, dataclasses.replace(base, seeds=(3,), lr=0.03)]
    (group,) = plan_groups(members)
    together = train(group.config, mnist, **QUIET)
    for m in members:
        same_result(member_result(together, m), train(m, mnist, **QUIET))


def test_train_groups_trains_every_group_as_alone(mnist):
    configs = [
        BASE,
        dataclasses.replace(BASE, lr=0.05),
        dataclasses.replace(BASE, batch_size=250),
        dataclasses.replace(BASE, batch_size=250, optimizer="adam", lr=1e-3),
    ]
    groups = plan_groups(configs)
    assert len(groups) == 3
    # On a CPU groups train one after another (several cores are the sweep's jobs), whatever
    # concurrency a GPU would use.
    outcomes = list(train_groups(groups, mnist, concurrency=2))
    assert sorted(len(o.group.members) for o in outcomes) == [1, 1, 2]
    assert all(o.error is None and o.result is not None for o in outcomes)
    for o in outcomes:
        for m in o.group.members:
            assert o.result is not None
            same_result(member_result(o.result, m), train(m, mnist, **QUIET))


def test_train_groups_refuses_two_devices(mnist):
    groups = plan_groups([BASE, dataclasses.replace(BASE, device="auto", batch_size=50)])
    with pytest.raises(ValueError, match="one device"):
        list(train_groups(groups, mnist))


def test_float32_group_matches_alone_closely(mnist):
    # In float32 a replica's arithmetic is the same GEMMs in a bigger batch of matrices: equal to
    # within float32 rounding after a full epoch (bitwise where the BLAS treats batches alike).
    base = dataclasses.replace(BASE, dtype="float32", epochs=1)
    members = [base, dataclasses.replace(base, lr=0.05)]
    (group,) = plan_groups(members)
    together = train(group.config, mnist, **QUIET)
    alone = train(members[0], mnist, **QUIET)
    mine = member_result(together, members[0])
    for x, y in zip(mine.state_dicts, alone.state_dicts, strict=True):
        assert max((x[k] - y[k]).abs().max().item() for k in x) < 1e-4
    assert torch.allclose(
        torch.tensor(mine.history["test_acc"].to_numpy()),
        torch.tensor(alone.history["test_acc"].to_numpy()),
        atol=2e-3,
    )
