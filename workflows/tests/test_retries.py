"""Retries with growing backoff; exhausted retries end in the dead-letter queue."""

import base64
import itertools
import json

import pytest
import redis
from django.conf import settings

from runs.models import DeadLetter
from runs.repair import retry_dead_letter
from testkit.engine import run_dag, wait_for_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def test_task_failing_twice_then_succeeding_retries_with_growing_delays(tmp_path):
    counter = tmp_path / "count"
    run, tasks = run_dag(
        f"""
id: flaky
tasks:
  - id: flaky
    command: "n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]"
    retries: 4
    retry_delay_secs: 0.5
"""
    )
    flaky = tasks["flaky"]
    assert run.state == "success"
    assert (flaky.state, flaky.try_number, flaky.max_tries) == ("success", 3, 5)
    attempts = list(flaky.attempts.order_by("try_number"))
    assert [a.state for a in attempts] == ["up_for_retry", "up_for_retry", "success"]
    gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in itertools.pairwise(attempts)]
    # Retry 1 waits ~0.5 s, retry 2 ~1 s (+-10% jitter each).
    assert 0.45 <= gaps[0] < gaps[1]
    assert gaps[1] >= 0.9


def test_exhausted_retries_dead_letter_the_task_and_fail_the_run():
    run, tasks = run_dag(
        """
id: doomed
tasks:
  - id: always-fails
    command: echo nope >&2; exit 1
    retries: 2
    retry_delay_secs: 0.1
  - id: after
    command: echo never
    depends_on: [always-fails]
  - id: after-after
    command: echo never
    depends_on: [after]
"""
    )
    assert run.state == "failed"
    failed = tasks["always-fails"]
    assert (failed.state, failed.try_number) == ("failed", 3)
    assert failed.attempts.count() == 3
    assert tasks["after"].state == "upstream_failed"
    assert tasks["after-after"].state == "upstream_failed"
    assert tasks["after"].attempts.count() == 0

    entry = DeadLetter.objects.get()
    assert (entry.run_id, entry.task_id, entry.attempts) == (run.id, "always-fails", 3)
    assert "exited with status 1" in entry.error

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    messages = [json.loads(m) for m in broker.lrange(settings.FLOWFORGE_DEAD_LETTER_QUEUE, 0, -1)]
    notices = [json.loads(base64.b64decode(m["body"]))[0][0] for m in messages]
    assert any(n["id"] == entry.id and n["task_id"] == "always-fails" for n in notices)


def test_a_dead_letter_retry_starts_its_backoff_afresh():
    """CONTRACT section 9: the retried task gets 1 + retries new tries, and the first retry
    of the new set waits the base delay again (not base * 2^3, as try 4 would)."""
    yaml = """
id: retried-from-the-dlq
tasks:
  - id: always-fails
    command: exit 1
    retries: 2
    retry_delay_secs: 0.5
"""
    run, _ = run_dag(yaml)
    assert run.state == "failed"
    retry_dead_letter(DeadLetter.objects.get(run=run))
    run = wait_for_run(run.id)

    instance = run.task_instances.get()
    assert (run.state, instance.try_number, instance.max_tries) == ("failed", 6, 6)
    attempts = list(instance.attempts.order_by("try_number"))
    gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in itertools.pairwise(attempts)]
    # Tries 1-3 and 4-6 each wait ~0.5 s, then ~1 s (+-10%); try 4 came from the retry.
    assert 0.45 <= gaps[3] < 0.8, gaps
    assert 0.9 <= gaps[4] < 1.6, gaps
