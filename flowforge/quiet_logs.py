"""Keep the once-a-second housekeeping out of the logs at INFO.

Beat sends `flowforge.schedule` every FLOWFORGE_SCHEDULE_SECS and the reconciler every
FLOWFORGE_RECONCILE_SECS; Celery logs each send, receipt and success at INFO, three lines
a second that would bury what a person watching `make run` looks for, and the sends
that expired while no worker ran, discarded at a worker's start. They stay visible
at DEBUG (LOG_LEVEL=DEBUG); what those tasks do themselves (runs created, repairs) is
logged by FlowForge's own loggers as before.
"""

from __future__ import annotations

import logging

HOUSEKEEPING = ("flowforge.schedule", "flowforge.reconcile")
# celery.worker.request: a housekeeping send that waited past its interval expires by
# design (dags/schedules.py), and Celery calls its discarding "revoked".
CELERY_LOGGERS = (
    "celery.beat",
    "celery.worker.strategy",
    "celery.app.trace",
    "celery.worker.request",
)


class HousekeepingFilter(logging.Filter):
    """Drops Celery's INFO records about the housekeeping tasks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith(CELERY_LOGGERS):
            return True
        text = record.getMessage()
        return not any(name in text for name in HOUSEKEEPING)


def install(logger: logging.Logger) -> None:
    """Add the filter to every handler of `logger` (Celery's, once it set them up)."""
    for handler in logger.handlers:
        if not any(isinstance(f, HousekeepingFilter) for f in handler.filters):
            handler.addFilter(HousekeepingFilter())
