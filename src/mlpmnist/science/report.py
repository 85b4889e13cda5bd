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

import numpy as np

from mlpmnist.analysis.stats import TAIL_BELOW

#: Below this p-value a difference is called one.
ALPHA = 0.05


def _n(v: Any, fmt: str = ".3g") -> str:
    """A number in ``fmt`` ("int": thousands separated, no decimals); "n/a" for None or NaN."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:,.0f}" if fmt == "int" else format(v, fmt)


def _pct(v: Any, fmt: str = ".2f") -> str:
    return "n/a" if v is None else f"{100 * v:{fmt}}"


def _ci(h: dict, fmt: str = ".3g") -> str:
    """'estimate [low, high] (second set v)' of one headline row."""
    f = [_n(h[k], fmt) for k in ("estimate", "low", "high", "second")]
    return f"{f[0]} [{f[1]}, {f[2]}] (second set {f[3]})"


def _excludes(h: dict, value: float) -> bool:
    """Whether the interval ``low``-``high`` of ``h`` lies wholly on one side of ``value``."""
    lo, hi = h.get("low"), h.get("high")
    return lo is not None and hi is not None and (lo > value or hi < value)


def _rho(corr: dict) -> str:
    return f"Spearman's rho {_n(corr['rho'], '.2f')} [{_n(corr['low'], '.2f')}, {_n(corr['high'], '.2f')}]"


def _quartiles(values: Sequence[Any]) -> str:
    """'median (quartiles q1–q3, n of m)' of the finite ``values``."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return "n/a"
    q1, q2, q3 = np.quantile(v, [0.25, 0.5, 0.75])
    got = f"{len(v)} of {len(values)} seeds got there"
    return f"{_n(q2, 'int')} (quartiles {_n(q1, 'int')}–{_n(q3, 'int')}; {got})"


def _peak(best: Sequence[dict]) -> str:
    """Where the tuned lr is highest, and whether it falls past there: said from the numbers."""
    lrs = [r["lr"] for r in best]
    top = int(np.argmax(lrs))
    if top == len(lrs) - 1:
        return "The first set's tuned lr is highest at the largest batch size."
    if all(x < lrs[top] for x in lrs[top + 1 :]):
        shape = "lower at every larger batch size: a rise and a fall"
    else:
        shape = "no higher at larger ones: a rise that levels off"
    return (
        f"The first set's tuned lr is highest at B = {best[top]['batch_size']} and {shape}, which no single "
        "power law describes."
    )


def tuning_text(rec: dict) -> list[str]:
    t = rec["tuning"]
    best1, best2 = t["best"]
    h = {r["name"]: r for r in t["headlines"]}
    ratio = h["rms_ratio"]
    better = "saturating form" if (ratio["estimate"] or 0) > 1 else "power law"
    return [
        f"**The tuned learning rate per batch size** (plain SGD, {rec['tune_epochs']} epochs, the highest "
        "mean "
        f"final validation accuracy over each set's {len(rec['sets'][0])} seeds; each grid √2-spaced, grown "
        "until its best lr had a tried neighbour on both sides):",
        "",
        "| B | " + " | ".join(str(r["batch_size"]) for r in best1) + " |",
        "|---|" + "---|" * len(best1),
        "| tuned lr, first set | " + " | ".join(_n(r["lr"]) for r in best1) + " |",
        "| second set | " + " | ".join(_n(r["lr"]) for r in best2) + " |",
        "",
        f"A power law fitted to the first set's tuned lrs has slope {_ci(h['slope'], '.2f')} and an rms "
        "residual "
        f"of {_ci(h['rms_power'], '.2f')} in log lr; the saturating form lr_max / (1 + B_noise / B) "
        f"(McCandlish et al. 2018) gives B_noise = {_ci(h['b_noise'], 'int')} examples at rms "
        f"{_ci(h['rms_saturating'], '.2f')}. The {better} fits better (rms ratio, power law over saturating, "
        f"{_ci(ratio, '.2f')})"
        + ("" if _excludes(ratio, 1.0) else "; its interval includes 1, so these seeds do not settle which")
        + f". {_peak(best1)}",
    ]


