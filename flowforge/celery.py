"""The Celery application, configured from Django settings (CELERY_* names)."""

import logging
import os

from celery import Celery
from celery.signals import after_setup_logger

from . import quiet_logs, transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowforge.settings")
transport.install()

app = Celery("flowforge")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@after_setup_logger.connect
def _quiet_housekeeping(logger: logging.Logger, **kwargs) -> None:
    from django.conf import settings

    if settings.LOG_LEVEL != "DEBUG":  # at DEBUG, every line is wanted
        quiet_logs.install(logger)
