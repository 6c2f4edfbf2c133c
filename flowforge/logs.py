"""How FlowForge's processes write log lines when LOG_FORMAT=json: one JSON object a line.

settings.LOGGING picks the formatter; web, worker and beat all log through it
(flowforge/celery.py keeps Celery from installing its own).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

# Extras Django adds to its request lines that are objects, not data: the request (a
# socket, under runserver) and runserver's own copy of the time.
OBJECT_EXTRAS = ("request", "server_time")


class JsonFormatter(BaseJsonFormatter):
    """`timestamp` (ISO 8601, UTC, with its offset), `level`, `logger`, `message`, then a
    record's extras as keys of their own: `run_id`, `dag_id`, `task_id` and `try_number` on
    the engine's lines, `status_code` on Django's request lines."""

    def __init__(self) -> None:
        super().__init__(
            ["asctime", "levelname", "name", "message"],
            rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, *OBJECT_EXTRAS],
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
