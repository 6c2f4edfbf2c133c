"""pytest plugin (loaded with -p before Django settings are read): this test session's
own Redis database, queue names and PostgreSQL test database, so that two test runs on
one machine never take each other's messages or rows.
"""

from __future__ import annotations

import atexit
import os

import redis

LOCK_KEY = "flowforge:test-session"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_redis_db(base_url: str) -> tuple[int, redis.Redis]:
    """The first Redis database (1-15) no live test session holds, locked for this one."""
    me = str(os.getpid())
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{base_url}/{db}")
        if client.set(LOCK_KEY, me, nx=True, ex=6 * 3600):
            return db, client
        holder = client.get(LOCK_KEY)
        if holder and not _pid_alive(int(holder)):  # a session that died without releasing
            client.flushdb()
            client.set(LOCK_KEY, me, ex=6 * 3600)
            return db, client
    raise RuntimeError("every Redis database 1-15 is held by a live test session")


def _setup() -> None:
    base_url = os.environ.get("FLOWFORGE_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    try:
        db, client = _claim_redis_db(base_url)
    except redis.exceptions.ConnectionError as exc:
        raise SystemExit(f"tests need Redis at {base_url}: {exc}") from None

    def release() -> None:
        client.flushdb()  # our database only, never the whole server

    atexit.register(release)
    pid = os.getpid()
    os.environ["CELERY_BROKER_URL"] = f"{base_url}/{db}"
    os.environ["FLOWFORGE_QUEUE_PREFIX"] = f"t{pid}."
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/flowforge")
    os.environ["FLOWFORGE_TEST_DB_NAME"] = f"test_flowforge_{pid}"


_setup()
