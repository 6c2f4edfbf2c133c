"""The raw Celery baseline: chains and batches of bench.raw_tasks.raw_noop, and the
timings those tasks recorded in Redis."""

from __future__ import annotations

import uuid

import redis
from celery import chain, current_app

from testkit.engine import wait_for

from .raw_tasks import FLOOR_TABLE, RAW_NOOP, raw_noop
from .services import BenchEnv


def new_key(kind: str) -> str:
    return f"bench:{kind}:{uuid.uuid4().hex[:12]}"


def start_chain(env: BenchEnv, key: str, length: int) -> None:
    """A Celery chain of `length` immutable no-op signatures on the bench's default queue."""
    queue = env.queue("default")
    links = [raw_noop.si(key, index).set(queue=queue) for index in range(length)]
    chain(*links).apply_async()


def publish_batch(env: BenchEnv, key: str, count: int, task: str = RAW_NOOP) -> None:
    """`count` independent tasks (no-op by default), published over one connection."""
    queue = env.queue("default")
    app = current_app
    with app.producer_or_acquire() as producer:
        for index in range(count):
            app.send_task(task, args=[key, index], queue=queue, producer=producer)


def prepare_floor_table(count: int) -> None:
    """Rows 0..count-1 for bench.raw_two_commits to update, in the bench's database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        cursor.execute(
            f"CREATE TABLE {FLOOR_TABLE} (id integer PRIMARY KEY, state varchar(16),"
            " tries integer NOT NULL DEFAULT 0)"
        )
        cursor.execute(
            f"INSERT INTO {FLOOR_TABLE} (id, state) SELECT n, 'queued'"
            " FROM generate_series(0, %s) AS n",
            [count - 1],
        )


def client(env: BenchEnv) -> redis.Redis:
    return redis.Redis.from_url(env.broker_url)


def wait_recorded(env: BenchEnv, key: str, count: int, timeout: float, check=None) -> None:
    redis_client = client(env)

    def done() -> bool:
        if check:
            check()
        return redis_client.llen(key) >= count

    wait_for(done, timeout=timeout, interval=0.05, message=f"{count} raw task(s) in {key}")


def recorded(env: BenchEnv, key: str) -> list[tuple[int, float, float]]:
    """(index, started, finished) of each recorded run, by index."""
    rows = []
    for entry in client(env).lrange(key, 0, -1):
        index, started, finished = entry.decode().split()
        rows.append((int(index), float(started), float(finished)))
    return sorted(rows)
