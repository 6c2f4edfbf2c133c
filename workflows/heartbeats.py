"""Worker heartbeats: each worker's main process records, every few seconds, that it is
alive, what it consumes and which task instances it is running (/api/v1/workers)."""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown
from celery.worker import state as worker_state
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from runs import states

log = logging.getLogger(__name__)
_stop = threading.Event()


def running_instance_ids() -> list[int]:
    return sorted(
        request.args[0]
        for request in list(worker_state.active_requests)
        if request.name == "flowforge.execute_task" and request.args
    )


def beat(hostname: str, queues: list[str], started_at) -> None:
    states.record_worker_heartbeat(hostname, queues, running_instance_ids(), started_at)


def _loop(hostname: str, queues: list[str]) -> None:
    started_at = timezone.now()
    while not _stop.is_set():
        try:
            close_old_connections()
            beat(hostname, queues, started_at)
        except DatabaseError:  # the database is away; the next beat tries again
            log.warning("worker heartbeat could not be written", exc_info=True)
        _stop.wait(settings.FLOWFORGE_WORKER_HEARTBEAT_SECS)


@worker_ready.connect
def start_heartbeats(sender, **kwargs) -> None:
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    _stop.clear()
    threading.Thread(
        target=_loop, args=(sender.hostname, queues), name="flowforge-heartbeat", daemon=True
    ).start()


@worker_shutdown.connect
def stop_heartbeats(sender, **kwargs) -> None:
    _stop.set()