def steps_text(rec: dict) -> list[str]:
    s = rec["steps"]
    lines = []
    for t in s["targets"]:
        per = s["per_target"][f"{t:g}"]
        h = {r["name"]: r for r in per["headlines"]}
        sizes = sorted(int(k.removeprefix("steps@")) for k in h if k.startswith("steps@"))
        lines += [
            "",
            f"**Steps to {t:.0%} validation accuracy** at each batch size's fastest lr (the median over the "
            "first set's seeds with its 95% interval, the second set's value):",
            "",
            "| B | " + " | ".join(map(str, sizes)) + " |",
            "|---|" + "---|" * len(sizes),
            *(
                f"| {label} | " + " | ".join(_n(h[f"steps@{b}"][k], "int") for b in sizes) + " |"
                for label, k in (("first set", "estimate"), ("95% low", "low"), ("95% high", "high"))
            ),
            "| second set | " + " | ".join(_n(h[f"steps@{b}"]["second"], "int") for b in sizes) + " |",
        ]
        if per["fit"]:
            sens = per["sensitivity"]
            lines += [
                "",
                "S(B) = S_min (1 + B_crit / B) (Shallue et al. 2018) gives B_crit = "
                f"{_ci(h['b_crit'], 'int')} "
                f"examples and S_min = {_ci(h['s_min'], 'int')} steps. Without the smallest batch size "
                "B_crit "
                f"is {_n(sens['without_smallest'], 'int')}, without the largest "
                f"{_n(sens['without_largest'], 'int')}.",
            ]
    return lines


def ceiling_text(rec: dict) -> list[str]:
    c = rec["ceiling"]
    lines = [
        f"**The ceiling per seed** at batch {c['batch_size']}: every seed of both sets trained on a √2 grid "
        f"of lrs; a seed fails at an lr when it diverges or ends more than {100 * c['drop']:.0f} points "
        "below "
        "the median at the tuned lr (stated before the run), and its collapse lr is the smallest failing lr "
        "above the tuned one.",
        "",
    ]
    for name, what in (
        ("scaled", "With pixels in [-1, 1]"),
        ("control", "With centred pixels (the control)"),
    ):
        v = c[name]
        per = v["per_seed"]
        collapse = sorted({r["collapse_lr"] for r in per if r["collapse_lr"] is not None})
        ratio = [r["collapse_lr"] * r["lambda_max"] / 2 for r in per if r["collapse_lr"] is not None]
        corr = v["correlation"]
        if len(collapse) == 1:
            verdict = (
                f"every seed collapses at the same lr, {_n(collapse[0])}, so the grid cannot rank them and "
                "no correlation with λ_max can be measured"
            )
        elif _excludes(corr, 0.0):
            sign = "smaller" if corr["rho"] < 0 else "larger"
            verdict = f"{_rho(corr)}: seeds that start sharper collapse at {sign} lrs"
        else:
            verdict = (
                f"{_rho(corr)}: the interval includes 0, so no link between a seed's curvature and its "
                f"ceiling is detectable with {corr['n']} seeds"
            )
        lines.append(
            f"- {what}: tuned lr {_n(v['tuned_lr'])}; collapse lrs {', '.join(_n(x) for x in collapse)} "
            f"(median {_n(v['collapse_median'])}); λ_max at initialisation median {_n(v['lambda_median'])} "
            f"(range {_n(v['lambda_range'][0])}–{_n(v['lambda_range'][1])}); a seed's collapse lr is "
            f"{_n(float(np.median(ratio)), '.2g')} times its 2 / λ_max (median over seeds); {verdict}."
        )
    regimes = c.get("regimes") or []
    if regimes:
        parts = [
            f"{_n(r['lr'])}: {_n(r['start'], '.1f')} at the start, {_n(r['late'], '.1f')} late "
            f"({r['regime']})"
            for r in regimes
        ]
        same = {r["regime"] for r in regimes}
        lines += [
            "",
            "λ_max during the first epoch, as lr·λ_max (above 2 full-batch gradient descent is unstable), "
            "the median over seeds and over the second half of the epoch: "
            + "; ".join(parts)
            + ". "
            + (f"At every lr it is the {same.pop()}" if len(same) == 1 else "The regime depends on the lr")
            + ": the sharpness adapts to the step, so λ_max at initialisation alone does not set the "
            "ceiling.",
        ]
    return lines


