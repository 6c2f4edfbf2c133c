"""Publishing engine messages by task name, after the transaction that justifies them commits.

`runs` never imports `workflows`: it names the Celery task instead. A publish that fails
(broker down) is logged and left to the reconciler, which republishes queued instances
from the database; the write it follows is never undone by it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from celery import current_app, current_task
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

EXECUTE_TASK = "flowforge.execute_task"
DEAD_LETTER_TASK = "flowforge.dead_letter"
# A message header: when the attempt it asks for is due (a Unix time; a retry's after its
# backoff), so the worker observes the attempt's queue wait without a query.
QUEUED_AT_HEADER = "flowforge_queued_at"


@dataclass(frozen=True)
class TaskMessage:
    instance_id: int
    try_number: int
    queue: str = "default"
    countdown: float | None = None


def queue_name(queue: str) -> str:
    return settings.FLOWFORGE_QUEUE_PREFIX + queue


def publish_on_commit(messages: Iterable[TaskMessage]) -> None:
    batch = list(messages)
    if batch:
        transaction.on_commit(lambda: publish_now(batch))


def publish_now(messages: list[TaskMessage]) -> None:
    try:
        # batch(): on Redis, one pipelined round trip for a whole fan-out instead of one
        # per message; transports without batches publish each message at once.
        sent_at = time.time()
        with current_app.producer_or_acquire() as producer, producer.batch():
            for message in messages:
                current_app.send_task(
                    EXECUTE_TASK,
                    args=[message.instance_id, message.try_number],
                    queue=queue_name(message.queue),
                    countdown=message.countdown,
                    producer=producer,
                    headers={QUEUED_AT_HEADER: sent_at + (message.countdown or 0)},
                )
    except Exception:  # noqa: BLE001 - the reconciler republishes from the database
        log.exception("could not publish %d task message(s); the reconciler will", len(messages))


def publish_dead_letter_on_commit(entry: dict) -> None:
    def send() -> None:
        try:
            current_app.send_task(
                DEAD_LETTER_TASK, args=[entry], queue=settings.FLOWFORGE_DEAD_LETTER_QUEUE
            )
        except Exception:  # noqa: BLE001 - the DeadLetter row is the record; this is a notice
            log.exception("could not publish dead-letter notice for %s", entry)

    transaction.on_commit(send)


def message_queued_at() -> float | None:
    """When the task message being executed in this thread was due (QUEUED_AT_HEADER);
    None outside a task message's execution, or for a message sent without it."""
    request = current_task.request if current_task else None
    value = getattr(request, QUEUED_AT_HEADER, None)
    return float(value) if isinstance(value, int | float) else None


def queue_depths(queues: list[str], timeout: float = 2) -> dict[str, int | None]:
    """Messages waiting in each named queue (None where the broker cannot say); raises
    when the broker cannot be reached within about `timeout` seconds."""
    depths: dict[str, int | None] = {}
    with current_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        channel = None
        try:
            for name in queues:
                channel = channel or conn.channel()
                try:
                    _, count, _ = channel.queue_declare(queue_name(name), passive=True)
                    depths[name] = count
                except conn.channel_errors:  # never declared: nothing is waiting in it
                    depths[name] = 0
                    # On AMQP a passive declare of a missing queue closes its channel.
                    channel.close()
                    channel = None
        finally:
            if channel is not None:
                channel.close()
    return depths


def check_broker() -> None:
    """Raises if the broker cannot be reached within a couple of seconds."""
    with current_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        conn.default_channel  # noqa: B018 - opening a channel proves the broker answers
