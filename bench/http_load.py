"""A bounded HTTP load: `count` requests from `concurrency` threads, each with its own
requests.Session, against a server on this machine; the rate and latencies it saw."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from .stats import median_ms, percentile

# (session, request index) -> response; the index lets a caller vary the body.
Send = Callable[[requests.Session, int], requests.Response]
TIMEOUT_SECS = 60


@dataclass
class LoadResult:
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    bodies: list[dict] = field(default_factory=list)  # JSON of 2xx answers, when kept

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def per_second(self) -> float:
        return self.ok / self.wall if self.wall else 0.0

    def latency_ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1e3 if self.latencies else 0.0


def load(send: Send, count: int, concurrency: int, keep_bodies: bool = False) -> LoadResult:
    """Send `count` requests, `concurrency` at a time; errors are counted as status 0."""
    result, lock, indexes = LoadResult(), threading.Lock(), itertools.count()

    def client() -> None:
        with requests.Session() as session:
            while (index := next(indexes)) < count:
                started = time.perf_counter()
                try:
                    response = send(session, index)
                    status = response.status_code
                    body = response.json() if keep_bodies and status < 300 else None
                except (requests.RequestException, ValueError):
                    status, body = 0, None
                with lock:
                    result.latencies.append(time.perf_counter() - started)
                    result.statuses[status] += 1
                    if body is not None:
                        result.bodies.append(body)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.wall = time.perf_counter() - started
    return result


def median_get_ms(session: requests.Session, url: str, times: int) -> float:
    """The median time of `times` GETs of `url` one after another, in milliseconds.
    Raises RuntimeError for an answer other than a 200 reached without a redirect (to
    the login page, say)."""

    def get() -> None:
        response = session.get(url, timeout=TIMEOUT_SECS)
        if response.status_code != 200 or response.history:
            raise RuntimeError(f"{url}: {response.status_code} ({response.url})")

    return median_ms(get, times)
