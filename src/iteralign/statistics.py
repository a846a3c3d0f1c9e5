"""Interval estimates and agreement statistics: the numbers behind every rate iteralign reports.

Pure functions of counts and labels (no model, no file), used by the evaluation protocols, the
judges' checks, the run summaries and the report:
- `wilson_interval`: a proportion's 95% interval. Unlike the normal ("Wald") interval it stays
  inside [0, 1] and does not collapse to zero width at 0% or 100%, which matters for the small
  per-category counts of HHH (43-61 examples).
- `normal_mean_interval`: a mean of per-example scores (TruthfulQA mc2): mean +- 1.96 s / sqrt(n),
  s the sample standard deviation (ddof=1, the standard error lm-evaluation-harness reports),
  clipped to [0, 1]; deterministic (no bootstrap seed). Fewer than two values: the whole range.
- `paired_difference`, `mcnemar_exact_p`: a rate measured twice on the same items (the probe
  before and after training).
- `bootstrap_interval`: a seeded percentile interval for statistics with no closed form (F1).
- `cohen_kappa`, `agreement`, `per_class`: two labellings of the same items (a judge against
  human labels, an oracle against the reference judge).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0  # no evidence: every rate is possible
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside 0..{n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0% or 100% the bound is exactly 0 or 1; floating point would give 1e-17 or 0.9999999999999999
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def normal_mean_interval(values: Sequence[float], z: float = Z95, low: float = 0.0,
                         high: float = 1.0) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) of `values`, clipped to [low, high]."""
    n = len(values)
    if n == 0:
        return 0.0, low, high
    mean = math.fsum(values) / n
    if n < 2:
        return mean, low, high
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(var / n)
    return mean, max(low, mean - half), min(high, mean + half)


def paired_difference(before: Sequence[bool], after: Sequence[bool], z: float = Z95) -> dict:
    """The change in a rate measured twice on the same items (the probe before and after training).

    In: one outcome per item, in the same item order (True = a violation, say). Out: the two
    rates, their difference (after - before) with Newcombe's (1998, method 10) hybrid score
    interval for paired proportions, the discordant counts, and the exact McNemar p-value (a
    two-sided binomial test on the items that changed). Pairing matters: the same prompts are
    answered twice, so the difference is far tighter than two independent intervals suggest.
    """
    if len(before) != len(after):
        raise ValueError(f"paired outcomes of unequal length: {len(before)} and {len(after)}")
    n = len(before)
    both = sum(b and a for b, a in zip(before, after))
    only_before = sum(b and not a for b, a in zip(before, after))  # fixed: true before, false after
    only_after = sum(a and not b for b, a in zip(before, after))  # broken: false before, true after
    neither = n - both - only_before - only_after
    if n == 0:
        return {"n": 0, "before": None, "after": None, "difference": None, "ci": [None, None],
                "fixed": 0, "broken": 0, "mcnemar_p": None, "interval": "newcombe-paired"}
    p1, p2 = (both + only_before) / n, (both + only_after) / n
    l1, u1 = wilson_interval(both + only_before, n, z)
    l2, u2 = wilson_interval(both + only_after, n, z)
    denominator = (both + only_before) * (neither + only_after) * (both + only_after) * (neither + only_before)
    # the correlation of the pairs, continuity-corrected as Newcombe (1998) and Altman et al.,
    # "Statistics with Confidence" (2000, p. 52) give it
    cross = both * neither - only_before * only_after
    cross = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = cross / math.sqrt(denominator) if denominator else 0.0
    diff = p2 - p1
    # Newcombe's hybrid interval for p1 - p2, turned around for after - before
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    low, high = -((p1 - p2) + upper), -((p1 - p2) - lower)
    return {"n": n, "before": round(p1, 4), "after": round(p2, 4), "difference": round(diff, 4),
            "ci": [round(max(-1.0, low), 4), round(min(1.0, high), 4)], "fixed": only_before,
            "broken": only_after, "mcnemar_p": mcnemar_exact_p(only_before, only_after),
            "interval": "newcombe-paired"}


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar test: P(a split at least this uneven of b + c coin flips)."""
    m = b + c
    if m == 0:
        return 1.0
    k = min(b, c)
    tail = math.fsum(math.comb(m, i) for i in range(k + 1)) / 2 ** m
    return round(min(1.0, 2 * tail), 6)


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """(p_o - p_e) / (1 - p_e); None when there is nothing to compare or chance agreement is 1
    (both labellings use one and the same class: kappa is undefined, not perfect)."""
    n = len(first)
    if n == 0 or n != len(second):
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    counts_a, counts_b = Counter(first), Counter(second)
    expected = sum(counts_a[k] * counts_b.get(k, 0) for k in counts_a) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def agreement(first: Sequence[Hashable], second: Sequence[Hashable]) -> dict:
    """{"n", "agreement", "ci": [lo, hi], "kappa", "kappa_ci": [lo, hi]} (None where undefined)."""
    if len(first) != len(second):
        raise ValueError(f"agreement of {len(first)} against {len(second)} labels")
    n = len(first)
    hits = sum(a == b for a, b in zip(first, second))
    low, high = wilson_interval(hits, n)
    kappa = cohen_kappa(first, second)
    kappa_ci = None
    if kappa is not None and n:
        counts_a, counts_b = Counter(first), Counter(second)
        observed = hits / n
        expected = sum(counts_a[k] * counts_b.get(k, 0) for k in counts_a) / (n * n)
        # Cohen's (1960) large-sample standard error of kappa
        se = math.sqrt(observed * (1 - observed) / (n * (1 - expected) ** 2))
        kappa_ci = [round(max(-1.0, kappa - Z95 * se), 4), round(min(1.0, kappa + Z95 * se), 4)]
    return {"n": n, "agreement": round(hits / n, 4) if n else None, "ci": [round(low, 4), round(high, 4)],
            "kappa": round(kappa, 4) if kappa is not None else None, "kappa_ci": kappa_ci}


def per_class(predicted: Sequence[Hashable], truth: Sequence[Hashable], classes: Sequence[Hashable]) -> dict:
    """{class: {"precision", "recall", "f1", "support"}}; a ratio with a zero denominator is None."""
    out = {}
    for label in classes:
        tp = sum(p == label and t == label for p, t in zip(predicted, truth))
        predicted_n = sum(p == label for p in predicted)
        support = sum(t == label for t in truth)
        precision = tp / predicted_n if predicted_n else None
        recall = tp / support if support else None
        f1 = (2 * precision * recall / (precision + recall)
              if precision is not None and recall is not None and precision + recall > 0 else
              (0.0 if precision is not None and recall is not None else None))
        out[str(label)] = {"precision": _round(precision), "recall": _round(recall), "f1": _round(f1),
                           "support": support}
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def bootstrap_interval(items: Sequence, statistic, resamples: int = 1000, seed: int = 0,
                       z_level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of `statistic(items)` for statistics with no closed form
    (F1). Seeded, so the same items always give the same interval; resamples where the statistic
    is undefined (None) are dropped."""
    import random

    rng = random.Random(seed)
    n = len(items)
    values = sorted(v for v in (statistic([items[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
                    if v is not None)
    if not values:
        return 0.0, 1.0
    tail = (1 - z_level) / 2
    return values[int(tail * (len(values) - 1))], values[int(round((1 - tail) * (len(values) - 1)))]
