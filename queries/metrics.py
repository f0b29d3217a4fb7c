"""Published metric definitions as pure functions, tested against worked examples."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Bain & Company's Net Promoter Score: 9-10 promoters, 7-8 passives, 0-6 detractors.
PROMOTER_MIN = 9
PASSIVE_MIN = 7


@dataclass(frozen=True)
class NpsResult:
    responses: int
    promoters: int
    passives: int
    detractors: int
    nps: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def small_sample(self) -> bool:
        # Below 30 answers the interval is wider than ±18 points; screens show the number as indicative.
        return self.responses < 30


def nps(promoters: int, passives: int, detractors: int) -> NpsResult:
    """NPS = %promoters - %detractors with passives in the denominator, and a 95% Wald interval.

    The interval treats each answer as +1 / 0 / -1: var = (p + d - (p - d)^2) / n.
    """
    n = promoters + passives + detractors
    if n == 0:
        return NpsResult(0, 0, 0, 0, None, None, None)
    p, d = promoters / n, detractors / n
    score = (p - d) * 100
    se = math.sqrt(max(p + d - (p - d) ** 2, 0.0) / n) * 100
    low, high = max(-100.0, score - 1.96 * se), min(100.0, score + 1.96 * se)
    return NpsResult(n, promoters, passives, detractors, score, low, high)


def rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator
