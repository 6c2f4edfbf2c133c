"""The bench as the worker, in its own process: what workflows/tests/test_size.py does.

The benchmark DAG's queue has no consumer, so the messages the engine publishes wait in
Redis while this process claims and runs every queued attempt itself, one at a time,
through the same run_attempt a worker's Celery task calls. Measuring around each call
(counting queries, timing) then sees exactly one task's engine work.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

import redis

from runs.models import TaskInstance
from runs.states import TaskState
from workflows.attempts import run_attempt

from .services import BenchEnv

WORKER_NAME = "bench-in-process"


def nobody_queue() -> str:
    """A queue name no worker listens on."""
    return f"nobody-{uuid.uuid4().hex[:8]}"


def play_worker(
    run_ids: list[str], around: Callable[[], AbstractContextManager] = contextlib.nullcontext
) -> int:
    """Run every attempt of these runs here until none is queued; returns how many ran.

    `around()` gives a context manager entered around each attempt (a timer, a counter).
    """
    executed = 0
    while ready := list(
        TaskInstance.objects.filter(run_id__in=run_ids, state=TaskState.QUEUED)
        .order_by("id")
        .values_list("id", "try_number")
    ):
        for instance_id, try_number in ready:
            with around():
                outcome = run_attempt(instance_id, try_number, worker=WORKER_NAME)
            if outcome is None or not outcome.succeeded:
                raise RuntimeError(f"task instance {instance_id} did not run cleanly: {outcome}")
            executed += 1
    return executed


def purge(env: BenchEnv, queue: str) -> None:
    """Drop the messages published to a queue nobody consumed."""
    client = redis.Redis.from_url(env.broker_url)
    for key in client.scan_iter(match=f"{env.queue(queue)}*"):
        client.delete(key)
