"""Small functions that python-callable tasks in test_executors.py point at."""

from __future__ import annotations

import sys
import time
import weakref
from typing import Any


def add(x: int, y: int) -> int:
    return x + y


def combine_with_upstream(factor: int, load_v1_2: dict) -> dict:
    return {"total": load_v1_2["rows"] * factor}


def takes_everything(**kwargs: Any) -> dict:
    return kwargs


def takes_only_day(day: str) -> str:
    return day


def noisy() -> str:
    print("to stdout")
    print("to stderr", file=sys.stderr)
    return "done"


def fail() -> None:
    raise ValueError("bad input\nsecond line")


def returns_a_set() -> set:
    return {1, 2}


def exits() -> None:
    sys.exit(4)


def spin() -> None:
    while True:
        pass


def spin_swallowing_exceptions() -> None:
    while True:
        try:
            time.sleep(0.01)
        except Exception:
            continue


def finalizer_then_sleep() -> str:
    """Spends its first 2.5 s in a weakref callback, where Python drops an exception that
    a signal handler raises (a timeout's, a stop's), then sleeps 30 s."""

    class Doomed:
        pass

    def finalize(ref: object) -> None:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            pass

    doomed = Doomed()
    _ref = weakref.ref(doomed, finalize)
    del doomed  # the callback runs here
    time.sleep(30)
    return "slept"


def noop() -> None:
    return None


not_a_function = 42
