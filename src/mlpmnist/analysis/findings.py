"""Findings in plain language, computed from the number frames of ``stats`` (never from a
display table): what the summary says about the configurations (``conclusions``) and what the
dead units say (``dead_units_findings``). One sentence per line, grammatical for any counts:
one configuration, one seed, one epoch, all medians equal, nothing failed, everything failed.
A configuration is only compared with another one, and a difference is only called one when
the 95% CIs do not overlap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlpmnist.analysis.columns import config_label
from mlpmnist.analysis.stats import MIN_CORR_SEEDS, TAIL_BELOW, dead_by, dead_layers, overlap, summary_by
from mlpmnist.analysis.tables import percent

HEAVY_DEAD = 0.10  # a layer "loses much" when more than this share of its units is dead
STRONG_CORR = -0.5  # a rank correlation at or below this is called a link
NORM_RATIO = 1.1  # weight norms closer than this are "about the same"


def _count(n: int, word: str) -> str:
    """'1 seed', '3 seeds'."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def _names(rows: pd.DataFrame, by: list[str]) -> str:
    """'batch 8, 16' when only the batch size varies, else 'batch 8, lr 0.1; batch 16, lr 0.1'."""
    if by == ["batch_size"]:
        return "batch " + ", ".join(str(int(b)) for b in rows["batch_size"])
    return "; ".join(config_label(r, by) for _, r in rows.iterrows())


def _others(n: int) -> str:
    """'; none in the other configuration(s)', '' when there are none."""
    if not n:
        return ""
    return "; none in the other configuration" if n == 1 else f"; none in the other {n} configurations"


def _finished(r: pd.Series) -> int:
    return int(r["n"] - r["n_diverged"])


def _median_text(r: pd.Series, by: list[str]) -> str:
    """'batch 8, median 90.48% (95% CI 83.91–91.42; 20 seeds)', or 'batch 8, 90.00% (1 seed: no
    interval)'."""
    if _finished(r) == 1:
        return f"{config_label(r, by)}, {percent(r['median'])}% (1 seed: no interval)"
    ci = f"95% CI {percent(r['median_lo'])}–{percent(r['median_hi'])}" if _has_ci(r) else "no interval"
    return f"{config_label(r, by)}, median {percent(r['median'])}% ({ci}; {_count(_finished(r), 'seed')})"


def _has_ci(r: pd.Series) -> bool:
    return bool(np.isfinite(r["median_lo"]) and np.isfinite(r["median_hi"]))


def _ci_overlap(a: pd.Series, b: pd.Series) -> bool:
    return overlap(a["median_lo"], a["median_hi"], b["median_lo"], b["median_hi"])


def _pair(best: pd.Series, worst: pd.Series, by: list[str]) -> str:
    """Whether the best and the worst configuration can be told apart."""
    b, w = config_label(best, by), config_label(worst, by)
    if not (_has_ci(best) and _has_ci(worst)):
        return f"One seed gives no 95% CI, so these seeds cannot separate {b} from {w}."
    if _ci_overlap(best, worst):
        return f"Their 95% CIs overlap: these seeds cannot separate {b} from {w}."
    gap = 100 * (best["median"] - worst["median"])
    return f"The medians of {b} and {w} differ: {gap:.2f} points apart, and their 95% CIs do not overlap."


def _ranking(s: pd.DataFrame, by: list[str]) -> list[str]:
    """Best, worst, whether they differ, and where the others stand; ``s`` sorted by median, >1 row."""
    best, worst = s.iloc[0], s.iloc[-1]
    what = "median final test accuracy" if (s["n"] - s["n_diverged"]).max() > 1 else "final test accuracy"
    if best["median"] == worst["median"]:
        same = percent(best["median"])
        every = "Both configurations end" if len(s) == 2 else f"All {len(s)} configurations end"
        return [f"{every} at the same {what}, {same}%."]
    lines = [
        f"Highest {what}: {_median_text(best, by)}.",
        f"Lowest: {_median_text(worst, by)}.",
        _pair(best, worst, by),
    ]
    middle = s.iloc[1:-1]
    tied = middle[[_ci_overlap(best, r) for _, r in middle.iterrows()]]
    apart = middle.drop(tied.index)
    if len(tied):
        why = (
            "their 95% CIs overlap its CI"
            if all(_has_ci(r) for _, r in tied.iterrows()) and _has_ci(best)
            else ("95% CIs overlap, or one seed gives none")
        )
        lines.append(f"Of the others, these seeds cannot separate {_names(tied, by)} from the best ({why}).")
    if len(apart):
        lines.append(
            f"Of the others, below the best with CIs that do not overlap its CI: {_names(apart, by)}."
        )
    return lines


