"""Findings in plain language, one sentence a line and grammatical for any counts, from the frames
of ``stats`` and ``compare``: the summary's (``conclusions``), two configurations' (``comparison``)
and the dead units' (``dead_units_findings``).

A difference is only called one by its own test (``compare.claimed``); below ``stats.MIN_SEEDS``
seeds a configuration gets its range and no difference. Every other claim says what the numbers or
intervals show, so a rerun within the intervals cannot make it false by a hair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlpmnist.analysis import words
from mlpmnist.analysis.columns import config_label, dead_columns
from mlpmnist.analysis.compare import LEVEL, claimed, holm
from mlpmnist.analysis.stats import MIN_SEEDS, TAIL_BELOW, summary_by
from mlpmnist.analysis.tables import percent

HEAVY_DEAD = 0.10  # a layer "loses much" when more than this share of its units is dead
NORM_RATIO = 1.1  # weight norms closer than this are "about the same"


def _median_text(r: pd.Series, by: list[str]) -> str:
    """'batch 8, median 90.48% (95% CI 83.91–91.42; 20 seeds)', or with the range below
    ``MIN_SEEDS`` seeds, or 'batch 8, 90.00% (1 seed: no interval)'."""
    n = int(r["n"] - r["n_diverged"])
    if n == 1:
        return f"{config_label(r, by)}, {percent(r['median'])}% (1 seed: no interval)"
    if _has_ci(r):
        ci = f"95% CI {percent(r['median_lo'])}–{percent(r['median_hi'])}; {words.count(n, 'seed')}"
    elif n < MIN_SEEDS and np.isfinite(r.get("min", np.nan)):
        ci = f"range {percent(r['min'])}–{percent(r['max'])} from {n} seeds: too few for an interval"
    else:
        ci = f"no interval; {words.count(n, 'seed')}"
    return f"{config_label(r, by)}, median {percent(r['median'])}% ({ci})"


def _has_ci(r: pd.Series) -> bool:
    return bool(np.isfinite(r["median_lo"]) and np.isfinite(r["median_hi"]))


def comparison(two: pd.DataFrame) -> list[str]:
    """``compare.two``'s row in words: each median, the difference of medians with its interval and
    p (below ``stats.MIN_SEEDS`` seeds a side, alone), the failed seeds' shares with theirs."""
    r = two.iloc[0]
    a, b = r["a"], r["b"]
    lines = [
        f"Median final test accuracy: {a}, {percent(r['median_a'])}% ({words.count(int(r['n_a']), 'seed')}); "
        f"{b}, {percent(r['median_b'])}% ({words.count(int(r['n_b']), 'seed')})."
    ]
    points = f"{100 * r['difference']:+.2f} points"
    if not np.isfinite(r["p"]):
        lines.append(
            f"{b} minus {a}: {points}; with fewer than {MIN_SEEDS} seeds on a side no interval and no "
            "difference are claimed."
        )
    else:
        verdict = "no difference claimed (the interval includes zero)"
        if claimed(r, "p"):
            verdict = "a difference"
        elif r["p"] >= LEVEL:
            verdict = "no difference shown"
        lines.append(
            f"{b} minus {a}: {points} (95% bootstrap CI {100 * r['low']:+.2f} to {100 * r['high']:+.2f}); "
            f"two-sided Mann-Whitney U p {words.p_text(r['p'])}: {verdict} at level {LEVEL:g}."
        )
    share = (
        f"Failed seeds (diverged or collapsed to chance): {a}, {int(r['failed_a'])} of "
        f"{int(r['replicas_a'])}; {b}, {int(r['failed_b'])} of {int(r['replicas_b'])}"
    )
    if np.isfinite(r["failed_p"]) and (r["failed_a"] or r["failed_b"]):
        share += (
            f"; the difference of shares {100 * r['failed_difference']:+.0f} points (95% CI, Newcombe, "
            f"{100 * r['failed_low']:+.0f} to {100 * r['failed_high']:+.0f}), "
            f"Fisher's exact p {words.p_text(r['failed_p'])}"
        )
    return [*lines, share + "."]


