"""The DNB bench's statistics (bench/dnb.py): the spread it reports for the TCP ratio and
the rule that decides when enough alternating pairs were measured."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from tenantvisor.bench.dnb import median_ci, spread, within


def test_spread_of_a_few_ratios() -> None:
    assert spread([]) == {"n": 0}
    assert spread([1.2]) == {"n": 1, "median": 1.2, "q1": 1.2, "q3": 1.2, "min": 1.2, "max": 1.2}
    got = spread([0.9, 1.0, 1.1, 1.3, 2.7])
    assert got == pytest.approx(
        {"n": 5, "median": 1.1, "q1": 1.0, "q3": 1.3, "min": 0.9, "max": 2.7}
    )


def test_median_ci_needs_six_values_at_95_percent() -> None:
    assert median_ci([1.0] * 5) is None  # even min..max would cover only 93.75%
    assert median_ci([3.0, 1.0, 2.0, 6.0, 5.0, 4.0]) == (1.0, 6.0)


@pytest.mark.parametrize("n", [6, 9, 10, 20, 41, 100])
def test_median_ci_has_the_binomial_coverage(n: int) -> None:
    """x(k)..x(n+1-k) misses the median with probability 2 P(Bin(n, 1/2) <= k-1): at most
    5%, and k is the largest for which that holds (the interval is no wider than needed)."""
    xs = list(range(n))
    ci = median_ci([float(x) for x in xs])
    assert ci is not None
    k = int(ci[0]) + 1
    assert ci[1] == n - k

    def miss(k: int) -> float:
        return 2 * sum(math.comb(n, i) for i in range(k)) / 2**n

    assert miss(k) <= 0.05 < miss(k + 1)


def test_median_ci_covers_the_median_about_95_percent_of_the_time() -> None:
    rng = random.Random(5)
    hits = 0
    for _ in range(2000):
        ci = median_ci([rng.lognormvariate(0.0, 0.2) for _ in range(24)])
        assert ci is not None
        hits += ci[0] <= 1.0 <= ci[1]  # the true median of the log-normal is 1
    assert 0.95 <= hits / 2000 <= 0.995


def test_within_stops_on_tight_ratios_only() -> None:
    tight = [1.0 + 0.01 * ((i * 7) % 5 - 2) for i in range(12)]  # 0.98..1.02
    assert within(tight, 0.035)
    assert not within(tight[:5], 0.035)  # too few for an interval
    loose = [0.6, 1.4, 0.8, 1.2, 1.0, 0.7, 1.3, 0.9, 1.1, 1.0, 0.75, 1.25]
    assert not within(loose, 0.035)
    # an outlier a burst of load made does not keep a tight series going
    assert within([*tight, 2.7, 0.4], 0.035)
    assert statistics.median([*tight, 2.7, 0.4]) == pytest.approx(1.0)
