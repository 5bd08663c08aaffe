"""The rules that judge the papers' sentences: each holds, fails and declines to judge on
hand-made numbers, and a changed threshold changes the verdict."""

from __future__ import annotations

import math

import pytest

from hyperlab.experiments import claims as cl
from hyperlab.experiments.claims import (
    Claim,
    at_every,
    at_least,
    binomial_se,
    compare,
    monotone,
    no_improvement,
    within,
)


def test_compare_holds_fails_and_declines_within_noise():
    lo, hi = [1.0, 1.1, 0.9], [2.0, 2.1, 1.9]
    assert compare(lo, hi).held is True
    assert compare(hi, lo).held is False
    assert compare(hi, lo, lower=False).held is True
    near = compare([1.0, 1.2, 0.8], [1.1, 1.3, 0.9])
    assert near.held is None and "within 2 standard errors" in near.reason
    one = compare([1.0], [2.0])
    assert one.held is None and "one repetition" in one.reason
    # one repetition per side with a known measurement noise (an accuracy on 10k images)
    assert compare([0.90], [0.95], noise=(binomial_se(0.9, 10_000), binomial_se(0.95, 10_000))
                   ).held is True  # fmt: skip
    assert "standard_error" in near.evidence and near.rule


def test_compare_does_not_judge_two_sides_at_chance():
    v = compare([0.085, 0.086], [0.082, 0.083], lower=False, chance=1 / 12,
                noise=(0.003, 0.003))  # fmt: skip
    assert v.held is None and "at chance" in v.reason
    assert compare([0.30, 0.31], [0.085, 0.086], lower=False, chance=1 / 12,
                   noise=(0.003, 0.003)).held is True  # fmt: skip


def test_the_noise_threshold_flips_a_verdict(monkeypatch):
    a, b = [1.0, 1.1, 0.9], [1.3, 1.4, 1.2]  # 0.3 apart, SE of the difference ~0.082
    assert compare(a, b).held is True
    monkeypatch.setattr(cl, "NOISE_SE", 4.0)
    assert compare(a, b).held is None


def test_at_every_needs_every_value():
    vals = [2, 3, 4]
    good = [[1.0, 1.1], [1.0, 1.1], [1.0, 1.1]]
    bad = [[2.0, 2.1], [2.0, 2.1], [2.0, 2.1]]
    assert at_every(vals, good, bad).held is True
    mixed = at_every(vals, good, [[2.0, 2.1], [2.0, 2.1], [0.5, 0.6]])
    assert mixed.held is False and mixed.evidence["held_at"] == [True, True, False]
    open_ = at_every(vals, good, [[2.0, 2.1], [2.0, 2.1], [1.0, 1.2]])
    assert open_.held is None and "[4]" in open_.reason


def test_monotone_is_judged_over_every_swept_value_not_its_endpoints():
    k = [2, 3, 4, 5, 6]
    falling = [[1.0, 1.02], [0.8, 0.82], [0.6, 0.62], [0.5, 0.52], [0.4, 0.42]]
    assert monotone(k, falling).held is True
    # U-shaped: the end is below the start, but the curve rises again beyond the noise
    u = [[1.0, 1.02], [0.5, 0.52], [0.3, 0.32], [0.5, 0.52], [0.7, 0.72]]
    v = monotone(k, u)
    assert v.held is False and v.evidence["steps_against"] == [5, 6]
    flat = [[1.0, 1.2], [1.05, 0.95], [1.0, 1.1], [1.1, 0.9], [0.95, 1.05]]
    assert monotone(k, flat).held is None
    assert monotone(k, list(reversed(falling))).held is False
    assert monotone([2], [[1.0, 1.1]]).held is None
    assert monotone(k, falling, decreasing=False).held is False


def test_no_improvement_needs_a_model_that_trained():
    k = [2, 3, 4]
    flat = [[1.0, 1.1], [1.05, 1.0], [1.0, 1.1]]
    assert no_improvement(k, flat, trained=[True] * 3).held is True
    broken = no_improvement(k, flat, trained=[True, False, False], trained_rule="below floor")
    assert broken.held is None and "did not train (below floor) at [3, 4]" in broken.reason
    better = [[1.0, 1.1], [0.5, 0.55], [0.4, 0.45]]
    v = no_improvement(k, better, trained=[True] * 3)
    assert v.held is False and v.evidence["better_than_smallest_at"] == [3, 4]
    assert no_improvement(k, [[1.0], [1.0], [1.0]], trained=[True] * 3).held is None


def test_at_least_is_the_papers_threshold():
    assert at_least(0.984, 0.975).held is True
    assert at_least(0.960, 0.975, se=0.001).held is False
    assert at_least(0.974, 0.975, se=0.001).held is None  # within noise of the threshold
    assert at_least(0.960, 0.95).held is True  # a lower threshold flips it
    assert at_least(math.nan, 0.975).held is None


def test_claims_carry_their_rule_and_round_trip():
    c = Claim.of("a < b", "Fig. 1", compare([1.0, 1.1], [2.0, 2.1]), note="x")
    assert c.held is True and c.rule.startswith("a lower than b") and c.evidence["note"] == "x"
    assert Claim.from_dict(c.to_dict()) == c
    n = Claim.of("a < b", "Fig. 1", compare([1.0], [2.0]))
    assert n.held is None and n.not_judged and Claim.from_dict(n.to_dict()) == n
    old = Claim.from_dict({"claim": "x", "paper_ref": "y", "held": True, "evidence": {}})
    assert old.rule == "" and old.not_judged is None  # records written before rules


@pytest.mark.parametrize("p, n", [(0.5, 100), (0.9, 10_000)])
def test_binomial_se(p, n):
    assert binomial_se(p, n) == pytest.approx(math.sqrt(p * (1 - p) / n))


def test_paired_differences_remove_the_shared_spread():
    a = [0.20, 0.90, 0.50, 0.95, 0.30]  # per pair: direct paths' minima, widely spread
    b = [0.97, 0.99, 0.98, 0.99, 0.97]  # the same pairs' interpolated minima
    assert compare(a, b).held is True
    spread_b = [x + 0.35 for x in a]
    assert compare(a, spread_b).held is None  # unpaired: the pairs' spread hides the gap
    assert compare(a, spread_b, paired=True).held is True  # paired: 0.35 below every time


def test_within_the_papers_spread_holds_fails_and_declines():
    # the paper's 69.48 ± 0.80 (%, as fractions): ours 0.69 ± small SE: held
    assert within([0.690, 0.692, 0.688], 0.6948, 0.0080).held is True
    # ours 0.51 (hypercl#4's rerun): far outside -> not held
    far = within([0.50, 0.51, 0.52], 0.6948, 0.0080)
    assert far.held is False and far.evidence["tolerance"] < 0.05
    # a noisy run still counts the paper's ± and our SE together
    assert within([0.60, 0.75, 0.70], 0.6948, 0.0080).held is True
    one = within([0.69], 0.6948, 0.008)
    assert one.held is None and "two finite" in one.reason
    assert "sqrt(SE" in far.rule
