"""What /api/v1/status and /api/v1/workers report: counts by state, queues, workers."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from dags.dag_spec import DagSpec
from dags.models import Dag

from .messages import queue_depths
from .models import DagRun, DeadLetter, TaskInstance, WorkerHeartbeat
from .states import RunState, TaskState


def alive_workers():
    """Workers whose last heartbeat is recent (three beats' worth)."""
    horizon = timezone.now() - timedelta(seconds=3 * settings.FLOWFORGE_WORKER_HEARTBEAT_SECS)
    return WorkerHeartbeat.objects.filter(last_heartbeat__gte=horizon)


def by_state(model, states) -> dict[str, int]:
    counts = dict.fromkeys(states, 0)
    for row in model.objects.values("state").annotate(n=Count("id")):
        counts[row["state"]] = row["n"]
    return counts


def known_queues() -> list[str]:
    queues = {"default", "dead_letter"}
    active = Dag.objects.filter(is_active=True, current_version__isnull=False)
    for stored in active.values_list("current_version__spec", flat=True):
        queues.update(task.queue for task in DagSpec.from_json(stored).tasks)
    return sorted(queues)


def system_status() -> dict:
    dags = Dag.objects.filter(kind=Dag.Kind.DAG)
    queues: dict[str, int | None] | dict[str, str]
    try:
        queues = queue_depths(known_queues())
    except Exception as exc:  # noqa: BLE001 - the broker being down is itself the status
        queues = {"error": f"broker unreachable: {exc}"}
    return {
        "dags": {
            "total": dags.count(),
            "active": dags.filter(is_active=True).count(),
            "paused": dags.filter(is_active=True, is_paused=True).count(),
        },
        "runs": by_state(DagRun, RunState.values),
        "tasks": by_state(TaskInstance, TaskState.values),
        "dead_letters": DeadLetter.objects.filter(retried_at=None).count(),
        "queues": queues,
        "workers_alive": alive_workers().count(),
    }
