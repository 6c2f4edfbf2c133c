"""Shared fixtures: a real Celery worker process on this session's broker and database."""

import pytest

from flowforge.testing import WorkerProcess, database_url


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