def _versus_best(s: pd.DataFrame, by: list[str], pairs: pd.DataFrame) -> list[str]:
    """Which configurations the difference test separates from the best (``s`` sorted by median)."""
    best = config_label(s.iloc[0], by)
    tested = pairs[np.isfinite(pairs["p_holm"].astype(float))]
    if tested.empty:
        return [
            f"With fewer than {MIN_SEEDS} seeds on a side no difference is claimed: these seeds cannot "
            "separate any two configurations."
        ]
    lines = [
        "A difference is claimed only where the two-sided Mann-Whitney U test on the seeds' final "
        f"accuracies rejects, Holm-adjusted over the {words.count(len(tested), 'pair')} of configurations "
        f"(family-wise level {LEVEL:g}), and the 95% bootstrap interval of the difference of medians "
        "excludes zero."
    ]
    apart, tied, split, few = [], [], [], []
    for _, r in s.iloc[1:].iterrows():
        other = config_label(r, by)
        ab, ba = (pairs["a"] == best) & (pairs["b"] == other), (pairs["a"] == other) & (pairs["b"] == best)
        rows = pairs[ab | ba]
        if rows.empty or not np.isfinite(float(rows["p_holm"].iloc[0])):
            few.append(other)
            continue
        q = rows.iloc[0]
        sign = 1 if q["a"] == best else -1  # as other minus best
        lo, hi = sorted((sign * 100 * q["low"], sign * 100 * q["high"]))
        ci, p = f"95% CI {lo:+.2f} to {hi:+.2f}", words.p_text(q["p_holm"])
        if claimed(q):
            apart.append(f"{other} ({sign * 100 * q['difference']:+.2f} points, {ci}; adjusted p {p})")
        elif q["p_holm"] < LEVEL:
            split.append(f"{other} (adjusted p {p}, but the difference's {ci} includes zero)")
        else:
            tied.append((other, float(q["p_holm"])))
    if apart:
        lines.append(f"Below the best ({best}), by the test: {'; '.join(apart)}.")
    if tied:
        names = ", ".join(name for name, _ in tied)
        smallest = min(p for _, p in tied)
        at = " at the smallest" if len(tied) > 1 else ""
        lines.append(
            f"These seeds cannot separate {names} from the best (adjusted p {words.p_text(smallest)}{at})."
        )
    if split:
        lines.append(
            f"No difference from the best is claimed at {'; '.join(split)}: the rank test and the medians "
            "disagree."
        )
    if few:
        where = ", ".join(few)
        lines.append(f"Fewer than {MIN_SEEDS} seeds at {where} or at the best: no difference claimed.")
    return lines


def _ranking(s: pd.DataFrame, by: list[str], pairs: pd.DataFrame) -> list[str]:
    """Best, worst, and which others the test separates from the best (``s``: by median, 2+ rows)."""
    best, worst = s.iloc[0], s.iloc[-1]
    what = "median final test accuracy" if (s["n"] - s["n_diverged"]).max() > 1 else "final test accuracy"
    if best["median"] == worst["median"]:
        same = percent(best["median"])
        every = "Both configurations end" if len(s) == 2 else f"All {len(s)} configurations end"
        return [f"{every} at the same {what}, {same}%."]
    return [
        f"Highest {what}: {_median_text(best, by)}.",
        f"Lowest: {_median_text(worst, by)}.",
        *_versus_best(s, by, pairs),
    ]


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
    return f"{head} (diverged or collapsed to chance): {'; '.join(parts)}{words.others(others)}."


def _outlier_line(summ: pd.DataFrame, by: list[str]) -> list[str]:
    """Which seeds are outliers; nothing when no seed finished."""
    flagged = summ[summ["n_outlier"] > 0]
    if len(flagged):
        parts = [
            f"{config_label(r, by)}: {int(r['n_outlier'])} of {int(r['n'])}" for _, r in flagged.iterrows()
        ]
        return [
            "Outliers (finished, but far below their configuration's median; not counted as failed): "
            f"{'; '.join(parts)}{words.others(len(summ) - len(flagged))}."
        ]
    finished = summ["n"] - summ["n_diverged"]
    most = int(finished.max())
    if not most:
        return []
    if most < 3:  # ``stats.is_outlier`` cannot flag a seed among two
        seeds = ("" if finished.min() == most else "at most ") + words.count(most, "finished seed")
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
            out.append(f"The reference study's single seed lies {where} at {words.names(rows, by)}.")
    h = s[s["reference_headline"].notna()] if "reference_headline" in s.columns else s.iloc[:0]
    if len(h):
        headline, top = h["reference_headline"].iloc[0], h.sort_values("median", ascending=False).iloc[0]
        where = "above every median here" if len(h) > 1 else "above our median"
        if headline <= top["median"]:
            where = f"at or below our median at {config_label(top, by)} ({percent(top['median'])}%)"
        elif headline > h["median_hi"].max():  # NaN (too few seeds) never counts as above
            where += " and above every median's 95% CI" if len(h) > 1 else " and above its 95% CI"
        elif _has_ci(top):
            where += f", within the 95% CI of {config_label(top, by)}'s median"
        out.append(f"The reference study's headline, {percent(headline)}%, lies {where}.")
    return out


