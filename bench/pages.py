"""Dashboard pages at size (issue 17): the DAG page of a 1,000-task DAG, the run page of
one of its runs, and the run list with 100,000 runs stored, each rendered by gunicorn for
a logged-in user. Baseline: GET /health on the same server (the floor of a request
through this stack). The goal is an absolute one: each page under 500 ms.
"""

from __future__ import annotations

import re

import requests
from django.db import connection, transaction
from django.utils import timezone

from runs.models import DagRun
from runs.services import trigger_run

from .context import Context
from .http_load import median_get_ms
from .processes import Gunicorn, running
from .stats import BenchResult
from .workloads import fan_out_spec, submit

NAME = "pages"
TITLE = "Dashboard pages at size"
SAMPLES = 20  # requests per page and repetition; the median is the figure


def run(ctx: Context) -> BenchResult:
    tasks, stored = ctx.sizes.page_tasks, ctx.sizes.page_runs
    result = BenchResult(
        NAME,
        TITLE,
        f"gunicorn (2 sync workers); one logged-in client asks each page {SAMPLES} times a "
        f"repetition, the median is the figure. A {tasks:,}-task fan-out DAG with 25 runs "
        f"(the grid's width), and {stored:,} runs stored in all. Baseline: GET /health "
        "on the same server. Goal: each page under 500 ms.",
    )
    dag = submit(fan_out_spec("bench-pages", tasks, queue="nobody-listens"))
    runs = [trigger_run(dag, triggered_by="bench") for _ in range(25)]
    _store_runs(dag, stored - len(runs), runs[0])
    ctx.log(f"pages: {tasks:,}-task DAG, {stored:,} runs stored")
    pages = {
        f"DAG page, {tasks:,} tasks × 25 runs": f"/dags/{dag.dag_id}/",
        f"run page, {tasks:,} tasks": f"/runs/{runs[-1].id}/",
        f"run list, {stored:,} runs stored": "/runs/",
    }
    server = Gunicorn(ctx.env).start()
    with running(server):
        session = _logged_in(server.url)
        for repetition in range(ctx.repeat):
            floor = median_get_ms(session, f"{server.url}/health", SAMPLES)
            for label, path in pages.items():
                took = median_get_ms(session, server.url + path, SAMPLES)
                ctx.log(f"pages #{repetition + 1}: {label} {took:.0f} ms (health {floor:.1f} ms)")
                result.figure(label, "ms", "GET /health").add(took, floor)
    return result


def _store_runs(dag, count: int, model: DagRun) -> None:
    """`count` finished runs of `dag` without task instances, in one INSERT ... SELECT:
    the run list reads runs only."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO runs_dagrun (id, dag_id, dag_version_id, state, triggered_by,"
            " logical_date, params, tasks_unfinished, tasks_failed, created_at, started_at,"
            " finished_at)"
            " SELECT gen_random_uuid(), %s, %s, 'success', 'bench',"
            " %s - n * interval '1 second', '{}', 0, 0, %s - n * interval '1 second',"
            " %s - n * interval '1 second', %s - n * interval '1 second' + interval '3 second'"
            " FROM generate_series(1, %s) AS n",
            [dag.pk, model.dag_version_id, *[timezone.now()] * 4, count],
        )


def _logged_in(url: str) -> requests.Session:
    """A session logged in through /login/ as a fresh superuser."""
    from django.contrib.auth import get_user_model

    users = get_user_model()
    users.objects.filter(username="bench-pages").delete()
    users.objects.create_superuser("bench-pages", "bench@example.com", "bench-pages-pw")
    session = requests.Session()
    form = session.get(f"{url}/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, "no CSRF token on /login/"
    session.post(
        f"{url}/login/",
        data={
            "username": "bench-pages",
            "password": "bench-pages-pw",
            "csrfmiddlewaretoken": token.group(1),
        },
        headers={"Referer": f"{url}/login/"},
        timeout=30,
    )
    return session
