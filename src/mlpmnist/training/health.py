"""How a replica ended, from its numbers alone (no torch, so the statistics can read it too).

- *diverged*: a loss became non-finite or exceeded ``DIVERGED_LOSS``;
- *collapsed*: at chance level: accuracy below ``COLLAPSED_ACC``, or a training loss above
  ``chance_loss`` (ln of the dataset's classes: a uniform guess) over a whole epoch;
- *reached*: its validation accuracy reached the config's ``target`` (it stops there).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlpmnist.config import TrainConfig

#: Mean cross-entropy (nats) above which a replica counts as diverged: chance level on ten classes
#: is ln 10 = 2.3, and a runaway replica can sit at a huge but finite loss once its ReLUs died.
DIVERGED_LOSS = 1e3
#: Accuracy below which a replica is at chance level: a learning MLP passes 20% within its first
#: hundred steps.
COLLAPSED_ACC = 0.2


def chance_loss(n_classes: int) -> float:
    """The mean cross-entropy (nats) of a uniform guess over ``n_classes`` classes: ln(n_classes)."""
    return math.log(n_classes)


def classify(row: dict, config: TrainConfig, whole_epoch: bool) -> dict[str, bool]:
    """The flags of one history row: ``diverged`` (a loss non-finite or above ``DIVERGED_LOSS``),
    ``collapsed`` (not diverged, and at chance: accuracy below ``COLLAPSED_ACC``, or, over a
    ``whole_epoch`` of steps, a training loss above ``chance_loss``; a few steps are too noisy
    for the loss to count) and ``reached`` (not diverged, and its validation accuracy at or above
    the config's ``target``)."""
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


def outcome_message(config: TrainConfig, rows: list[dict]) -> str | None:
    """What happened to the replicas of ``rows`` (each one's last row) that diverged or ended at
    chance level, and what to do, in one line; None when none did."""
    parts = []
    for r in rows:
        if r.get("diverged"):
            loss = r["train_loss"]
            what = (
                "its loss became NaN/inf"
                if loss is None or not math.isfinite(loss)
                else f"its training loss reached {loss:.3g} nats, above {DIVERGED_LOSS:g}"
            )
            parts.append(f"seed {r['seed']} (lr {r['lr']:g}) diverged at step {r['step']}: {what}")
    collapsed = [r["seed"] for r in rows if r.get("collapsed") and not r.get("diverged")]
    if collapsed:
        parts.append(f"seed(s) {collapsed} ended at chance level (collapsed)")
    if not parts:
        return None
    return f"batch {config.batch_size}: {'; '.join(parts)}; lower the learning rate or raise the batch size"


def eval_line(config: TrainConfig, rows: list[dict]) -> str:
    """One evaluation's rows as a progress line: epoch, the test accuracy's median and quartiles
    over the live replicas (%), how many are at chance, and the seconds since the previous one."""
    import numpy as np

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
