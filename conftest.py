"""Shared fixtures: real Celery worker processes on this session's broker and database."""

import pytest

from testkit.engine import WorkerProcess, database_url
from testkit.web import serve


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker):
    """One `celery worker` (prefork, 2 processes) for the whole session.

    It starts after the test database exists and stops before it is dropped.
    """
    from django.db import connection

    with django_db_blocker.unblock():
        url = database_url(connection.settings_dict)
    process = WorkerProcess(url, concurrency=2).start()
    yield process
    process.stop()
    print(f"\n--- worker log tail ({process.log}) ---\n{process.tail(30)}")


@pytest.fixture
def launch_worker(django_db_setup, django_db_blocker):
    """Launch extra workers for one test (`launch_worker(name, queues, env)`), not yet
    ready (call .wait_ready()); whatever is left of them is killed when the test ends."""
    from django.db import connection

    with django_db_blocker.unblock():
        url = database_url(connection.settings_dict)
    launched: list[WorkerProcess] = []

    def launch(name: str, queues: list[str], env: dict | None = None, concurrency: int = 2):
        process = WorkerProcess(url, concurrency, queues, name, env).launch()
        launched.append(process)
        return process

    yield launch
    for process in launched:
        process.kill()


@pytest.fixture(scope="session")
def web_server(worker, django_db_setup, django_db_blocker):
    """A gunicorn process (2 workers) serving FlowForge on this session's test database
    and broker, beside the session's worker: its base URL."""
    from django.db import connection

    with django_db_blocker.unblock():
        url = database_url(connection.settings_dict)
    with serve(url) as base_url:
        yield base_url
