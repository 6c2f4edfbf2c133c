"""The raw Celery baseline: chains and batches of bench.raw_tasks.raw_noop, and the
timings those tasks recorded in Redis."""

from __future__ import annotations

import uuid

import redis
from celery import chain, current_app

from flowforge.testing import wait_for

from .raw_tasks import RAW_NOOP, raw_noop
from .services import BenchEnv


def new_key(kind: str) -> str:
    return f"bench:{kind}:{uuid.uuid4().hex[:12]}"


def start_chain(env: BenchEnv, key: str, length: int) -> None:
    """A Celery chain of `length` immutable no-op signatures on the bench's default queue."""
    queue = env.queue("default")
    links = [raw_noop.si(key, index).set(queue=queue) for index in range(length)]
    chain(*links).apply_async()


def publish_batch(env: BenchEnv, key: str, count: int) -> None:
    """`count` independent no-op tasks, published over one connection."""
    queue = env.queue("default")
    app = current_app
    with app.producer_or_acquire() as producer:
        for index in range(count):
            app.send_task(RAW_NOOP, args=[key, index], queue=queue, producer=producer)


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
