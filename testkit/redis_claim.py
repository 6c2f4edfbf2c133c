"""A Redis database number of one's own, for a test session or a benchmark run, so that
two of them on one machine never take each other's messages."""

from __future__ import annotations

import os

import redis

LOCK_KEY = "flowforge:test-session"
LOCK_SECS = 6 * 3600


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_redis_db(base_url: str) -> tuple[int, redis.Redis]:
    """The first Redis database (1-15) no live session holds, locked for this process."""
    me = str(os.getpid())
    for number in range(1, 16):
        client = redis.Redis.from_url(f"{base_url}/{number}")
        if client.set(LOCK_KEY, me, nx=True, ex=LOCK_SECS):
            return number, client
        holder = client.get(LOCK_KEY)
        if holder and not _pid_alive(int(holder)):  # left by a session that died: ours now
            client.flushdb()
            client.set(LOCK_KEY, me, ex=LOCK_SECS)
            return number, client
    raise RuntimeError("every Redis database 1-15 is held by a live test or bench session")