def _failed_line(summ: pd.DataFrame, by: list[str]) -> str:
    """Which seeds failed (diverged or collapsed to chance), per configuration."""
    total, n_failed = int(summ["n"].sum()), int(summ["n_failed"].sum())
    if not n_failed:
        if total == 1:
            return "The one seed did not fail: it neither diverged nor collapsed to chance."
        return f"No seed failed: none of the {total} seeds diverged or collapsed to chance."
    parts = []
    for _, r in summ[summ["n_failed"] > 0].iterrows():
        kinds = [(int(r[f"n_{k}"]), k) for k in ("collapsed", "diverged") if r[f"n_{k}"]]
        if r["n"] == 1:
            parts.append(f"{config_label(r, by)}: its one seed {kinds[0][1]}")
            continue
        share = f"{int(r['n_failed'])} of {int(r['n'])}"
        if r["n_failed"] == r["n"]:
            share = "both" if r["n"] == 2 else f"all {int(r['n'])}"
        parts.append(f"{config_label(r, by)}: {share} ({', '.join(f'{k} {word}' for k, word in kinds)})")
    head = (
        ("Every seed failed" if total > 1 else "The one seed failed") if n_failed == total else "Failed seeds"
    )
    others = len(summ) - int((summ["n_failed"] > 0).sum())
    return f"{head} (diverged or collapsed to chance): {'; '.join(parts)}{_others(others)}."


def _outlier_line(summ: pd.DataFrame, by: list[str]) -> list[str]:
    """Which seeds are outliers (finished far below their configuration's median); nothing
    when no seed finished."""
    flagged = summ[summ["n_outlier"] > 0]
    if len(flagged):
        parts = [
            f"{config_label(r, by)}: {int(r['n_outlier'])} of {int(r['n'])}" for _, r in flagged.iterrows()
        ]
        return [
            "Outliers (finished, but far below their configuration's median; not counted as failed): "
            f"{'; '.join(parts)}{_others(len(summ) - len(flagged))}."
        ]
    finished = summ["n"] - summ["n_diverged"]
    most = int(finished.max())
    if not most:
        return []
    if most < 3:  # ``stats.is_outlier`` cannot flag a seed among two
        seeds = ("" if finished.min() == most else "at most ") + _count(most, "finished seed")
        return [f"No outliers: with {seeds} per configuration the outlier rule flags none."]
    return ["No outliers: no seed finished far below its configuration's median."]


def _reference_lines(s: pd.DataFrame, by: list[str]) -> list[str]:
    """Where the reference study's single seeds and headline fall among ours."""
    if "reference" not in s.columns:
        return []
    out = []
    r = s[s["reference"].notna()].sort_values(by)
    many = r[r["n"] - r["n_diverged"] > 1]
    for rows, where in (
        (many[(many["reference"] >= many["q1"]) & (many["reference"] <= many["q3"])], "inside our quartiles"),
        (many[many["reference"] > many["q3"]], "above our quartiles"),
        (many[many["reference"] < many["q1"]], "below our quartiles"),
        (r[(r["n"] - r["n_diverged"] == 1) & (r["reference"] >= r["median"])], "at or above our one seed"),
        (r[(r["n"] - r["n_diverged"] == 1) & (r["reference"] < r["median"])], "below our one seed"),
    ):
        if len(rows):
            out.append(f"The reference study's single seed lies {where} at {_names(rows, by)}.")
    h = s[s["reference_headline"].notna()] if "reference_headline" in s.columns else s.iloc[:0]
    if len(h):
        headline, top = h["reference_headline"].iloc[0], h.sort_values("median", ascending=False).iloc[0]
        where = "above every median here" if len(h) > 1 else "above our median"
        if headline <= top["median"]:
            where = f"at or below our median at {config_label(top, by)} ({percent(top['median'])}%)"
        out.append(f"The reference study's headline, {percent(headline)}%, lies {where}.")
    return out


def _tail_lines(summ: pd.DataFrame, by: list[str]) -> list[str]:
    """Where a configuration whose median is above ``stats.TAIL_BELOW`` has seeds below it (a
    lower tail): how many, as a share with its 95% interval."""
    if "n_tail" not in summ.columns:
        return []
    out = []
    for _, r in summ[(summ["n_tail"] > 0) & (summ["median"] >= TAIL_BELOW)].iterrows():
        k, n = int(r["n_tail"]), int(r["n"])
        share = f"{100 * k / n:.0f}%, 95% CI {100 * r['tail_lo']:.0f}–{100 * r['tail_hi']:.0f}%"
        out.append(
            f"At {config_label(r, by)}, {k} of {_count(n, 'seed')} ended below {100 * TAIL_BELOW:g}% "
            f"({share}, Wilson)."
        )
    return out


