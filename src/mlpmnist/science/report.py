"""The README's science section, generated from the science summary (``science_summary.json``):
every number in it comes from the record, and every claim is worded by what the numbers show
(an interval that excludes zero, a test's p-value, which fit has the smaller residual), so a rerun
that moves a number within its interval cannot leave a sentence false.

``make publish-science`` writes it between the README's ``science`` markers
(``workbench.report.readme_blocks``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: Below this p-value a difference is called one (after Holm's correction where several are made).
ALPHA = 0.05


def _n(v: Any, fmt: str = ".3g") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _int(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:,.0f}"


def _heads(rows: Sequence[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in rows}


def _ci(h: dict, fmt: str = ".3g", scale: float = 1.0) -> str:
    """'estimate [low, high] (second set: v)' of one headline row."""

    def f(v: Any) -> str:
        return "n/a" if v is None else (_int(v * scale) if fmt == "int" else _n(v * scale, fmt))

    return f"{f(h['estimate'])} [{f(h['low'])}, {f(h['high'])}] (second set {f(h['second'])})"


def _inside(rows: Sequence[dict]) -> tuple[int, int]:
    known = [r for r in rows if r.get("inside") is not None]
    return sum(bool(r["inside"]) for r in known), len(known)


def tuning_text(rec: dict) -> list[str]:
    t = rec["tuning"]
    best1, best2 = t["best"]
    heads = _heads(t["headlines"])
    f = heads
    lines = [
        "**The tuned learning rate per batch size** (plain SGD, "
        f"{rec['tune_epochs']} epochs, mean final validation accuracy over each set's "
        f"{len(rec['sets'][0])} seeds; each grid grown until its best lr had a tried neighbour on both sides):",
        "",
        "| B | " + " | ".join(str(r["batch_size"]) for r in best1) + " |",
        "|---|" + "---|" * len(best1),
        "| tuned lr, first set | " + " | ".join(_n(r["lr"], ".3g") for r in best1) + " |",
        "| second set | " + " | ".join(_n(r["lr"], ".3g") for r in best2) + " |",
        "",
    ]
    ratio = f["rms_ratio"]
    better = "saturating form" if (ratio["estimate"] or 0) > 1 else "power law"
    sure = ratio["low"] is not None and (ratio["low"] > 1 or (ratio["high"] or 0) < 1)
    lines.append(
        f"Fitted to the first set's tuned lrs, a power law gives slope {_ci(f['slope'], '.2f')}, with an rms "
        f"residual of {_ci(f['rms_power'], '.2f')} in log lr; the saturating form lr_max / (1 + B_noise / B) "
        f"(McCandlish et al. 2018) gives B_noise = {_ci(f['b_noise'], 'int')} examples, rms "
        f"{_ci(f['rms_saturating'], '.2f')}. The {better} fits better (rms ratio power/saturating "
        f"{_ci(ratio, '.2f')})"
        + ("" if sure else ", but the interval of the ratio includes 1: these seeds do not settle which")
        + "."
    )
    return lines


def steps_text(rec: dict) -> list[str]:
    s = rec["steps"]
    lines = []
    for t in s["targets"]:
        per = s["per_target"][f"{t:g}"]
        h = _heads(per["headlines"])
        sizes = sorted(int(k.removeprefix("steps@")) for k in h if k.startswith("steps@"))
        lines += [
            "",
            f"**Steps to {t:.0%} validation accuracy** at each batch size's fastest lr (median over the first "
            "set's seeds, 95% interval, second set's value):",
            "",
            "| B | " + " | ".join(map(str, sizes)) + " |",
            "|---|" + "---|" * len(sizes),
            "| steps | " + " | ".join(_ci(h[f"steps@{b}"], "int") for b in sizes) + " |",
        ]
        sens = per["sensitivity"]
        if per["fit"]:
            lines += [
                "",
                f"S(B) = S_min (1 + B_crit / B) gives B_crit = {_ci(h['b_crit'], 'int')} examples and S_min = "
                f"{_ci(h['s_min'], 'int')} steps; without the smallest batch size B_crit is "
                f"{_int(sens['without_smallest'])}, without the largest {_int(sens['without_largest'])}.",
            ]
    return lines


def ceiling_text(rec: dict) -> list[str]:
    c = rec["ceiling"]
    lines = []
    for name, what in (("scaled", "scaled pixels"), ("control", "centred pixels (the control)")):
        v = c[name]
        corr = v["correlation"]
        linked = corr["high"] is not None and (corr["high"] < 0 or corr["low"] > 0)
        verdict = (
            f"seeds that start sharper collapse at {'smaller' if corr['rho'] < 0 else 'larger'} learning rates"
            if linked
            else "the interval includes 0: no link between a seed's curvature and its ceiling is detectable at this count"
        )
        lines.append(
            f"With {what}, at batch {c['batch_size']}: tuned lr {_n(v['tuned_lr'])}, a seed fails below "
            f"{100 * v['threshold']:.1f}% validation accuracy; the seeds' collapse lrs have median "
            f"{_n(v['collapse_median'])}, λ_max at initialisation has median {_n(v['lambda_median'], '.3g')} "
            f"(range {_n(v['lambda_range'][0])}–{_n(v['lambda_range'][1])}), and Spearman's rho between the two "
            f"is {_n(corr['rho'], '.2f')} [{_n(corr['low'], '.2f')}, {_n(corr['high'], '.2f')}] over {corr['n']} "
            f"seeds: {verdict}."
        )
    return lines


def tail_text(rec: dict) -> list[str]:
    arms = {a["arm"]: a for a in rec["tail"]["arms"]}
    names = {
        "relu": "ReLU, lr 0.1 (the study)",
        "leaky": "leaky ReLU, lr 0.1",
        "tuned": "ReLU at the tuned lr",
    }
    lines = [
        "| arm | lr | seeds below 85% (Wilson 95% CI) | median (95% CI) | dead units, layer 1 / 2 |",
        "|---|---|---|---|---|",
    ]
    for key, a in arms.items():
        lines.append(
            f"| {names[key]} | {_n(a['lr'])} | {a['n_tail']} of {a['n']} ({100 * a['tail_lo']:.0f}–{100 * a['tail_hi']:.0f}%) "
            f"| {100 * a['median']:.2f}% ({100 * a['median_lo']:.2f}–{100 * a['median_hi']:.2f}) "
            f"| {100 * a['dead_1']:.0f}% / {100 * a['dead_2']:.0f}% |"
        )
    for key in ("leaky", "tuned"):
        a = arms.get(key)
        if a is None:
            continue
        p = a["tail_diff_p"]
        shift = "smaller" if a["tail_diff_difference"] < 0 else "larger"
        said = (
            f"the tail is {shift} (difference {100 * a['tail_diff_difference']:+.0f} points, "
            f"95% CI {100 * a['tail_diff_low']:+.0f} to {100 * a['tail_diff_high']:+.0f}; Fisher p = {_n(p, '.2g')})"
            if p is not None and p < ALPHA
            else f"the tail's share does not differ detectably (Fisher p = {_n(p, '.2g')})"
        )
        lines.append(f"- {names[key]}: {said}; median {100 * a['median_diff_difference']:+.2f} points "
                     f"(95% CI {100 * a['median_diff_low']:+.2f} to {100 * a['median_diff_high']:+.2f}).")  # fmt: skip
    return lines


def section(rec: dict) -> str:
    """The README's science section (markdown) from a science summary record."""
    a, b = rec["sets"]
    inside = [r for t in rec["steps"]["per_target"].values() for r in t["headlines"]] + rec["tuning"][
        "headlines"
    ]
    k, n = _inside(inside)
    parts = [
        f"Seed sets {a[0]}-{a[-1]} and {b[0]}-{b[-1]}, each making every choice from its own seeds. Each number is the "
        "first set's, with its 95% bootstrap interval over seeds (every choice remade on each resample), then the "
        f"second set's. {k} of {n} second-set values fall inside the first set's intervals; a calibrated interval "
        f"contains an independent rerun's value only about {100 * (rec['inside_rate'] or math.nan):.0f}% of the time "
        "at this seed count (simulated), not 95%.",
        "",
        *tuning_text(rec),
        *steps_text(rec),
        "",
        *ceiling_text(rec),
        "",
        *tail_text(rec),
    ]
    return "\n".join(parts) + "\n"
