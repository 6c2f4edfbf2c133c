"""The backoff policy of CONTRACT section 1."""

import random

import pytest

from workflows.retry import retry_delay


@pytest.mark.parametrize(
    "attempt, expected", [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (9, 30.0)]
)
def test_exponential_delay_doubles_up_to_the_cap(attempt, expected):
    delays = [retry_delay(attempt, 2, 30, rng=random.Random(seed)) for seed in range(200)]
    assert all(expected * 0.9 <= d <= expected * 1.1 for d in delays)
    assert max(delays) - min(delays) > expected * 0.1  # jitter is really applied


def test_fixed_backoff_waits_the_base_every_time():
    assert retry_delay(5, 3, 60, "fixed", random.Random(1)) == pytest.approx(3, rel=0.1)


def test_zero_base_means_no_wait():
    assert retry_delay(3, 0, 60) == 0
