"""How a replica ended, from its numbers alone (no torch, so the statistics can read it too):
*diverged*, *collapsed* (at chance level: it *never learned* or *fell to chance*) or *reached* its
target (``classify``), and what to do about it in words (``outcome_message``)."""

from __future__ import annotations

import math

import numpy as np

from mlpmnist.config import TrainConfig

#: Mean cross-entropy (nats) above which a replica counts as diverged: chance level on ten classes
#: is ln 10 = 2.3, and a runaway replica can sit at a huge but finite loss once its ReLUs died.
DIVERGED_LOSS = 1e3
#: Accuracy below which a replica is at chance level: a learning MLP passes 20% within 100 steps.
COLLAPSED_ACC = 0.2


def chance_loss(n_classes: int) -> float:
    """The mean cross-entropy (nats) of a uniform guess over ``n_classes`` classes: ln(n_classes)."""
    return math.log(n_classes)


def classify(row: dict, config: TrainConfig, whole_epoch: bool) -> dict[str, bool]:
    """The flags of one history row: ``diverged`` (a loss non-finite or above ``DIVERGED_LOSS``),
    ``collapsed`` (not diverged; accuracy below ``COLLAPSED_ACC`` or, over a ``whole_epoch`` of
    steps, training loss above ``chance_loss``), ``reached`` (not diverged, val accuracy >= ``target``)."""
    losses = [v for k, v in row.items() if k.endswith("_loss")]
    diverged = not all(math.isfinite(v) for v in losses) or row["train_loss"] > DIVERGED_LOSS
    acc = row["test_acc"] if "test_acc" in row else row["val_acc"]
    at_chance_loss = whole_epoch and row["train_loss"] > chance_loss(config.spec.n_classes)
    reached = config.target is not None and not diverged and row["val_acc"] >= config.target
    return {
        "diverged": diverged,
        "collapsed": not diverged and (acc < COLLAPSED_ACC or at_chance_loss),
        "reached": bool(reached),
    }


#: An accuracy that, once reached, means a replica learned: falling to chance later is a collapse.
LEARNED_ACC = 0.5
#: A training loss above this many times chance is a blow-up (a fresh network's is within a few %).
BLOWUP = 1.5
#: A layer with more than this fraction of dead units died, as too large a step kills ReLUs.
DEAD = 0.5


def never_learned(config: TrainConfig, history: list[dict]) -> bool:
    """Whether a replica at chance level never learned rather than fell to chance, from its history:
    no accuracy reached ``LEARNED_ACC``, no loss went above ``BLOWUP`` x chance, no layer is mostly dead."""
    chance = chance_loss(config.spec.n_classes)
    for row in history:
        accs = [v for k, v in row.items() if k.endswith("_acc") and isinstance(v, (int, float))]
        loss = row.get("train_loss")
        if any(a >= LEARNED_ACC for a in accs):
            return False
        if isinstance(loss, (int, float)) and not loss <= BLOWUP * chance:  # NaN counts as a blow-up
            return False
    dead = [v for k, v in history[-1].items() if k.startswith("dead_") and isinstance(v, (int, float))]
    return not any(d > DEAD for d in dead)


def _diverged(config: TrainConfig, last: dict) -> tuple[str, str]:
    """(what happened, what to do) for a diverged replica, but for its seed, from its last row."""
    loss = last.get("train_loss")
    what = "its loss became NaN/inf"
    if loss is not None and math.isfinite(loss):
        what = f"its training loss reached {loss:.3g} nats, above {DIVERGED_LOSS:g}"
    at = last.get("diverged_at")
    where = (
        f"at step {at:g}" if isinstance(at, (int, float)) and math.isfinite(at) else f"by step {last['step']}"
    )
    lr, wd, m = last["lr"], config.weight_decay, config.momentum
    if config.optimizer == "sgd" and wd and lr * wd >= 2 * (1 + m):
        # w <- w (1 - lr wd) (with momentum: a heavy ball on the curvature wd) grows without bound.
        fix = (
            f"weight decay {wd:g} with lr {lr:g} makes every step enlarge the weights "
            f"(lr x weight_decay = {lr * wd:.3g} >= {2 * (1 + m):g}): lower the weight decay"
        )
    elif wd:
        fix = "lower the learning rate or the weight decay, or raise the batch size"
    else:
        fix = "lower the learning rate or raise the batch size"
    return f"(lr {lr:g}) diverged {where}: {what}", fix


def outcome_message(config: TrainConfig, rows: list[dict]) -> str | None:
    """What happened to the replicas of ``rows`` (history rows in order) that diverged or ended at
    chance level, judged by each one's last row, and what to do, in one line; None when none did."""
    history: dict[tuple, list[dict]] = {}
    for r in rows:
        history.setdefault((r["seed"], r["lr"]), []).append(r)
    diverged: dict[tuple[str, str], list[int]] = {}  # replicas that diverged alike: one clause
    never: list[int] = []
    fell: list[int] = []
    for rs in history.values():
        last = rs[-1]
        if last.get("diverged"):
            diverged.setdefault(_diverged(config, last), []).append(last["seed"])
        elif last.get("collapsed"):
            (never if never_learned(config, rs) else fell).append(last["seed"])
    parts = [
        f"{f'seed {seeds[0]}' if len(seeds) == 1 else f'seeds {seeds}'} {what}; {fix}"
        for (what, fix), seeds in diverged.items()
    ]
    if fell:
        parts.append(
            f"seed(s) {fell} fell to chance level (collapsed: its updates blew up, or it lost what it "
            "learned); lower the learning rate or raise the batch size"
        )
    if never:
        parts.append(
            f"seed(s) {never} never learned (collapsed at chance level with its loss still near its start); "
            "raise the learning rate or train longer (more epochs, or a smaller batch size)"
        )
    return f"batch {config.batch_size}: {'; '.join(parts)}" if parts else None


def eval_line(config: TrainConfig, rows: list[dict]) -> str:
    """One evaluation's rows as a progress line: epoch, test accuracy (median and quartiles),
    replicas at chance, seconds since the previous evaluation."""
    r0 = rows[0]
    acc = np.array([r["test_acc"] for r in rows if not r["diverged"] and "test_acc" in r], dtype=float)
    if len(acc):
        q1, med, q3 = 100 * np.quantile(acc, [0.25, 0.5, 0.75])
        shown = f"test_acc median {med:.2f}% [{q1:.2f}, {q3:.2f}]" if len(acc) > 1 else f"test_acc {med:.2f}%"
    else:
        shown = "no test accuracy"
    collapsed = sum(r["collapsed"] for r in rows)
    flag = f", {collapsed} at chance" if collapsed else ""
    seconds = r0["seconds"] + r0["eval_seconds"]
    return (
        f"batch {config.batch_size:>4} epoch {r0['epoch']:>5g}/{config.epochs}  {shown}"
        f"  ({len(rows)} replica{'s' if len(rows) > 1 else ''}{flag}, {seconds:.1f} s)"
    )
