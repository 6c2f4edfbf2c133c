"""Task events' cost: the 100-task fan-out drained by a worker started with `-E` (task
events on, as the Procfile's worker runs for Flower) against the same worker without it,
one after the other in each repetition. Every other benchmark runs with events off.

The workload and its timing are `throughput`'s (all runs triggered first, then one
`celery worker -c 2` drains them; tasks/s from the database). While it drains, a Celery
event receiver in this process listens as Flower would, so the events are really sent and
really received; a worker started with `-E` whose task events never arrive is a problem.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from . import cpu, workloads
from .context import Context
from .processes import Worker, running
from .services import BenchEnv
from .stats import BenchResult
from .throughput import CONCURRENCY

NAME = "events"
TITLE = "Worker task events (-E) on vs off"
WIDTH = 100
EVENTS_FLAG = "-E"


class EventsWorker(Worker):
    """The bench's worker, with task events on (`-E`, the Procfile's) or surely off."""

    def __init__(self, env: BenchEnv, concurrency: int, events: bool) -> None:
        super().__init__(env, concurrency, name="events-on" if events else "events-off")
        self.events = events
        if events:
            self.command = [*self.command, EVENTS_FLAG]
        # Off means off, whatever this shell's CELERY_WORKER_SEND_TASK_EVENTS says.
        self.env = {**self.env, "CELERY_WORKER_SEND_TASK_EVENTS": "true" if events else "false"}

    def _ready(self) -> bool:
        if not super()._ready():
            return False
        banner = "task events: ON" if self.events else "task events: OFF"
        if banner not in self.log.read_text(errors="replace"):
            raise RuntimeError(f"{self.name}: its banner does not say {banner!r}:\n{self.tail()}")
        return True


class EventListener:
    """Counts the Celery events on the bench's broker, by type, in a thread of this
    process: a stand-in for Flower."""

    def __init__(self) -> None:
        from flowforge.celery import app

        self.counts: Counter[str] = Counter()
        self._drains = 0
        listener = self

        class Receiver(app.events.Receiver):
            def on_iteration(self) -> None:
                listener._drains += 1  # one more wait for messages: subscribed by now

        self._receiver = Receiver(app.connection_for_read(), handlers={"*": self._count})
        self._thread = threading.Thread(target=self._listen, name="event-listener", daemon=True)

    def _count(self, event: dict) -> None:
        self.counts[event["type"]] += 1

    def _listen(self) -> None:
        self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> EventListener:
        self._thread.start()
        deadline = time.monotonic() + 30
        while self._drains < 2:  # the first wait for messages has returned: listening
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the event listener did not start")
            time.sleep(0.05)
        return self

    def settle(self, expected_succeeded: int, timeout: float = 10) -> None:
        """Give events still on their way (the last tasks') time to arrive."""
        deadline = time.monotonic() + timeout
        while self.counts["task-succeeded"] < expected_succeeded and time.monotonic() < deadline:
            time.sleep(0.1)

    def __exit__(self, *exc_info) -> None:
        self._receiver.should_stop = True
        self._thread.join(5)
        self._receiver.connection.release()


def rate(ctx: Context, dag, runs: int, events: bool) -> tuple[float, Counter[str], dict]:
    """`throughput.flowforge_rate` with the worker's task events on or off: tasks/s, the
    events received while it drained, the cores each group used."""
    run_ids = workloads.trigger_batch(dag, runs)
    total = workloads.task_window(run_ids).count
    timeout = workloads.timeout_for(total, per_task=0.1 / CONCURRENCY)
    with EventListener() as listener:
        worker = EventsWorker(ctx.env, CONCURRENCY, events).start()
        with running(worker):
            _, cores = cpu.measured(
                {"workers": worker.pids},
                lambda: workloads.wait_runs(run_ids, timeout, check=worker.check_alive),
            )
        if events:
            listener.settle(total)
    if failed := workloads.failed_runs(run_ids):
        raise RuntimeError(f"{failed} of {runs} runs did not succeed (events {events})")
    return workloads.task_window(run_ids).per_second, Counter(listener.counts), cores


def event_problems(events_on: Counter[str], events_off: Counter[str], tasks: int) -> list[str]:
    """What says that `-E` did not do what it should: every task's start and success
    received with it, no task event at all without it."""
    problems = []
    for kind in ("task-started", "task-succeeded"):
        if events_on[kind] < tasks:
            problems.append(f"with -E: {events_on[kind]} {kind} events for {tasks} tasks")
    if leaked := sum(n for kind, n in events_off.items() if kind.startswith("task-")):
        problems.append(f"without -E: {leaked} task events received")
    return problems


def run(ctx: Context) -> BenchResult:
    total = ctx.sizes.tasks
    width = min(WIDTH, total)
    runs = max(1, total // width)
    tasks = runs * width
    result = BenchResult(
        NAME,
        TITLE,
        f"{runs} runs of a {width}-task fan-out, drained by one `celery worker "
        f"-c {CONCURRENCY}` as in `throughput`: the worker started with `-E` (task events "
        "sent for every task, as the Procfile's worker runs for Flower) against the same "
        "worker without it, one after the other in each repetition. An event receiver in "
        "the bench process listens meanwhile, as Flower would.",
    )
    dag = workloads.submit(workloads.fan_out_spec("bench-events", width))
    for repetition in range(ctx.repeat):
        off, events_off, cores_off = rate(ctx, dag, runs, events=False)
        on, events_on, cores_on = rate(ctx, dag, runs, events=True)
        ctx.log(f"events #{repetition + 1}: with -E {on:.0f} tasks/s vs without {off:.0f}")
        result.figure(
            f"{runs} runs × {width}-task fan-out, worker with -E", "tasks/s", "without -E"
        ).add(on, off)
        result.details.setdefault("events received with -E", []).append(dict(events_on))
        result.details.setdefault("events received without -E", []).append(dict(events_off))
        result.details.setdefault("cores with -E", []).append(cores_on)
        result.details.setdefault("cores without -E", []).append(cores_off)
        result.problems += event_problems(events_on, events_off, tasks)
    last_on = result.details["events received with -E"][-1]
    result.notes.append(f"events received with -E (last repetition): {last_on}")
    result.notes.append(f"CPU with -E: {cpu.busiest(result.details['cores with -E'][-1])}")
    return result
