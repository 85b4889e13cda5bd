"""Which experiments train as one engine: those that differ only in seeds and lr (no data)."""

import dataclasses

from mlpmnist import TrainConfig
from mlpmnist.training.groups import cost, group_id, plan_groups, union

BASE = TrainConfig(batch_size=100, epochs=2, seeds=(0, 1), train_limit=2000, dtype="float64", device="cpu")


def test_plan_groups_joins_only_seeds_and_lr():
    a = BASE
    b = dataclasses.replace(BASE, seeds=(1, 2), lr=0.05)
    c = dataclasses.replace(BASE, seeds=(0,))  # replica (0, 0.1) is also a's
    d = dataclasses.replace(BASE, batch_size=50)
    e = dataclasses.replace(BASE, momentum=0.5)
    groups = plan_groups([a, b, c, d, e])
    assert [len(g.members) for g in groups] == [3, 1, 1]
    g = groups[0]
    assert g.config.replicas == ((0, 0.1), (1, 0.1), (1, 0.05), (2, 0.05))
    assert g.keys == [a.key(), b.key(), c.key()]
    assert group_id(a) == group_id(b) != group_id(d)
    assert union([a]) == a and cost(d) > cost(a)
