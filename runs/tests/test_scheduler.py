"""The scheduler and backfill on a controllable clock (CONTRACT section 7).

`schedule_due(now=...)` is one beat-fired pass at a chosen moment; the DAGs' start_date
fixes where their ticks begin, so every expectation below is a known calendar.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from dags.models import Dag
from dags.services import set_paused
from runs.models import DagRun
from runs.roles import ensure_roles
from runs.scheduler import MAX_BACKFILL_TICKS, BackfillError, backfill, schedule_due
from runs.services import trigger_run
from testkit.engine import submit

pytestmark = pytest.mark.django_db(transaction=True)


def at(hour: int, minute: int = 0, second: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


def hourly(*extra: str, dag_id: str = "clock", start: str = "2026-01-01T00:00:00+00:00") -> str:
    keys = "\n".join(extra)
    return f"""
id: {dag_id}
schedule: "0 * * * *"
start_date: "{start}"
{keys}
tasks:
  - {{id: a, command: "true", queue: nobody-listens}}
"""


def runs(dag_id: str = "clock") -> list[tuple[datetime, str, str]]:
    """(logical date, triggered by, state) of the DAG's runs, oldest tick first."""
    rows = DagRun.objects.filter(dag__dag_id=dag_id).order_by("logical_date")
    return list(rows.values_list("logical_date", "triggered_by", "state"))


def next_run_at(dag_id: str = "clock") -> datetime | None:
    return Dag.objects.get(dag_id=dag_id).next_run_at


def test_catchup_runs_every_missed_tick_oldest_first_under_max_active_runs():
    submit(hourly("catchup: true", "max_active_runs: 1"))
    assert next_run_at() == at(0)

    assert schedule_due(now=at(3, 30)).created == 4

    assert runs() == [
        (at(0), "schedule", "running"),
        (at(1), "schedule", "queued"),
        (at(2), "schedule", "queued"),
        (at(3), "schedule", "queued"),
    ]
    created = DagRun.objects.filter(dag__dag_id="clock").order_by("created_at")
    assert [run.logical_date for run in created] == [at(h) for h in range(4)]  # oldest first
    assert next_run_at() == at(4)
    assert schedule_due(now=at(3, 30)).created == 0  # a repeat creates nothing


def test_without_catchup_only_the_latest_missed_tick_runs():
    submit(hourly())
    assert schedule_due(now=at(3, 30)).created == 1
    assert runs() == [(at(3), "schedule", "running")]
    assert next_run_at() == at(4)


def test_no_tick_before_start_date_and_the_one_exactly_at_it_runs():
    submit(hourly("catchup: true", start="2026-01-01T02:00:00+00:00"))
    assert schedule_due(now=at(1, 59, 59)).created == 0
    assert schedule_due(now=at(2)).created == 1
    assert runs() == [(at(2), "schedule", "running")]


def test_none_after_end_date_and_then_no_next_run(api):
    submit(hourly("catchup: true", 'end_date: "2026-01-01T02:00:00+00:00"'))
    assert schedule_due(now=at(5)).created == 3
    assert [tick for tick, _, _ in runs()] == [at(0), at(1), at(2)]  # 02:00 exactly runs
    assert next_run_at() is None
    assert api.get("/api/v1/dags/clock").json()["next_run_at"] is None
    assert schedule_due(now=at(9)).created == 0


@pytest.mark.parametrize(("catchup", "expected"), [(True, [1, 2, 3]), (False, [3])])
def test_unpause_and_downtime_catch_up_by_the_dags_catchup(catchup, expected):
    dag = submit(hourly(f"catchup: {str(catchup).lower()}"))
    assert schedule_due(now=at(0, 30)).created == 1  # tick 0
    set_paused(dag, True)
    assert schedule_due(now=at(3, 30)).created == 0  # paused: nothing, plan kept
    set_paused(dag, False)
    # Unpaused at 03:30, or beat back after downtime: the same missed ticks.
    schedule_due(now=at(3, 30))
    assert [tick for tick, _, _ in runs()][1:] == [at(h) for h in expected]
    assert next_run_at() == at(4)


def test_a_new_version_with_the_same_schedule_keeps_its_plan():
    submit(hourly("catchup: true"))
    schedule_due(now=at(1, 30))
    submit(hourly("catchup: true", "description: changed"))
    assert next_run_at() == at(2)
    assert schedule_due(now=at(1, 30)).created == 0


def test_concurrency_policy_forbid_skips_a_tick_while_a_run_is_unfinished():
    submit(hourly("concurrency_policy: forbid"))
    schedule_due(now=at(0, 0, 1))
    assert schedule_due(now=at(1, 0, 1)).as_dict() == {"created": 0, "skipped": 1, "replaced": 0}
    assert [tick for tick, _, _ in runs()] == [at(0)]
    assert next_run_at() == at(2)


def test_concurrency_policy_replace_cancels_the_unfinished_run():
    submit(hourly("concurrency_policy: replace"))
    trigger_run("clock")  # a manual run counts too ("of any kind")
    schedule_due(now=at(0, 0, 1))
    assert schedule_due(now=at(1, 0, 1)).as_dict() == {"created": 1, "skipped": 0, "replaced": 1}
    states = {tick: state for tick, _, state in runs()}
    assert states[at(0)] == "cancelled" and states[at(1)] == "running"
    assert DagRun.objects.filter(triggered_by="api", state="cancelled").count() == 1


