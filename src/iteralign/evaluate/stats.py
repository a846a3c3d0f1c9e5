"""Benchmark metrics with their 95% intervals: per-example outcomes in, `Metric` records out.

Accuracy uses the Wilson interval, a mean of per-example scores the normal approximation (see
iteralign/statistics.py for why).
"""
from __future__ import annotations

from typing import Sequence

from iteralign.evaluate.results import Metric
from iteralign.statistics import normal_mean_interval, wilson_interval

def accuracy(name: str, outcomes: Sequence[bool]) -> Metric:
    n = len(outcomes)
    hits = sum(1 for o in outcomes if o)
    low, high = wilson_interval(hits, n)
    return Metric(name=name, value=hits / n if n else 0.0, n=n, ci_low=low, ci_high=high, interval="wilson")


def mean(name: str, values: Sequence[float]) -> Metric:
    value, low, high = normal_mean_interval(values)
    return Metric(name=name, value=value, n=len(values), ci_low=low, ci_high=high, interval="normal")
