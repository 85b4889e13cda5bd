"""How a replica ended, from its numbers alone (no torch, so the statistics can read it too).

- *diverged*: a loss became non-finite or exceeded ``DIVERGED_LOSS``;
- *collapsed*: at chance level: accuracy below ``COLLAPSED_ACC``, or a training loss above
  ``chance_loss`` (ln of the dataset's classes: a uniform guess) over a whole epoch.
"""

from __future__ import annotations

import math

#: Mean cross-entropy (nats) above which a replica counts as diverged: chance level on ten classes
#: is ln 10 = 2.3, and a runaway replica can sit at a huge but finite loss once its ReLUs died.
DIVERGED_LOSS = 1e3
#: Accuracy below which a replica is at chance level: a learning MLP passes 20% within its first
#: hundred steps.
COLLAPSED_ACC = 0.2


def chance_loss(n_classes: int) -> float:
    """The mean cross-entropy (nats) of a uniform guess over ``n_classes`` classes: ln(n_classes)."""
    return math.log(n_classes)
