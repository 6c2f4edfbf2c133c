"""The Celery application, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery

from . import transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowforge.settings")
transport.install()

app = Celery("flowforge")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