def noise_text(rec: dict) -> list[str]:
    n = rec["noise"]
    per_epoch = n["per_epoch"]
    first = [r["1"] for r in per_epoch]
    falls = [
        (per_epoch[i]["epoch"], first[i], per_epoch[i + 1]["epoch"], first[i + 1])
        for i in range(len(first) - 1)
        if first[i + 1] < first[i]
    ]
    drops = [f"{_n(a, 'int')} at epoch {e} to {_n(b, 'int')} at epoch {f}" for e, a, f, b in falls]
    trend = "not monotonically: " + ", ".join(drops) if drops else "rising at every measured epoch"
    at = rec["steps"]["targets"][-1]
    by_set = [[r["b_simple_at_target"] for r in n["at_target"] if r["set"] == s] for s in (1, 2)]
    crit = n.get("b_crit")
    ratio = np.nanmedian(np.array(by_set[0], dtype=float)) / crit if crit else None
    return [
        f"**The gradient noise scale** B_simple (McCandlish et al. 2018) at batch {n['batch_size']}, each "
        "set "
        f"at its tuned lr: the first set's median over seeds is {_n(first[0], 'int')} examples at "
        f"initialisation and {_n(first[-1], 'int')} at epoch {per_epoch[-1]['epoch']}, {trend}. At the "
        f"snapshot where each seed first reaches {at:.0%} it is {_quartiles(by_set[0])}; in the second set "
        f"{_quartiles(by_set[1])}. B_crit from steps to {at:.0%} is {_n(crit, 'int')}"
        + (
            f", so B_simple is about {_n(ratio, '.2g')} times B_crit here. McCandlish et al. predict "
            "B_crit ≈ B_noise, which equals B_simple only when the Hessian is a multiple of the identity."
            if ratio
            else "."
        ),
    ]


def recipes_text(rec: dict) -> list[str]:
    lines = []
    for i in (1, 2):
        r = rec["recipes"][f"set{i}"]
        d = r["difference"]
        said = (
            f"{_pct(d['difference'], '+.2f')} points [{_pct(d['low'], '+.2f')}, {_pct(d['high'], '+.2f')}], "
            f"Mann-Whitney p = {_n(d['p'], '.2g')}"
        )
        lines.append(
            f"- Set {i} chose **{r['chosen']}** on its validation split: test accuracy median "
            f"{_pct(float(np.median(r['test_acc'])))}%, against "
            f"{_pct(float(np.median(r['reference_test_acc'])))}% "
            f"for the reference recipe on the same seeds ({said})."
        )
    return [
        "**A tuned recipe** for the same network, each set choosing among the candidates alone:",
        "",
        *lines,
    ]


ARMS = {"relu": "ReLU (the study)", "leaky": "leaky ReLU", "tuned": "ReLU at the tuned lr"}


def _moved(a: dict) -> bool:
    """Whether an arm's tail share differs from the study's by its test (Fisher, and the interval)."""
    return (
        a["tail_diff_p"] is not None
        and a["tail_diff_p"] < ALPHA
        and _excludes({"low": a["tail_diff_low"], "high": a["tail_diff_high"]}, 0.0)
    )


