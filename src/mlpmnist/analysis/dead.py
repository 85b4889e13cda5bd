"""What a ``stats.dead_units`` frame says in plain language (``dead_units_findings``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlpmnist.analysis import words
from mlpmnist.analysis.columns import config_label
from mlpmnist.analysis.compare import LEVEL, holm
from mlpmnist.analysis.stats import MIN_SEEDS, dead_layers, summary_by

HEAVY_DEAD = 0.10  # a layer "loses much" when more than this share of its units is dead
NORM_RATIO = 1.1  # weight norms closer than this are "about the same"


def _pct(v: float) -> str:
    """A fraction as percent with at most 1 decimal: '59.4', '3'."""
    return f"{round(100 * v, 1):g}"


def _when(r: pd.Series, layer: str) -> str:
    """'59% after epoch 1 (64% after epoch 15)', or one number when the first epoch is the last."""
    final = f"{_pct(r[f'{layer}_final'])}% after epoch {int(r['final_epoch'])}"
    if r["first_epoch"] == r["final_epoch"]:
        return final
    return f"{_pct(r[f'{layer}_first'])}% after epoch {int(r['first_epoch'])} ({final})"


def _dead_lines(t: pd.DataFrame) -> list[str]:
    """Findings for one set of batch sizes (``t`` sorted by batch size)."""
    layers, small, large = dead_layers(t), t.iloc[0], t.iloc[-1]
    if len(t) == 1:
        at = f"batch {int(small.batch_size)}"
        lines = [f"Dead units in hidden layer {c[5:]} at {at}: {_when(small, c)}." for c in layers]
        if np.isfinite(small["wnorm_1_final"]):
            lines.append(f"The first layer's weights end with norm {small['wnorm_1_final']:.1f}.")
    else:
        first = layers[0]
        lines = [
            f"Dead units in hidden layer {first[5:]}: {_when(small, first)} at batch "
            f"{int(small.batch_size)}, against {_when(large, first)} at batch {int(large.batch_size)}."
        ]
        if len(t) > 2 and (t["first_epoch"] != t["final_epoch"]).any():
            pairs = zip(t["batch_size"], t[f"{first}_first"], strict=True)
            each = ", ".join(f"{_pct(v)}% at batch {int(b)}" for b, v in pairs)
            after = f"After epoch {int(small['first_epoch'])} the share of hidden layer {first[5:]}'s units"
            lines.append(f"{after} that are dead is {each}.")
        for layer in layers:
            heavy, name = t[t[f"{layer}_final"] > HEAVY_DEAD], f"hidden layer {layer[5:]}"
            if heavy.empty:
                lines.append(f"No batch size leaves {name} with over 10% of its units dead.")
            elif len(heavy) == len(t):
                lines.append(f"Every batch size leaves {name} with over 10% of its units dead.")
            else:
                where = words.names(heavy, ["batch_size"])
                lines.append(f"{name.capitalize()} ends with over 10% of its units dead at {where} only.")
        lines += _norm_line(small, large)
    return lines + [_corr_line(t)]


def _norm_line(small: pd.Series, large: pd.Series) -> list[str]:
    """How the first layer's final weight norm compares between the smallest and largest batch."""
    s, g = small["wnorm_1_final"], large["wnorm_1_final"]
    if not (np.isfinite(s) and np.isfinite(g) and s > 0 and g > 0):
        return []
    at = f"{s:.1f} at batch {int(small.batch_size)}, {g:.1f} at batch {int(large.batch_size)}"
    times = max(s, g) / min(s, g)
    if times < NORM_RATIO:
        return [
            f"The first layer's weights end with about the same norm at the smallest and largest batch: {at}."
        ]
    size = "larger" if s > g else "smaller"
    return [f"The first layer's weights end {times:.1f} times {size} at the smallest batch: norm {at}."]


def _corr_line(t: pd.DataFrame) -> str:
    """Whether more dead units in the last hidden layer go with lower final accuracy across seeds, by
    Spearman's rank correlation's test, Holm-adjusted over the batch sizes."""
    by = ["batch_size"]
    p = t["rank_corr_p"].astype(float) if "rank_corr_p" in t.columns else pd.Series(np.nan, index=t.index)
    tested = t[np.isfinite(p)]
    if tested.empty:
        return (
            "Whether more dead units go with lower accuracy across seeds is not tested here: the rank "
            f"correlation's test needs at least {MIN_SEEDS} seeds per configuration, with varying values."
        )
    adjusted = pd.Series(holm(p[tested.index].tolist()), index=tested.index)
    linked = tested[(adjusted < LEVEL) & (tested["rank_corr"] < 0)]
    untested = t.drop(tested.index)
    rest = ""
    if len(untested):
        rest = (
            f"; it is not tested at {words.names(untested, by)} (too few seeds, or values that do not vary)"
        )
    family = f", Holm-adjusted over {words.count(len(tested), 'batch size')}" if len(tested) > 1 else ""
    if linked.empty:
        where = "any batch size" if len(tested) == len(t) and len(t) > 1 else words.names(tested, by)
        return (
            "Across seeds, no link between the last hidden layer's dead units and the final accuracy is "
            f"shown at {where} (Spearman's rank correlation{family}: p >= {LEVEL:g}){rest}."
        )
    parts = [
        f"batch {int(r['batch_size'])} (Spearman's rho {r['rank_corr']:+.2f}, "
        f"{'adjusted ' if len(tested) > 1 else ''}p {words.p_text(adjusted[i])})"
        for i, r in linked.iterrows()
    ]
    elsewhere = "; elsewhere no link is shown" if len(linked) < len(tested) else ""
    return (
        "Across seeds, more dead units in the last hidden layer go with lower final accuracy at "
        f"{'; '.join(parts)}{elsewhere}{rest}."
    )


def dead_units_findings(dead: pd.DataFrame) -> list[str]:
    """Lines from a ``stats.dead_units`` frame: the dead units' shares, first and last, by batch size;
    the first layer's weight norms; whether more dead units go with lower accuracy across seeds. With
    another varying axis (say lr), one set of lines per value, led by it."""
    if dead.empty or "batch_size" not in dead.columns:
        return ["No dead-unit measurements by batch size."]
    dead = dead[dead["n"] > 0]  # a configuration whose every seed diverged has no final numbers
    if dead.empty:
        return ["Every seed diverged: there are no dead-unit numbers at the end of training."]
    others = [c for c in summary_by(dead) if c != "batch_size"]
    if not others:
        return _dead_lines(dead.sort_values("batch_size"))
    lines = []
    for _, t in dead.groupby(others, dropna=False, sort=True):
        label = config_label(t.iloc[0], others)
        lines += [
            f"At {label}, {line[0].lower()}{line[1:]}" for line in _dead_lines(t.sort_values("batch_size"))
        ]
    return lines
