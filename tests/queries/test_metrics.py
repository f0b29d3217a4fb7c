"""NPS follows Bain's definition; worked examples and the band edges."""

from __future__ import annotations

import pytest

from queries.metrics import nps


@pytest.mark.parametrize(
    ("promoters", "passives", "detractors", "expected"),
    [
        (60, 25, 15, 45.0),  # 60% - 15%
        (10, 0, 0, 100.0),
        (0, 0, 10, -100.0),
        (0, 10, 0, 0.0),  # passives count in the denominator and pull the score to zero
        (5, 10, 5, 0.0),
        (1, 1, 1, 0.0),
        (3, 1, 0, 75.0),
    ],
)
def test_worked_examples(promoters: int, passives: int, detractors: int, expected: float) -> None:
    assert nps(promoters, passives, detractors).nps == pytest.approx(expected)


def test_no_answers_is_no_score() -> None:
    r = nps(0, 0, 0)
    assert (r.nps, r.ci_low, r.responses) == (None, None, 0)


def test_interval_contains_score_and_narrows_with_n() -> None:
    small, large = nps(6, 2, 2), nps(600, 200, 200)
    assert small.nps == large.nps == pytest.approx(40.0)
    assert small.ci_low is not None and small.ci_high is not None
    assert large.ci_low is not None and large.ci_high is not None
    assert small.ci_low < 40 < small.ci_high
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low) / 5
    # var of +1/0/-1 scores = p + d - (p - d)^2 = 0.6 + 0.2 - 0.16 = 0.64 -> se = 0.8 / sqrt(1000)
    assert large.ci_high - 40 == pytest.approx(1.96 * 0.8 / 1000**0.5 * 100)
    assert small.small_sample and not large.small_sample
