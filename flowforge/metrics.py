"""/metrics: Prometheus text format, django-prometheus' request metrics plus FlowForge's
own gauges, read from the database at scrape time."""

from prometheus_client.core import REGISTRY, GaugeMetricFamily


class FlowForgeCollector:
    def describe(self):
        # Names only: registering must not query the database (it may not exist yet).
        yield GaugeMetricFamily("flowforge_runs", "Runs by state", labels=["state"])
        yield GaugeMetricFamily(
            "flowforge_task_instances", "Task instances by state", labels=["state"]
        )
        yield GaugeMetricFamily("flowforge_dead_letters", "Dead letters not yet retried")
        yield GaugeMetricFamily("flowforge_workers_alive", "Workers with a recent heartbeat")

    def collect(self):
        from runs.models import DagRun, DeadLetter, TaskInstance
        from runs.states import RunState, TaskState
        from runs.status import alive_workers, by_state

        runs = GaugeMetricFamily("flowforge_runs", "Runs by state", labels=["state"])
        for state, n in by_state(DagRun, RunState.values).items():
            runs.add_metric([state], n)
        yield runs
        tasks = GaugeMetricFamily(
            "flowforge_task_instances", "Task instances by state", labels=["state"]
        )
        for state, n in by_state(TaskInstance, TaskState.values).items():
            tasks.add_metric([state], n)
        yield tasks
        yield GaugeMetricFamily(
            "flowforge_dead_letters",
            "Dead letters not yet retried",
            value=DeadLetter.objects.filter(retried_at=None).count(),
        )
        yield GaugeMetricFamily(
            "flowforge_workers_alive",
            "Workers with a recent heartbeat",
            value=alive_workers().count(),
        )


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(FlowForgeCollector())
        _registered = True
