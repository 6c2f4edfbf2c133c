"""The raw Celery baselines: a no-op task that records when it ran, and nothing else; and
the floor of any engine that keeps its state in PostgreSQL: the same task plus two
commits to PostgreSQL (a claim and a finish, each one UPDATE of the task's own row).

Workers load it with `celery worker --include bench.raw_tasks`. Each run appends
"index start end" (time.time() seconds) to a Redis list on the broker's own database,
in one round trip, so the bench can time a chain or a batch from first start to last end.
"""

from __future__ import annotations

import os
import time
from functools import cache

import psycopg2
import redis
from celery import shared_task

RAW_NOOP = "bench.raw_noop"
RAW_TWO_COMMITS = "bench.raw_two_commits"
FLOOR_TABLE = "bench_floor"


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])


@shared_task(name=RAW_NOOP, ignore_result=True)
def raw_noop(key: str, index: int) -> None:
    started = time.time()
    _redis().rpush(key, f"{index} {started:.6f} {time.time():.6f}")


@cache
def _postgres():
    """This pool process's own connection, kept across tasks as FlowForge's workers do."""
    connection = psycopg2.connect(os.environ["DATABASE_URL"])
    connection.autocommit = True
    return connection


@shared_task(name=RAW_TWO_COMMITS, ignore_result=True)
def raw_two_commits(key: str, index: int) -> None:
    started = time.time()
    with _postgres().cursor() as cursor:
        cursor.execute(
            f"UPDATE {FLOOR_TABLE} SET state = 'running', tries = tries + 1 WHERE id = %s",
            [index],
        )
        cursor.execute(f"UPDATE {FLOOR_TABLE} SET state = 'success' WHERE id = %s", [index])
    _redis().rpush(key, f"{index} {started:.6f} {time.time():.6f}")
