"""Django system checks for engine settings that must agree with each other
(`manage.py check`; also run by runserver and migrate)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register

# CONTRACT section 1: a task's timeout when it names none.
DEFAULT_TASK_TIMEOUT_SECS = 3600


@register("flowforge")
def engine_settings_agree(app_configs=None, **kwargs) -> list:
    problems = []
    lease, heartbeat = settings.FLOWFORGE_LEASE_SECS, settings.FLOWFORGE_HEARTBEAT_SECS
    if heartbeat * 2 > lease:
        problems.append(
            Error(
                f"FLOWFORGE_HEARTBEAT_SECS ({heartbeat:g}) is more than half of "
                f"FLOWFORGE_LEASE_SECS ({lease}): leases would lapse between renewals and "
                "running attempts be taken for lost.",
                hint="Renew at least twice per lease: lower the heartbeat or lengthen the lease.",
                id="flowforge.E001",
            )
        )
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    if visibility is not None and visibility < DEFAULT_TASK_TIMEOUT_SECS:
        problems.append(
            Warning(
                f"CELERY_VISIBILITY_TIMEOUT ({visibility} s) is shorter than a task's default "
                f"timeout ({DEFAULT_TASK_TIMEOUT_SECS} s): the broker hands the message of a "
                "task still running to a second worker, which finds it claimed and drops it.",
                hint="Keep it above your longest task timeout.",
                id="flowforge.W002",
            )
        )
    return problems
