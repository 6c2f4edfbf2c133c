"""max_active_tasks and pools with a real worker (CONTRACT section 7): at most that many
attempts run at once, tasks waiting for a slot start as slots free, and every way an
attempt ends gives its slots back."""

from __future__ import annotations

from pathlib import Path

import pytest

from dags.models import Pool
from runs.models import DagRun, RunSlots, TaskInstance
from runs.services import cancel_run, trigger_run
from testkit.engine import submit, wait_for, wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)


def timed(log: Path, name: str, secs: float = 0.4) -> str:
    """A shell command that records when it starts and ends (the process's own clock)."""
    return (
        f'echo \\"{name}.$FLOWFORGE_RUN_ID start $(date +%s.%N)\\" >> {log}; sleep {secs};'
        f' echo \\"{name}.$FLOWFORGE_RUN_ID end $(date +%s.%N)\\" >> {log}'
    )


def fan(dag_id: str, log: Path, width: int, extra: str = "", task_keys: str = "") -> str:
    lines = [f"id: {dag_id}", extra, "tasks:"]
    for n in range(width):
        lines += [f"  - id: t{n}", f'    command: "{timed(log, f"{dag_id}.t{n}")}"']
        if task_keys:
            lines.append(f"    {task_keys}")
    return "\n".join(lines) + "\n"


def intervals(log: Path, prefix: str = "") -> list[tuple[float, float]]:
    starts, ends = {}, {}
    for line in log.read_text().splitlines():
        name, what, when = line.split()
        if name.startswith(prefix):
            (starts if what == "start" else ends)[name] = float(when)
    return sorted((starts[name], ends[name]) for name in starts)


def overlaps(spans: list[tuple[float, float]]) -> int:
    """How many spans start before the one before them ended."""
    return sum(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def test_max_active_tasks_one_runs_a_run_one_task_at_a_time(worker, tmp_path):
    log = tmp_path / "times"
    limited = wait_for_run(trigger_run(submit(fan("limited", log, 4, "max_active_tasks: 1"))).id)
    control = wait_for_run(trigger_run(submit(fan("control", log, 4))).id)

    assert (limited.state, control.state) == ("success", "success")
    assert overlaps(intervals(log, "limited.")) == 0
    assert overlaps(intervals(log, "control.")) > 0  # the worker runs 2 at once otherwise
    assert RunSlots.objects.get(run=limited).running == 0


def test_a_one_slot_pool_is_shared_across_runs_and_dags(worker, tmp_path):
    Pool.objects.create(name="warehouse", slots=1)
    log = tmp_path / "times"
    first = submit(fan("first", log, 2, task_keys="pool: warehouse"))
    second = submit(fan("second", log, 2, task_keys="pool: warehouse"))
    runs = [trigger_run(first), trigger_run(second), trigger_run(first)]
    finished = [wait_for_run(run.id, timeout=90) for run in runs]

    assert {run.state for run in finished} == {"success"}
    assert len(intervals(log)) == 6
    assert overlaps(intervals(log)) == 0
    assert Pool.objects.get(name="warehouse").running == 0
    assert not TaskInstance.objects.filter(waiting_slot=True).exists()


def test_cancel_gives_the_pool_slot_back_and_wakes_the_waiting_task(worker, tmp_path):
    Pool.objects.create(name="gate", slots=1)
    log = tmp_path / "times"
    slow = submit(fan("slow", log, 1, task_keys="pool: gate").replace("sleep 0.4", "sleep 60"))
    quick = submit(fan("quick", log, 1, task_keys="pool: gate"))
    hog = trigger_run(slow)
    wait_for(lambda: Pool.objects.get(name="gate").running == 1, 30, message="the slot taken")
    waiting = trigger_run(quick)
    wait_for(
        lambda: TaskInstance.objects.filter(run=waiting, waiting_slot=True).exists(),
        30,
        message="the quick task to wait for the slot",
    )
    cancel_run(DagRun.objects.get(id=hog.id))
    assert wait_for_run(waiting.id, timeout=30).state == "success"
    assert Pool.objects.get(name="gate").running == 0
    # The cancelled sleep is stopped at its next lease renewal and recorded; wait for
    # that, so that nothing of this test still writes while the next one starts.
    hogged = TaskInstance.objects.get(run=hog)
    wait_for(lambda: hogged.attempts.exists(), 30, message="the stopped attempt recorded")