def test_concurrency_policy_allow_queues_under_max_active_runs():
    submit(hourly("max_active_runs: 1"))
    schedule_due(now=at(0, 0, 1))
    assert schedule_due(now=at(1, 0, 1)).created == 1
    assert [state for _, _, state in runs()] == ["running", "queued"]


def test_catchup_runs_ignore_concurrency_policy_and_the_tick_due_now_does_not():
    submit(hourly("catchup: true", "concurrency_policy: forbid"))
    # Ticks 0-2 were missed (catchup runs); tick 3 falls due now, while they are unfinished.
    assert schedule_due(now=at(3, 30)).as_dict() == {"created": 3, "skipped": 1, "replaced": 0}
    assert [tick for tick, _, _ in runs()] == [at(0), at(1), at(2)]


def test_next_run_at_is_the_tick_the_scheduled_run_gets(api):
    submit(
        'id: every-minute\nschedule: "* * * * *"\ntimezone: Europe/Berlin\n'
        "tasks:\n  - {id: a, command: 'true', queue: nobody-listens}\n"
    )
    promised = datetime.fromisoformat(api.get("/api/v1/dags/every-minute").json()["next_run_at"])
    assert promised.utcoffset() == timedelta(hours=1)  # shown in the DAG's zone
    assert schedule_due(now=promised - timedelta(milliseconds=1)).created == 0
    assert schedule_due(now=promised + timedelta(milliseconds=300)).created == 1
    (run,) = DagRun.objects.filter(dag__dag_id="every-minute")
    assert run.logical_date == promised  # to the microsecond
    later = api.get("/api/v1/dags/every-minute").json()["next_run_at"]
    assert datetime.fromisoformat(later) == promised + timedelta(minutes=1)


# --- backfill ----------------------------------------------------------------------------


def test_backfill_creates_a_run_per_tick_and_a_repeat_creates_nothing():
    submit(hourly(start="2026-01-02T00:00:00+00:00"))  # the window wins over start_date
    done = backfill("clock", at(0), at(3), now=at(5, day=2))
    assert [run.logical_date for run in done.created] == [at(h) for h in range(4)]
    assert {triggered for _, triggered, _ in runs()} == {"backfill"}
    again = backfill("clock", at(0), at(3), now=at(5, day=2))
    assert (again.created, again.skipped) == ([], [at(h) for h in range(4)])


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (at(3), at(1), "'end' 2026-01-01T01:00:00+00:00 is before 'start'"),
        (at(1), at(0, day=11), "is in the future"),
        (at(0), at(0, day=9), f"more than {MAX_BACKFILL_TICKS:,} ticks"),
    ],
)
def test_a_bad_backfill_window_creates_nothing(start, end, message):
    submit(hourly().replace("0 * * * *", "* * * * *"))
    with pytest.raises(BackfillError, match=re.escape(message)):
        backfill("clock", start, end, now=at(0, day=10))
    assert runs() == []


def test_backfill_of_a_dag_without_schedule_is_refused():
    submit("id: manual\ntasks:\n  - {id: a, command: 'true', queue: nobody-listens}\n")
    with pytest.raises(BackfillError, match="has no schedule"):
        backfill("manual", at(0), at(1), now=at(5))


@pytest.fixture
def api():
    ensure_roles()
    user = get_user_model().objects.create(username="scheduler-admin")
    user.groups.add(user.groups.model.objects.get(name="admin"))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_backfill_through_the_api(api):
    submit(hourly())
    url = "/api/v1/dags/clock/backfill"
    first = api.post(url, {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T02:00"}, "json")
    assert first.status_code == 201, first.json()
    body = first.json()
    assert [run["logical_date"] for run in body["created"]] == [
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:00:00Z",
        "2026-01-01T02:00:00Z",
    ]
    assert {run["triggered_by"] for run in body["created"]} == {"backfill"}
    assert body["skipped"] == []
    again = api.post(url, {"start": "2026-01-01", "end": "2026-01-01T01:00:00+00:00"}, "json")
    assert again.status_code == 200
    assert again.json() == {
        "created": [],
        "skipped": ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"start": "2026-01-01T03:00Z", "end": "2026-01-01T01:00Z"}, "is before 'start'"),
        ({"start": "2026-01-01", "end": "2999-01-01"}, "is in the future"),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "more than 10,000 ticks"),
        ({"start": "yesterday", "end": "2026-01-01"}, "'start' 'yesterday' is not an ISO 8601"),
        ({"start": "2026-01-01"}, "This field is required"),
    ],
)
def test_a_bad_backfill_request_is_a_400_that_creates_nothing(api, body, message):
    submit(hourly())
    answer = api.post("/api/v1/dags/clock/backfill", body, "json")
    assert answer.status_code == 400
    assert message in str(answer.json())
    assert DagRun.objects.count() == 0
    assert api.post("/api/v1/dags/nope/backfill", body, "json").status_code == 404


def test_backfill_command():
    submit(hourly())
    out = StringIO()
    call_command(
        "backfill", "clock", "--start", "2026-01-01T00:00", "--end", "2026-01-01T01:00", stdout=out
    )
    assert "2 created, 0 skipped" in out.getvalue()
    call_command("backfill", "clock", "--start", "2026-01-01", "--end", "2026-01-01", stdout=out)
    assert "skipped 2026-01-01T00:00:00+00:00: it already has a run" in out.getvalue()
    with pytest.raises(CommandError, match="is before 'start'"):
        call_command("backfill", "clock", "--start", "2026-01-02", "--end", "2026-01-01")
    assert DagRun.objects.filter(triggered_by="backfill").count() == 2