def tail_text(rec: dict) -> list[str]:
    t = rec["tail"]
    arms = {a["arm"]: a for a in t["arms"]}
    base, b, below = arms["relu"], t["batch_size"], f"{100 * TAIL_BELOW:.0f}"
    lr = _n(base["lr"])
    lines = [
        f"**Why batch {b} fails**: the study's setting (batch {b}, {t['epochs']} epochs, no validation "
        f"split), {base['n']} seeds per arm; the tail is the share of seeds ending below {below}% test "
        "accuracy, and a unit is dead when its pre-activation is at most zero on every test image (under "
        "leaky ReLU such a unit still passes a small gradient).",
        "",
        f"| arm | lr | seeds below {below}% (Wilson 95% CI) | median test accuracy (95% CI) | dead units, "
        "layer 1 / 2 |",
        "|---|---|---|---|---|",
    ]
    for key, a in arms.items():
        lines.append(
            f"| {ARMS[key]} | {_n(a['lr'])} | {a['n_tail']} of {a['n']} ({_pct(a['tail_lo'], '.0f')}–"
            f"{_pct(a['tail_hi'], '.0f')}%) | {_pct(a['median'])}% "
            f"({_pct(a['median_lo'])}–{_pct(a['median_hi'])}) "
            f"| {_pct(a['dead_1'], '.0f')}% / {_pct(a['dead_2'], '.0f')}% |"
        )
    lines.append("")
    for key in ("leaky", "tuned"):
        a = arms[key]
        share = (
            f"{_pct(a['tail_diff_difference'], '+.0f')} points [{_pct(a['tail_diff_low'], '+.0f')}, "
            f"{_pct(a['tail_diff_high'], '+.0f')}], Fisher p = {_n(a['tail_diff_p'], '.2g')}"
        )
        median = (
            f"{_pct(a['median_diff_difference'], '+.2f')} points [{_pct(a['median_diff_low'], '+.2f')}, "
            f"{_pct(a['median_diff_high'], '+.2f')}]"
        )
        verdict = "moves the tail" if _moved(a) else "does not move the tail detectably"
        lines.append(f"- {ARMS[key]} {verdict}: its share {share}; the median {median}.")
    leaky, tuned = _moved(arms["leaky"]), _moved(arms["tuned"])
    meaning = {
        (True, True): f"Both interventions remove the tail: units die because lr {lr} is too large a step "
        f"for batch {b}, so the study's batch-{b} result measures a learning rate set for larger batches, "
        "not a limit of small batches.",
        (
            False,
            True,
        ): f"The step, not the dying alone: a step tuned for batch {b} removes the tail and units "
        f"that cannot die do not, so the study's batch-{b} result measures a learning rate set for larger "
        "batches.",
        (True, False): f"Dead units carry the tail: units that cannot die remove it and a smaller step does "
        f"not, so batch {b} at lr {lr} fails through its ReLUs.",
        (False, False): f"Neither intervention moves the tail detectably with {base['n']} seeds.",
    }[(leaky, tuned)]
    return [*lines, "", meaning]


def section(rec: dict) -> str:
    """The README's science section (markdown) from a science summary record."""
    a, b = rec["sets"]
    heads = [r for t in rec["steps"]["per_target"].values() for r in t["headlines"]] + rec["tuning"][
        "headlines"
    ]
    known = [r for r in heads if r.get("inside") is not None]
    k = sum(bool(r["inside"]) for r in known)
    rate = rec["inside_rate"]
    parts = [
        f"Two disjoint seed sets, {a[0]}-{a[-1]} and {b[0]}-{b[-1]}, each making every choice from its own "
        "seeds. Each number is the first set's with its 95% bootstrap interval over seeds (every choice "
        "remade "
        f"on each resample), then the second set's. {k} of {len(known)} second-set values fall inside the "
        "first "
        "set's intervals; at this seed count a calibrated interval contains an independent rerun's value "
        "only "
        f"about {_n(100 * rate if rate is not None else None, '.0f')}% of the time (simulated), not 95%.",
        "",
        *tuning_text(rec),
        *steps_text(rec),
        "",
        *ceiling_text(rec),
        "",
        *noise_text(rec),
        "",
        *recipes_text(rec),
        "",
        *tail_text(rec),
    ]
    return "\n".join(parts) + "\n"
