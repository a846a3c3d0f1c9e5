"""Agreement (raw, Cohen's kappa, per class) and the paired before/after difference."""
from __future__ import annotations

import math
import random

import pytest

from iteralign.statistics import agreement, cohen_kappa, mcnemar_exact_p, paired_difference, per_class


def test_kappa_perfect_inverted_and_chance():
    truth = [True, False] * 50
    assert cohen_kappa(truth, truth) == 1.0
    assert cohen_kappa(truth, [not t for t in truth]) == -1.0
    # a labelling independent of the truth: agreement 0.5, kappa 0
    assert cohen_kappa(truth, [True, True, False, False] * 25) == pytest.approx(0.0)


def test_kappa_by_hand():
    # 2x2 table: both yes 20, a-yes b-no 5, a-no b-yes 10, both no 15 (n=50)
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    po, pe = 35 / 50, (25 / 50) * (30 / 50) + (25 / 50) * (20 / 50)
    assert cohen_kappa(a, b) == pytest.approx((po - pe) / (1 - pe))
    figures = agreement(a, b)
    assert figures["n"] == 50 and figures["agreement"] == 0.7
    assert figures["ci"][0] < 0.7 < figures["ci"][1] and figures["kappa_ci"][0] < figures["kappa"] < figures["kappa_ci"][1]


def test_kappa_is_undefined_when_both_use_one_class():
    assert cohen_kappa(["a"] * 5, ["a"] * 5) is None


def test_per_class_precision_recall():
    predicted = ["r", "r", "c", "c", "p"]
    truth = ["r", "c", "c", "c", "r"]
    figures = per_class(predicted, truth, ["r", "c", "p"])
    assert figures["r"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert figures["c"]["precision"] == 1.0 and figures["c"]["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["p"]["precision"] == 0.0 and figures["p"]["recall"] is None


def test_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    # paired outcomes with a known change: 60% violations before; each violation is fixed with
    # probability 0.3 and each ok answer broken with probability 0.05 (true difference -0.16)
    rng = random.Random(7)
    true_diff = -0.6 * 0.3 + 0.4 * 0.05
    covered = 0
    for _ in range(2000):
        before = [rng.random() < 0.6 for _ in range(120)]
        after = [(rng.random() >= 0.3) if b else (rng.random() < 0.05) for b in before]
        low, high = paired_difference(before, after)["ci"]
        covered += low <= true_diff <= high
    assert 0.93 <= covered / 2000 <= 0.985


def test_pairing_gives_a_narrower_interval_than_independent_samples():
    before = [True] * 60 + [False] * 60
    after = [True] * 40 + [False] * 20 + [False] * 60  # 20 fixed, nothing else changed
    low, high = paired_difference(before, after)["ci"]
    from iteralign.statistics import wilson_interval
    l1, u1 = wilson_interval(60, 120)
    l2, u2 = wilson_interval(40, 120)
    unpaired = math.sqrt((0.5 - l1) ** 2 + (u2 - 40 / 120) ** 2) + math.sqrt((u1 - 0.5) ** 2 + (40 / 120 - l2) ** 2)
    assert high < 0 and (high - low) < unpaired


def test_paired_difference_orientation_and_mcnemar():
    before = [True] * 60 + [False] * 40
    after = [False] * 30 + [True] * 30 + [False] * 40  # 30 fixed, none broken
    result = paired_difference(before, after)
    assert result["before"] == 0.6 and result["after"] == 0.3 and result["difference"] == -0.3
    assert result["fixed"] == 30 and result["broken"] == 0
    assert result["ci"][1] < 0 and result["mcnemar_p"] < 1e-6
    same = paired_difference(before, before)
    assert same["difference"] == 0 and same["mcnemar_p"] == 1.0 and same["ci"][0] <= 0 <= same["ci"][1]


def test_mcnemar_exact_small_counts():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(3, 3) == 1.0
