"""Issue 4's load test: N one-off jobs over HTTP, 80% reliable and 20% flaky, two workers;
afterwards every job succeeded or is in the dead-letter queue, none lost or duplicated.

Reliable jobs run the shell command `true`; flaky ones the python callable
bench.tasks:flaky, whose every attempt fails with probability 0.5. All have max_retries 2
(three attempts, 50 ms fixed backoff), so a flaky job dead-letters with p = 0.5³ = 0.125.
The jobs are POSTed to /api/v1/jobs by 50 client threads while the workers already run.
"""

from __future__ import annotations

import math
import time

import requests
from django.db.models import Max, Min

from runs.models import DagRun, Job

from . import job_audit
from .api_load import UNTHROTTLED
from .context import Context
from .http_load import load
from .processes import Gunicorn, Worker, api_token, running
from .stats import BenchResult

NAME = "load_jobs"
TITLE = "Load test: jobs API (issue 4)"
FLAKY_EVERY = 5  # one job in five is flaky
MAX_RETRIES = 2
RETRY = {"max_retries": MAX_RETRIES, "retry_delay_secs": 0.05, "backoff": "fixed"}
RELIABLE = {"name": "reliable", "type": "shell", "command": "true", **RETRY}
FLAKY = {"name": "flaky", "type": "python", "callable": "bench.tasks:flaky", **RETRY}
DEAD_LETTER_P = 0.5 ** (MAX_RETRIES + 1)
SIGMAS = 4


def job_body(index: int) -> dict:
    return FLAKY if index % FLAKY_EVERY == FLAKY_EVERY - 1 else RELIABLE


def flaky_count(n: int) -> int:
    return sum(1 for index in range(n) if job_body(index) is FLAKY)


def dead_letter_bounds(flaky: int) -> tuple[float, float, float]:
    """(expected, low, high): the binomial mean ± SIGMAS standard deviations."""
    mean = flaky * DEAD_LETTER_P
    spread = SIGMAS * math.sqrt(flaky * DEAD_LETTER_P * (1 - DEAD_LETTER_P))
    return mean, max(0.0, mean - spread), mean + spread


def submit_jobs(server: Gunicorn, token: str, n: int, concurrency: int):
    headers = {"Authorization": f"Token {token}"}

    def send(session: requests.Session, index: int) -> requests.Response:
        return session.post(
            f"{server.url}/api/v1/jobs", json=job_body(index), headers=headers, timeout=60
        )

    return load(send, n, concurrency, keep_bodies=True)


def wait_finished(first_job_id: int, n: int, workers: list[Worker], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for worker in workers:
            worker.check_alive()
        open_runs = DagRun.objects.filter(job__id__gte=first_job_id).exclude(
            state__in=["success", "failed", "cancelled"]
        )
        if not open_runs.exists():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{open_runs.count()} of {n} jobs unfinished after {timeout:.0f} s")
        time.sleep(0.5)


def completion_rate(first_job_id: int, n: int) -> float:
    """Jobs per second from the first job's creation to the last run's end."""
    span = Job.objects.filter(id__gte=first_job_id).aggregate(
        first=Min("created_at"), last=Max("run__finished_at")
    )
    return n / (span["last"] - span["first"]).total_seconds()


def one_round(ctx: Context, server: Gunicorn, token: str, workers: list[Worker]) -> dict:
    n = ctx.sizes.jobs
    first_job_id = (Job.objects.aggregate(last=Max("id"))["last"] or 0) + 1
    before = job_audit.api_counts(server.url, token)
    submitted = submit_jobs(server, token, n, ctx.sizes.concurrency)
    wait_finished(first_job_id, n, workers, timeout=max(300.0, n * 0.5))
    after = job_audit.api_counts(server.url, token)
    ids = [body["id"] for body in submitted.bodies]
    audit = job_audit.audit(first_job_id, ids, max_tries=MAX_RETRIES + 1)
    expected, low, high = dead_letter_bounds(flaky_count(n))
    problems = job_audit.problems(audit, before, after, n, (low, high))
    if submitted.ok != n:
        problems.insert(0, f"{submitted.ok} of {n} submissions accepted: {submitted.statuses}")
    return {
        "submit_per_second": submitted.per_second,
        "complete_per_second": completion_rate(first_job_id, n),
        "dead_letters": audit["dead_letters"],
        "dead_letters_expected": expected,
        "dead_letter_bounds": [round(low, 1), round(high, 1)],
        "attempts_per_job": audit["attempts"] / n,
        "audit": audit,
        "problems": problems,
    }


def run(ctx: Context) -> BenchResult:
    n, count = ctx.sizes.jobs, ctx.sizes.job_workers
    result = BenchResult(
        NAME,
        TITLE,
        f"{n:,} jobs POSTed to /api/v1/jobs by {ctx.sizes.concurrency} client threads "
        f"(gunicorn, 2 sync workers), {100 // FLAKY_EVERY}% flaky (python callable failing "
        f'with p=0.5 per attempt), the rest `command: "true"`; max_retries {MAX_RETRIES}; '
        f"{count} workers (`celery worker -c 1` each) run them meanwhile. Submit rate = "
        "accepted jobs / submission wall time; completion rate = jobs / (first job created "
        "→ last job finished). Then every job is checked through the API (status and DLQ "
        "counts) and the database (attempt rows = try_number, one success at most, dead "
        f"letters only for flaky jobs, count within the binomial mean ± {SIGMAS}σ).",
    )
    token = api_token(ctx.env)
    server = Gunicorn(ctx.env, 2, **UNTHROTTLED)
    workers = [
        Worker(ctx.env, 1, name=f"jobs{index + 1}", queues=("default", "dead_letter"))
        for index in range(count)
    ]
    with running(server, *workers):
        server.start()
        for worker in workers:
            worker.start()
        for repetition in range(ctx.repeat):
            outcome = one_round(ctx, server, token, workers)
            ctx.log(f"load_jobs #{repetition + 1}: {outcome}")
            _record(result, outcome)
    return result


def _record(result: BenchResult, outcome: dict) -> None:
    result.figure("submit rate", "jobs/s").add(outcome["submit_per_second"])
    result.figure("completion rate", "jobs/s").add(outcome["complete_per_second"])
    result.figure("dead-lettered", "jobs", "binomial mean").add(
        outcome["dead_letters"], outcome["dead_letters_expected"]
    )
    result.figure("attempts per job", "attempts").add(outcome["attempts_per_job"])
    result.details.setdefault("rounds", []).append(outcome)
    result.problems += outcome["problems"]
    audit = outcome["audit"]
    result.notes.append(
        f"{audit['jobs']:,} jobs: {audit['success']:,} success, {audit['failed']:,} failed "
        f"and dead-lettered (bounds {outcome['dead_letter_bounds']}), {audit['attempts']:,} "
        f"attempts; problems: {len(outcome['problems'])}"
    )
