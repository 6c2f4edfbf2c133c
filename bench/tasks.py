"""Python callables that the benchmark DAGs and jobs name (`bench.tasks:noop`)."""

from __future__ import annotations

import random

FLAKY_FAILURE_PROBABILITY = 0.5


class FlakyFailure(RuntimeError):
    """The deliberate failure of a flaky job's attempt."""


def noop() -> None:
    """Does nothing: what is left of a task's time is the engine's."""


def flaky() -> None:
    """Fails with probability FLAKY_FAILURE_PROBABILITY, each attempt independently."""
    if random.random() < FLAKY_FAILURE_PROBABILITY:
        raise FlakyFailure("flaky job failed this attempt (as it does half the time)")