def conclusions(summ: pd.DataFrame) -> list[str]:
    """Plain-language findings from a ``stats.summary`` frame, one sentence each: the final
    test accuracy of the one configuration, or the highest and lowest median and whether their
    95% CIs separate them and where the others stand; which seeds failed (diverged or
    collapsed) and which are outliers, each said apart; where a low tail pulls the mean well
    below the median, and where seeds end below ``stats.TAIL_BELOW`` (with the share's 95%
    interval); where the median peaked before the last epoch; and where the reference
    study's single seeds and headline fall among ours (only where ``summary`` gives them)."""
    by = summary_by(summ)
    s = summ.dropna(subset=["median"]).sort_values("median", ascending=False, kind="stable")
    if s.empty:
        lines = ["No seed finished without diverging: there is no accuracy to summarise."]
    elif len(s) == 1:
        lines = [f"Final test accuracy: {_median_text(s.iloc[0], by)}."]
    else:
        lines = _ranking(s, by)
    lines += [_failed_line(summ, by), *_outlier_line(summ, by)]

    # Said where the gap is wider than half the median's own CI: a description, not a test.
    for _, r in s[s["median"] - s["mean"] > (s["median_hi"] - s["median_lo"]) / 2].iterrows():
        lines.append(
            f"At {config_label(r, by)} the mean ({percent(r['mean'])}%) is "
            f"{100 * (r['median'] - r['mean']):.2f} points below the median: a few low seeds pull it "
            "down, so the median describes a typical seed better."
        )
    lines += _tail_lines(summ, by)
    # Where the peak is above the final median by at least what 2 decimals show.
    early = s[(s["best_epoch"] < s["final_epoch"]) & (s["best_epoch_median"] - s["median"] >= 5e-5)]
    if len(early):
        parts = [
            f"{config_label(r, by)} (epoch {int(r['best_epoch'])}, "
            f"{100 * (r['best_epoch_median'] - r['median']):.2f} points above the final median)"
            for _, r in early.iterrows()
        ]
        lines.append(f"The median test accuracy was highest before the last epoch at {'; '.join(parts)}.")
    return lines + _reference_lines(s, by)


# ------------------------------------------------------------------------------ dead units


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
    by = ["batch_size"]
    if len(t) == 1:
        at = f"batch {int(small.batch_size)}"
        lines = [
            f"Dead units in hidden layer {layer[5:]} at {at}: {_when(small, layer)}." for layer in layers
        ]
        if np.isfinite(small["wnorm_1_final"]):
            lines.append(f"The first layer's weights end with norm {small['wnorm_1_final']:.1f}.")
    else:
        first = layers[0]
        lines = [
            f"Dead units in hidden layer {first[5:]}: {_when(small, first)} at batch "
            f"{int(small.batch_size)}, against {_when(large, first)} at batch {int(large.batch_size)}."
        ]
        for layer in layers:
            heavy, name = t[t[f"{layer}_final"] > HEAVY_DEAD], f"hidden layer {layer[5:]}"
            if heavy.empty:
                lines.append(f"No batch size leaves {name} with over 10% of its units dead.")
            elif len(heavy) == len(t):
                lines.append(f"Every batch size leaves {name} with over 10% of its units dead.")
            else:
                lines.append(
                    f"{name.capitalize()} ends with over 10% of its units dead at {_names(heavy, by)} only."
                )
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
    measured = t[t["rank_corr"].notna()]
    if measured.empty:
        return (
            "Whether more dead units go with lower accuracy across seeds cannot be measured here: "
            f"the rank correlation needs at least {MIN_CORR_SEEDS} seeds per configuration, with varying "
            "values."
        )
    strong, by = measured[measured["rank_corr"] <= STRONG_CORR], ["batch_size"]
    unmeasured = t[t["rank_corr"].isna()]
    rest = f"; it cannot be measured at {_names(unmeasured, by)}" if len(unmeasured) else ""
    if strong.empty:
        where = "every batch size" if len(measured) == len(t) and len(t) > 1 else _names(measured, by)
        return (
            "Across seeds, the last hidden layer's dead units and the final accuracy are only weakly linked "
            f"(Spearman's rank correlation above {STRONG_CORR:g}) at {where}{rest}."
        )
    weak = "; elsewhere the link is weak" if len(strong) < len(measured) else ""
    return (
        "Across seeds, more dead units in the last hidden layer go with lower final accuracy (Spearman's "
        f"rank correlation at most {STRONG_CORR:g}) at {_names(strong, by)}{weak}{rest}."
    )


def dead_units_findings(dead: pd.DataFrame) -> list[str]:
    """Plain-language lines from a ``stats.dead_units`` frame: per hidden layer how many units
    are dead after the first epoch and at the end, at the smallest and the largest batch size;
    where a layer ends with over 10% of its units dead; how the first layer's weight norm
    differs between them; and where more dead units go with lower accuracy across seeds. With
    another varying axis (say lr), one set of lines per value, each starting with it."""
    if dead.empty or "batch_size" not in dead.columns:
        return ["No dead-unit measurements by batch size."]
    dead = dead[dead["n"] > 0]  # a configuration whose every seed diverged has no final numbers
    if dead.empty:
        return ["Every seed diverged: there are no dead-unit numbers at the end of training."]
    others = [c for c in dead_by(dead) if c != "batch_size"]
    if not others:
        return _dead_lines(dead.sort_values("batch_size"))
    lines = []
    for _, t in dead.groupby(others, dropna=False, sort=True):
        label = config_label(t.iloc[0], others)
        lines += [
            f"At {label}, {line[0].lower()}{line[1:]}" for line in _dead_lines(t.sort_values("batch_size"))
        ]
    return lines
