"""pytest plugin (loaded with -p before Django settings are read): this test session's
own Redis database, queue names, PostgreSQL test database and Prometheus multiprocess
directory, so that two test runs on one machine never take each other's messages, rows
or counts.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile

import redis

from testkit.redis_claim import claim_redis_db


def _setup() -> None:
    base_url = os.environ.get("FLOWFORGE_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    try:
        db, client = claim_redis_db(base_url)
    except redis.exceptions.ConnectionError as exc:
        raise SystemExit(f"tests need Redis at {base_url}: {exc}") from None

    def release() -> None:
        client.flushdb()  # our database only, never the whole server

    atexit.register(release)
    pid = os.getpid()
    os.environ["CELERY_BROKER_URL"] = f"{base_url}/{db}"
    os.environ["FLOWFORGE_QUEUE_PREFIX"] = f"t{pid}."
    if os.environ.get("FLOWFORGE_TEST_BACKEND") == "sqlite":  # the embedded default's
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/flowforge")
    os.environ["FLOWFORGE_TEST_DB_NAME"] = f"test_flowforge_{pid}"
    # A key of the session's own: with DATABASE_URL set, the settings refuse to start
    # without one (the workers and servers the tests start inherit it).
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    # Where this process, and the workers and servers it starts, count for /metrics.
    metrics_dir = tempfile.mkdtemp(prefix=f"ffmetrics-{pid}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)


_setup()
