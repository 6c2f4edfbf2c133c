"""The raw Celery baseline: a no-op task that records when it ran, and nothing else.

Workers load it with `celery worker --include bench.raw_tasks`. Each run appends
"index start end" (time.time() seconds) to a Redis list on the broker's own database,
in one round trip, so the bench can time a chain or a batch from first start to last end.
"""

from __future__ import annotations

import os
import time
from functools import cache

import redis
from celery import shared_task

RAW_NOOP = "bench.raw_noop"


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])


@shared_task(name=RAW_NOOP, ignore_result=True)
def raw_noop(key: str, index: int) -> None:
    started = time.time()
    _redis().rpush(key, f"{index} {started:.6f} {time.time():.6f}")