def _tail_lines(summ: pd.DataFrame, by: list[str]) -> list[str]:
    """Where a configuration with its median above ``stats.TAIL_BELOW`` has seeds below it, and how many."""
    if "n_tail" not in summ.columns:
        return []
    out = []
    tail = summ[(summ["n_tail"] > 0) & (summ["median"] >= TAIL_BELOW) & (summ["n"] >= MIN_SEEDS)]
    for _, r in tail.iterrows():
        k, n = int(r["n_tail"]), int(r["n"])
        share = f"{100 * k / n:.0f}%, 95% CI {100 * r['tail_lo']:.0f}–{100 * r['tail_hi']:.0f}%"
        span = ""
        if np.isfinite(r.get("min", np.nan)):
            span = f"; its seeds end between {percent(r['min'])}% and {percent(r['max'])}%"
        out.append(
            f"At {config_label(r, by)}, {k} of {words.count(n, 'seed')} ended below {100 * TAIL_BELOW:g}% "
            f"({share}, Wilson){span}."
        )
    return out


def _train_line(s: pd.DataFrame, by: list[str]) -> list[str]:
    """How far the median final training accuracy ends above (or below) the test median."""
    if s.empty or "train_median" not in s.columns or not np.isfinite(s["train_median"].astype(float)).all():
        return []
    gap = 100 * (s["train_median"] - s["median"])
    where = "every configuration" if len(s) > 1 else config_label(s.iloc[0], by)
    train = "Training accuracy (the mean over the last evaluation's steps)"
    if (gap > 0).all():
        lo, hi = f"{gap.min():.2f}", f"{gap.max():.2f}"
        span = f"{lo} points" if lo == hi else f"{lo} to {hi} points"
        return [f"{train} ends above test accuracy at {where}, by {span} in median."]
    return [
        f"{train} does not end above test accuracy everywhere: the gap runs from {gap.min():.2f} to "
        f"{gap.max():.2f} points in median."
    ]


def conclusions(summ: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    """Findings from a ``stats.summary`` frame and the ``compare.pairwise`` frame of the same results:
    the accuracies and which configurations the test separates from the best; failed seeds, outliers;
    a mean pulled down, a lower tail; the train-test gap; an early peak; the reference study's values."""
    by = summary_by(summ)
    s = summ.dropna(subset=["median"]).sort_values("median", ascending=False, kind="stable")
    if s.empty:
        lines = ["No seed finished without diverging: there is no accuracy to summarise."]
    elif len(s) == 1:
        lines = [f"Final test accuracy: {_median_text(s.iloc[0], by)}."]
    else:
        lines = _ranking(s, by, pairs)
    lines += [_failed_line(summ, by), *_outlier_line(summ, by)]

    # Said where the gap is wider than half the median's own CI: a description, not a test.
    for _, r in s[s["median"] - s["mean"] > (s["median_hi"] - s["median_lo"]) / 2].iterrows():
        lines.append(
            f"At {config_label(r, by)} the mean ({percent(r['mean'])}%) is "
            f"{100 * (r['median'] - r['mean']):.2f} points below the median: a few low seeds pull it "
            "down, so the median describes a typical seed better."
        )
    lines += _tail_lines(summ, by) + _train_line(s, by)
    # Only where the peak lies above the final median's 95% CI (NaN below MIN_SEEDS: never).
    early = s[(s["best_epoch"] < s["final_epoch"]) & (s["best_epoch_median"] > s["median_hi"])]
    if len(early):
        parts = [
            f"{config_label(r, by)} (epoch {int(r['best_epoch'])}, "
            f"{100 * (r['best_epoch_median'] - r['median']):.2f} points above the final median)"
            for _, r in early.iterrows()
        ]
        lines.append(
            "The median test accuracy was highest before the last epoch, above the final median's 95% CI, "
            f"at {'; '.join(parts)}."
        )
    return lines + _reference_lines(s, by)


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
    layers, small, large = dead_columns(t), t.iloc[0], t.iloc[-1]
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
            if len(heavy) in (0, len(t)):
                which = "Every" if len(heavy) else "No"
                lines.append(f"{which} batch size leaves {name} with over 10% of its units dead.")
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
    why = "(too few seeds, or values that do not vary)"
    rest = f"; it is not tested at {words.names(untested, by)} {why}" if len(untested) else ""
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
