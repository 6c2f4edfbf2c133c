"""The bench's own PostgreSQL database and Redis database, made at start, gone at the end.

The Redis database is claimed with the same lock key and protocol as the test sessions'
(testkit/pytest_isolation.py), so a test run and a bench run never share one: the key
holds the owner's pid, and a database whose owner died may be taken over (and flushed).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from testkit.redis_claim import claim_redis_db

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379"


@dataclass
class BenchEnv:
    """Where this bench run's rows and messages live, and the environment that says so."""

    db_url: str
    broker_url: str
    queue_prefix: str
    workdir: Path
    extra: dict[str, str] = field(default_factory=dict)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(50))

    def variables(self) -> dict[str, str]:
        """The variables a worker, gunicorn or this process needs to use them."""
        return {
            "DATABASE_URL": self.db_url,
            "CELERY_BROKER_URL": self.broker_url,
            "FLOWFORGE_QUEUE_PREFIX": self.queue_prefix,
            "DJANGO_SETTINGS_MODULE": "flowforge.settings",
            "SECRET_KEY": os.environ.get("SECRET_KEY") or self.secret_key,
            # The bench's processes count into a metrics folder of their own.
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "metrics"),
            **self.extra,
        }

    def process_env(self, **overrides: str) -> dict[str, str]:
        """This process's environment pointed at the bench's services (for children)."""
        env = {**os.environ, **self.variables(), **overrides}
        env.pop("FLOWFORGE_TEST_DB_NAME", None)  # a pytest session's, never the bench's
        return env

    def queue(self, name: str) -> str:
        return self.queue_prefix + name


def server_url() -> str:
    """The PostgreSQL server of DATABASE_URL (its maintenance database), or the default."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return DEFAULT_SERVER
    return with_database(url, "postgres")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}", query=""))


def _admin(url: str, statement: str) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def create_database(server: str, name: str) -> str:
    _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(server, f'CREATE DATABASE "{name}"')
    return with_database(server, name)


def drop_database(server: str, name: str) -> None:
    _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def bench_environment(extra: dict[str, str] | None = None) -> Iterator[BenchEnv]:
    """A fresh database and a claimed Redis database for this run; both cleaned up after.

    Sets this process's environment to them (before Django reads its settings).
    """
    redis_base = os.environ.get("FLOWFORGE_BENCH_REDIS_URL", DEFAULT_REDIS).rstrip("/")
    number, client = claim_redis_db(redis_base)
    server, name = server_url(), f"flowforge_bench_{os.getpid()}"
    try:
        env = BenchEnv(
            db_url=create_database(server, name),
            broker_url=f"{redis_base}/{number}",
            queue_prefix="bench.",
            workdir=Path(tempfile.mkdtemp(prefix="ffbench-")),
            extra=dict(extra or {}),
        )
        os.environ.update(env.variables())
        os.environ.pop("FLOWFORGE_TEST_DB_NAME", None)
        yield env
    finally:
        _close_django_connections()
        drop_database(server, name)
        client.flushdb()  # our database only (the lock key goes with it)


def _close_django_connections() -> None:
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
