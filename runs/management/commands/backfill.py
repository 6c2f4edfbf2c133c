"""manage.py backfill DAG_ID --start ISO --end ISO: a run for every tick in the window."""

from django.core.management.base import BaseCommand, CommandError

from runs import scheduler
from runs.services import TriggerError, runnable_dag


class Command(BaseCommand):
    help = (
        "Create a run (triggered_by: backfill) for every tick of a DAG's schedule in "
        "[start, end] that has none; ticks that already have one are listed as skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("dag_id")
        parser.add_argument("--start", required=True, help="ISO 8601 date or date-time")
        parser.add_argument("--end", required=True, help="ISO 8601 date or date-time")

    def handle(self, dag_id: str, start: str, end: str, **options):
        try:
            dag = runnable_dag(dag_id)
            done = scheduler.backfill(
                dag,
                scheduler.window_edge(start, dag.timezone, "start"),
                scheduler.window_edge(end, dag.timezone, "end"),
            )
        except (scheduler.BackfillError, TriggerError) as exc:
            raise CommandError(str(exc)) from None
        for run in done.created:
            self.stdout.write(f"created run {run.id} for {run.logical_date.isoformat()}")
        for tick in done.skipped:
            self.stdout.write(f"skipped {tick.isoformat()}: it already has a run")
        self.stdout.write(f"{len(done.created)} created, {len(done.skipped)} skipped")
