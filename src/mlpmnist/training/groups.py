"""Groups: experiments that one engine trains together, each still its own experiment.

Experiments that differ only in what an engine varies per replica (``PER_REPLICA``: the seeds
and the learning rates) train as one engine whose replicas are the union of theirs. Every
replica's initialisation, batch order, shifts and arithmetic depend on its own (seed, lr) alone,
so each member's result, cut out of the group's (``member_result``), is the one it would have
had alone: its record, key and weights are those of an experiment trained by itself.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass

from mlpmnist.config import TrainConfig
from mlpmnist.training.result import TrainResult

#: The fields one engine varies per replica.
PER_REPLICA = ("seeds", "lr")
#: Examples' worth of work that one step costs beyond its examples (dispatch, small GEMMs); it
#: makes small batches the long pole. Only the order and the split of the work depend on it.
STEP_OVERHEAD_EXAMPLES = 40


@dataclass(frozen=True)
class Group:
    """``members`` (experiments, in the order given) and ``config``: one engine whose replicas
    are every member's (seed, lr) pairs, each once, in order of first appearance."""

    config: TrainConfig
    members: tuple[TrainConfig, ...]

    @property
    def keys(self) -> list[str]:
        """The members' experiment keys."""
        return [m.key() for m in self.members]


def group_id(config: TrainConfig) -> str:
    """What must be equal for two experiments to share an engine: every field but ``PER_REPLICA``
    (device and threads included: one engine runs in one place)."""
    rest = {k: v for k, v in config.to_dict().items() if k not in PER_REPLICA}
    return json.dumps(rest, sort_keys=True)


def union(members: Iterable[TrainConfig]) -> TrainConfig:
    """One config training every (seed, lr) replica of ``members`` (all of one ``group_id``)."""
    members = list(members)
    replicas = list(dict.fromkeys(r for m in members for r in m.replicas))
    seeds, lrs = zip(*replicas, strict=True)
    lr: float | tuple[float, ...] = lrs[0] if len(set(lrs)) == 1 else lrs
    return dataclasses.replace(members[0], seeds=seeds, lr=lr)


def plan_groups(configs: Iterable[TrainConfig]) -> list[Group]:
    """The groups of ``configs``, in order of each group's first member."""
    by_id: dict[str, list[TrainConfig]] = {}
    for c in configs:
        by_id.setdefault(group_id(c), []).append(c)
    return [Group(union(members), tuple(members)) for members in by_id.values()]


def member_result(result: TrainResult, member: TrainConfig) -> TrainResult:
    """The part of a group's ``result`` that belongs to ``member``: its replicas' history rows,
    final weights and snapshots, in the member's replica order; device, seconds (the group's
    wall time) and first-step time as the group's."""
    where = {r: i for i, r in enumerate(result.config.replicas)}
    index = [where[r] for r in member.replicas]
    h = result.history
    if not h.empty:
        mine = set(member.replicas)
        h = h[[(s, lr) in mine for s, lr in zip(h["seed"], h["lr"], strict=True)]].reset_index(drop=True)
    return dataclasses.replace(
        result,
        config=member,
        history=h,
        state_dicts=[result.state_dicts[i] for i in index],
        snapshots={e: [sds[i] for i in index] for e, sds in result.snapshots.items()},
    )


def cost(config: TrainConfig) -> float:
    """Relative cost of training ``config``: replicas x epochs x (examples + a per-step overhead)."""
    per_epoch = config.n_train + STEP_OVERHEAD_EXAMPLES * config.steps_per_epoch
    return len(config.seeds) * config.epochs * per_epoch
