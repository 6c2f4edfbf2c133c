"""The operations pages: /dlq/ (with its Retry button), /workers/, /status/."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dashboard import ops_pages
from dashboard.tests.roles import texts
from runs.models import DagRun, DeadLetter, TaskAttempt, TaskInstance, WorkerHeartbeat
from runs.states import TaskState
from runs.tests.test_admin import CHAIN
from runs.tests.test_admin import failed_run as failed_run_of

# Parked on a queue nobody consumes: a retried task stays queued, whatever workers
# other tests of the session started.
PARKED = CHAIN.replace("command: echo e}", "command: echo e, queue: nobody-listens}")


def failed_run():
    return failed_run_of(PARKED)


pytestmark = pytest.mark.django_db(transaction=True)

DLQ, WORKERS, STATUS = "/dlq/", "/workers/", "/status/"


def retry_url(entry: DeadLetter) -> str:
    return reverse("dashboard:dlq-retry", args=[entry.pk])


def task_url(run_id, task_id: str) -> str:
    return reverse("dashboard:task", args=[run_id, task_id])


def shown_entries(client: Client, query: str = "") -> list[int]:
    return [entry.pk for entry in client.get(DLQ + query).context["entries"]]


def test_anonymous_is_sent_to_the_login_page():
    anonymous = Client()
    for response in [anonymous.get(path) for path in (DLQ, WORKERS, STATUS)] + [
        anonymous.post("/dlq/1/retry")
    ]:
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


def test_dead_letters_newest_first_with_links_and_filters(viewer):
    old_run, _ = failed_run()
    new_run, _ = failed_run()
    old, new = DeadLetter.objects.order_by("created_at")
    DeadLetter.objects.filter(pk=old.pk).update(
        error="x" * 300, retried_at=timezone.now(), retried_by="someone"
    )
    response = viewer.get(DLQ)
    assert response.status_code == 200
    page = response.content.decode()
    assert task_url(new_run.id, "extract") in page
    assert reverse("dashboard:run", args=[new_run.id]) in page
    assert shown_entries(viewer) == [new.pk]  # not yet retried, by default
    assert shown_entries(viewer, "?shown=retried") == [old.pk]
    assert shown_entries(viewer, "?shown=all") == [new.pk, old.pk]
    assert shown_entries(viewer, "?shown=nonsense") == [new.pk]
    retried = viewer.get(DLQ + "?shown=retried").content.decode()
    assert "<details>" in retried and "x" * 300 in retried and "by someone" in retried


def test_viewer_sees_no_retry_button_and_may_not_retry(viewer):
    failed_run()
    entry = DeadLetter.objects.get()
    assert retry_url(entry) not in viewer.get(DLQ).content.decode()
    assert viewer.post(retry_url(entry)).status_code == 403
    entry.refresh_from_db()
    assert entry.retried_at is None


def test_operator_retries_like_the_api_and_a_second_retry_is_refused(operator):
    run, first = failed_run()
    entry = DeadLetter.objects.get()
    assert retry_url(entry) in operator.get(DLQ).content.decode()

    response = operator.post(retry_url(entry) + "?shown=all&page=1")
    assert response.status_code == 302 and response["Location"] == DLQ + "?shown=all&page=1"
    assert any("extract" in text for text in texts(response))
    first.refresh_from_db()
    entry.refresh_from_db()
    assert first.state in (TaskState.QUEUED, TaskState.PENDING)
    assert DagRun.objects.get(pk=run.pk).state == "running"
    assert entry.retried_at is not None and entry.retried_by == "operator-user"
    assert retry_url(entry) not in operator.get(DLQ + "?shown=all").content.decode()

    again = operator.post(retry_url(entry), follow=True)
    assert again.redirect_chain == [(DLQ, 302)]
    [warning] = list(again.context["messages"])
    assert warning.level_tag == "warning" and "already retried" in str(warning)
    assert "by operator-user" in again.content.decode()
    assert operator.post("/dlq/999999/retry").status_code == 404


def test_dead_letter_page_costs_the_same_queries_at_any_size(viewer):
    failed_run()
    with CaptureQueriesContext(connection) as few:
        viewer.get(DLQ)
    for _ in range(4):
        failed_run()
    with CaptureQueriesContext(connection) as many:
        assert len(viewer.get(DLQ).context["entries"]) == 5
    assert len(many) == len(few)


def heartbeat(hostname: str, running: list[int], ago: timedelta = timedelta()) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        hostname=hostname,
        pid=4242,
        queues=["default", "io"],
        running=running,
        started_at=now - timedelta(hours=2),
        last_heartbeat=now - ago,
    )


def test_workers_alive_first_with_running_tasks_linked(viewer):
    run, first = failed_run()
    heartbeat("w2@gone", [], ago=timedelta(hours=1))
    heartbeat("w1@busy", [first.pk, 10**9])  # the second no longer exists
    response = viewer.get(WORKERS)
    assert response.status_code == 200
    # The session's own worker, when a test before this one started it, is listed too.
    rows = [
        w for w in response.context["workers"] if w.heartbeat.hostname.endswith(("@busy", "@gone"))
    ]
    assert [(w.heartbeat.hostname, w.alive) for w in rows] == [
        ("w1@busy", True),
        ("w2@gone", False),
    ]
    page = response.content.decode()
    assert task_url(run.id, first.task_id) in page
    assert "4242" in page and "io" in page and "deleted" in page
    assert 'data-hostname="w2@gone" data-alive="false"' in page


def test_workers_page_resolves_running_tasks_in_one_query(viewer):
    _, first = failed_run()
    heartbeat("w0@host", [first.pk])
    with CaptureQueriesContext(connection) as few:
        viewer.get(WORKERS)
    for n in range(1, 6):
        _, instance = failed_run()
        heartbeat(f"w{n}@host", [instance.pk, first.pk])
    with CaptureQueriesContext(connection) as many:
        listed = {w.heartbeat.hostname for w in viewer.get(WORKERS).context["workers"]}
    assert listed >= {f"w{n}@host" for n in range(6)}
    assert len(many) == len(few)


def attempt(instance: TaskInstance, try_number: int, state: str, start, seconds: float):
    """An attempt of `instance` that ran `seconds` from `start`."""
    TaskAttempt.objects.create(
        task_instance=instance,
        try_number=try_number,
        state=state,
        started_at=start,
        finished_at=start + timedelta(seconds=seconds),
    )


def known_attempts() -> None:
    """3 attempts finished in the last hour (10 s, 20 s, 60 s; one failed), 1 before."""
    _, instance = failed_run()  # its try 1 has no times: not finished, not counted
    now = timezone.now()
    attempt(instance, 2, TaskState.SUCCESS, now - timedelta(minutes=50), 10)
    attempt(instance, 3, TaskState.FAILED, now - timedelta(minutes=30), 20)
    attempt(instance, 4, TaskState.SUCCESS, now - timedelta(minutes=5), 60)
    attempt(instance, 5, TaskState.FAILED, now - timedelta(hours=2), 500)  # too old


def test_status_figures_of_the_last_hour(viewer):
    known_attempts()
    response = viewer.get(STATUS)
    assert response.status_code == 200
    status = response.context["status"]
    hour = status.last_hour
    assert (hour.finished, hour.failed) == (3, 1)
    assert hour.failure_rate == pytest.approx(1 / 3)
    assert hour.mean_duration == pytest.approx(30.0)
    assert hour.per_minute == pytest.approx(3 / 60)
    assert status.system["runs"]["failed"] == 1
    assert status.system["tasks"]["failed"] == 1
    assert status.system["tasks"]["upstream_failed"] == 1
    page = response.content.decode()
    assert "33%" in page and "30.0 s" in page and "0.05" in page
    assert "1 failed of 3 finished" in page
    assert 'data-queue="default"' in page


def test_failed_attempts_include_those_with_tries_left():
    _, instance = failed_run()
    now = timezone.now()
    attempt(instance, 2, TaskState.UP_FOR_RETRY, now - timedelta(minutes=3), 4)
    attempt(instance, 3, TaskState.CANCELLED, now - timedelta(minutes=2), 2)
    hour = ops_pages.last_hour()
    assert (hour.finished, hour.failed, hour.mean_duration) == (2, 1, pytest.approx(3.0))
    later = ops_pages.last_hour(now + timedelta(hours=2))
    assert (later.finished, later.failure_rate, later.mean_duration) == (0, None, None)


def test_status_page_costs_the_same_queries_at_any_size(viewer):
    with CaptureQueriesContext(connection) as few:
        viewer.get(STATUS)
    for _ in range(3):
        known_attempts()
    heartbeat("w@host", [])
    with CaptureQueriesContext(connection) as many:
        assert viewer.get(STATUS).context["status"].last_hour.finished == 9
    assert len(many) == len(few)
