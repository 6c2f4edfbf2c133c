"""Backoff policy: how long to wait before the next attempt (CONTRACT section 1)."""

from __future__ import annotations

import random

JITTER = 0.10


def retry_delay(
    attempt: int,
    base: float,
    cap: float,
    backoff: str = "exponential",
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based) before the next one.

    Retry k waits min(base * 2^(k-1), cap) with +-10% jitter, so the first retry waits
    about `base`. A fixed backoff waits min(base, cap) every time.
    """
    exponent = attempt - 1 if backoff == "exponential" else 0
    delay = min(base * (2**exponent), cap)
    jitter = (rng or random).uniform(-JITTER, JITTER)
    return max(0.0, delay * (1 + jitter))
