"""The Celery application, configured from Django settings (CELERY_* names)."""

import logging
import os

from celery import Celery
from celery.signals import celeryd_init, setup_logging
from kombu.utils.objects import cached_property

from . import quiet_logs, transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowforge.settings")
transport.install()


class FlowForgeCelery(Celery):
    """Celery with FlowForge's beat application (`flowforge/beat.py`)."""

    @cached_property
    def Beat(self):  # noqa: N802 (Celery's name)
        return self.subclass_with_self("flowforge.beat:Beat")


app = FlowForgeCelery("flowforge")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _log_through_django(**kwargs) -> None:
    """Worker and beat log through settings.LOGGING (JSON lines unless LOG_FORMAT=text), at
    LOG_LEVEL whatever `-l` says.

    With a receiver on this signal Celery leaves logging to it: it neither replaces the root
    logger's handlers with its own prose format nor, unless asked, sends what is printed to
    stdout and stderr to a logger, as it did before (worker_redirect_stdouts).
    """
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    if settings.LOG_LEVEL != "DEBUG":  # at DEBUG, every line is wanted
        quiet_logs.install(logging.getLogger())
    if app.conf.worker_redirect_stdouts:  # after the handlers took the real stderr
        app.log.redirect_stdouts(app.conf.worker_redirect_stdouts_level)


@celeryd_init.connect
def _warnings_as_log_lines(**kwargs) -> None:
    """Warnings become log lines (py.warnings), as Celery makes them once it set up logging,
    already for the worker's privilege check, which comes before and warns when run as root."""
    logging.captureWarnings(True)
