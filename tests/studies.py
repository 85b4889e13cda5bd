"""What the analysis, figures and workbench tests share: results frames shaped like the store's,
made from measured seed outcomes (no data files), and the check that the README's generated blocks
agree with the CSVs they are written from."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# Measured: batch 8, lr 0.1, 15 epochs, 20 seeds (percent).
B8 = [48.79, 61.42, 80.72, 82.29, 83.84, 83.91, 84.43, 90.21, 90.36, 90.48]
B8 += [91.15, 91.26, 91.38, 91.42, 92.74, 92.85, 92.86, 93.34, 93.45, 93.54]
B8_FIVE = [82.29, 91.15, 93.34, 80.72, 91.38]  # the default sweep's seeds 0-4
# Batch 128, 10 seeds: one last-epoch dip among the others (epoch-to-epoch jitter).
B128 = [96.8, 96.9, 97.0, 97.1, 97.2, 97.3, 97.35, 97.4, 97.5, 95.7]
# Batch 16, 10 seeds: one seed far below the rest.
B16 = [89.04, 94.7, 94.9, 95.1, 95.3, 95.4, 95.5, 95.6, 95.8, 96.0]

CONFIG = dict(
    epochs=5,
    momentum=0.0,
    weight_decay=0.0,
    schedule="constant",
    hidden="64x64",
    engine="fast",
    train_limit=np.nan,
    holdout=0,
    drop_last=False,
    dtype="float32",
    max_shift=0,
)


def make_history(
    finals: Mapping[int, Sequence[float]], epochs: int = 5, lr: float = 0.1, **config
) -> pd.DataFrame:
    """A frame with ``results.load``'s columns: per batch size (``finals``' keys) one replica
    per listed final test accuracy (percent; NaN: the replica diverges in its last epoch).
    Curves rise to the final value; a final below 20% is a run that collapsed after epoch 2,
    its dead-unit fraction climbing towards 95%."""
    rows = []
    for bs, accs in finals.items():
        cfg = {**CONFIG, "epochs": epochs, **config, "batch_size": bs}
        key = f"bs{bs:04d}-lr{lr:g}-" + "-".join(f"{v}" for k, v in sorted(config.items()))
        dead = 0.1 / (epochs * math.sqrt(bs))  # smaller batches kill more units (made up)
        for seed, final_pct in enumerate(accs):
            final = final_pct / 100
            for e in range(1, epochs + 1):
                diverged = not math.isfinite(final) and e == epochs
                if not math.isfinite(final) and not diverged:
                    acc = 0.9
                elif final < 0.2:
                    acc = 0.9 if e <= 2 else final
                else:
                    acc = final - 0.02 * (epochs - e) / epochs + 0.001 * ((seed + e) % 3 - 1) * (e < epochs)
                collapse = acc < 0.2
                nan = float("nan")
                rows.append(
                    {
                        "key": key,
                        **cfg,
                        "lr": lr,
                        "seed": seed,
                        "epoch": e,
                        "step": e * math.ceil(60_000 / bs),
                        "train_loss": nan if diverged else (2.4 if collapse else 1.2 * (1 - acc)),
                        "test_loss": nan if diverged else (2.4 if collapse else 1.5 * (1 - acc)),
                        "train_acc": nan if diverged else min(1.0, acc + 0.01),
                        "test_acc": nan if diverged else acc,
                        "dead_1": nan if diverged else (0.95 * e / epochs if final < 0.2 else dead * e),
                        "dead_2": nan if diverged else (0.5 * e / epochs if final < 0.2 else dead * e / 2),
                        "wnorm_1": 10.0 + e,
                        "wnorm_2": 5.0 + e,
                        "wnorm_3": 2.0 + e,
                        "seconds": 1.0,
                        "eval_seconds": 0.1,
                        "diverged": diverged,
                        "collapsed": collapse and not diverged,
                    }
                )
    return pd.DataFrame(rows)


def readme_mismatches(readme_path: Path, media: Path) -> list[str]:
    """Where the README's generated blocks differ from what the CSVs in ``media`` give (a summary
    CSV's path reads as its folder), one line each (empty: they agree)."""
    from mlpmnist.workbench import report

    media = Path(media)
    media = media.parent if media.suffix == ".csv" else media
    text = Path(readme_path).read_text(encoding="utf-8")
    out = []
    for name, content in report.readme_blocks(media).items():
        try:
            start, end = report._block(text, name)
        except ValueError as e:
            out.append(str(e))
            continue
        have = [line.rstrip() for line in text[start:end].strip("\n").splitlines()]
        want = [line.rstrip() for line in content.strip("\n").splitlines()]
        out += [
            f"{name} line {i + 1}: README has {h!r}, the CSVs give {w!r}"
            for i, (h, w) in enumerate(zip(have, want, strict=False))
            if h != w
        ]
        if len(have) != len(want):
            out.append(f"the README's {name} has {len(have)} lines, the CSVs' {len(want)}")
    return out
