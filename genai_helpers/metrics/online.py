"""Online metrics: comparing two variants in an A/B test (chapter 03).

Offline metrics decide what is worth shipping; an A/B test decides whether it helped users. A
rate (click-through, acceptance, conversion) is compared with a two-proportion z-test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ProportionTest", "two_proportion_z_test", "required_sample_size"]


@dataclass
class ProportionTest:
    rate_a: float          # successes_a / n_a
    rate_b: float          # successes_b / n_b
    lift: float            # rate_b / rate_a - 1 (relative change; nan if rate_a = 0)
    z: float               # test statistic (positive: B higher)
    p_value: float         # two-sided
    ci_low: float          # confidence interval of rate_b - rate_a (unpooled standard error)
    ci_high: float


def two_proportion_z_test(successes_a: int, n_a: int, successes_b: int, n_b: int, *,
                          confidence: float = 0.95) -> ProportionTest:
    """Two-sided z-test that variants A and B have the same success rate.

    Under the null both rates equal the pooled rate ``p``; the difference of the two observed
    rates then has standard error ``sqrt(p (1 - p) (1/n_a + 1/n_b))`` and ``z`` is the difference in
    those units. The same p-value as a chi-square test of the 2x2 table without continuity
    correction (``z² = χ²``). Also returns a ``confidence`` interval for ``rate_b - rate_a``.
    """
    for name, v in (("successes_a", successes_a), ("n_a", n_a), ("successes_b", successes_b), ("n_b", n_b)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if n_a < 1 or n_b < 1:
        raise ValueError(f"n_a and n_b must be >= 1, got {n_a} and {n_b}")
    if not (0 <= successes_a <= n_a and 0 <= successes_b <= n_b):
        raise ValueError("successes_a and successes_b must be between 0 and n_a / n_b")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    ra, rb = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (rb - ra) / se0 if se0 > 0 else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2))
    se = math.sqrt(ra * (1 - ra) / n_a + rb * (1 - rb) / n_b)
    z_crit = _normal_quantile(0.5 + confidence / 2)
    lift = rb / ra - 1 if ra > 0 else float("nan")
    return ProportionTest(ra, rb, lift, z, p_value, rb - ra - z_crit * se, rb - ra + z_crit * se)


def _normal_quantile(q: float) -> float:
    """Inverse of the standard normal CDF by bisection on ``erf`` (accurate to ~1e-12)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def required_sample_size(base_rate: float, min_detectable_lift: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per variant to detect a relative lift of ``min_detectable_lift`` over ``base_rate``.

    The usual normal-approximation formula
    ``n = (z_{1-alpha/2} sqrt(2 p̄ (1-p̄)) + z_power sqrt(p1 (1-p1) + p2 (1-p2)))² / (p2 - p1)²``.
    """
    if not 0 < base_rate < 1:
        raise ValueError(f"base_rate must be in (0, 1), got {base_rate}")
    p2 = base_rate * (1 + min_detectable_lift)
    if min_detectable_lift == 0 or not 0 < p2 < 1:
        raise ValueError(f"min_detectable_lift must be non-zero and keep the rate in (0, 1), got {min_detectable_lift}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}")
    p1, p_bar = base_rate, (base_rate + p2) / 2
    za, zb = _normal_quantile(1 - alpha / 2), _normal_quantile(power)
    n = (za * math.sqrt(2 * p_bar * (1 - p_bar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p2 - p1) ** 2
    return math.ceil(n)
