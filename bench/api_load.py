"""API: run triggers and job submissions per second over HTTP, against gunicorn.

gunicorn (2 sync workers) serves the API on a free loopback port; 50 client threads send
a bounded number of requests with an admin token. Baseline: GET /health (one SELECT 1
and a broker connection check, no authentication) on the same server, clients and
concurrency: the floor of an HTTP request through this stack. No worker runs meanwhile:
the runs' and jobs' messages wait on a queue nobody consumes.
"""

from __future__ import annotations

import requests

from . import cpu, inprocess, workloads
from .context import Context
from .http_load import LoadResult, load
from .processes import Gunicorn, api_token, running
from .stats import BenchResult

NAME = "api"
TITLE = "API over HTTP"
GUNICORN_WORKERS = 2
# DRF's per-user throttle (6,000/min by default) would turn a load test into 429s.
UNTHROTTLED = {"FLOWFORGE_THROTTLE_USER": "100000000/min"}


class Api:
    """The started server and the headers an admin sends."""

    def __init__(self, server: Gunicorn, token: str) -> None:
        self.url, self.headers = server.url, {"Authorization": f"Token {token}"}

    def health(self, session: requests.Session, index: int) -> requests.Response:
        return session.get(f"{self.url}/health", timeout=60)

    def trigger(self, dag_id: str):
        def send(session: requests.Session, index: int) -> requests.Response:
            url = f"{self.url}/api/v1/dags/{dag_id}/runs"
            return session.post(url, json={}, headers=self.headers, timeout=60)

        return send

    def job(self, body: dict):
        def send(session: requests.Session, index: int) -> requests.Response:
            url = f"{self.url}/api/v1/jobs"
            return session.post(url, json=body, headers=self.headers, timeout=60)

        return send


def _checked(name: str, outcome: LoadResult, count: int) -> LoadResult:
    if outcome.ok != count:
        raise RuntimeError(
            f"{name}: {outcome.ok} of {count} requests succeeded: {outcome.statuses}"
        )
    return outcome


def run(ctx: Context) -> BenchResult:
    count, concurrency = ctx.sizes.api_requests, ctx.sizes.concurrency
    result = BenchResult(
        NAME,
        TITLE,
        f"{count:,} requests per figure, {concurrency} client threads (requests.Session "
        f"each), gunicorn with {GUNICORN_WORKERS} sync workers; triggers: POST "
        "/api/v1/dags/<id>/runs of a 10-task fan-out; jobs: POST /api/v1/jobs "
        '{"command": "true"}; baseline: GET /health. Rate = 2xx answers / wall time.',
    )
    queue = inprocess.nobody_queue()
    dag = workloads.submit(workloads.fan_out_spec("bench-api-fan-out-10", 10, queue))
    job = {"type": "shell", "command": "true", "queue": queue}
    token = api_token(ctx.env)
    server = Gunicorn(ctx.env, GUNICORN_WORKERS, **UNTHROTTLED).start()
    with running(server):
        api = Api(server, token)
        load(api.health, concurrency, concurrency)  # warm-up: imports, connections
        for repetition in range(ctx.repeat):
            health = _checked("health", load(api.health, count, concurrency), count)
            triggers, cores = cpu.measured(
                {"web": server.pids}, lambda: load(api.trigger(dag.dag_id), count, concurrency)
            )
            _checked("trigger", triggers, count)
            jobs = _checked("jobs", load(api.job(job), count, concurrency), count)
            result.details.setdefault("cores_used_by_triggers", []).append(cores)
            inprocess.purge(ctx.env, queue)
            ctx.log(
                f"api #{repetition + 1}: health {health.per_second:.0f}/s, triggers "
                f"{triggers.per_second:.0f}/s, jobs {jobs.per_second:.0f}/s"
            )
            for name, outcome in (("triggers", triggers), ("jobs", jobs)):
                result.figure(f"{name}/s", "req/s", "GET /health").add(
                    outcome.per_second, health.per_second
                )
                result.figure(f"{name}: latency p50", "ms", "GET /health").add(
                    outcome.latency_ms(0.5), health.latency_ms(0.5)
                )
                result.figure(f"{name}: latency p99", "ms", "GET /health").add(
                    outcome.latency_ms(0.99), health.latency_ms(0.99)
                )
    result.notes.append(f"CPU while triggering: {cpu.busiest(cores)} (bench = the client)")
    return result
