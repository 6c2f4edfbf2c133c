"""manage.py trigger_dag DAG_ID [--param k=v ...]: start a run now."""

import json

from django.core.management.base import BaseCommand, CommandError

from dags import boundary
from runs.services import TriggerError, trigger_run


def parse_param(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--param {text!r}: expected KEY=VALUE")
    try:
        boundary.check_json_depth(raw.encode("utf-8", "surrogatepass"))
        value = json.loads(raw)  # numbers, booleans, lists, objects
    except boundary.LimitExceeded as exc:
        raise CommandError(f"--param {key}: {exc}") from None
    except json.JSONDecodeError:
        value = raw
    return key, value


class Command(BaseCommand):
    help = "Trigger a run of a DAG."

    def add_arguments(self, parser):
        parser.add_argument("dag_id")
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="run parameter (value read as JSON when it parses, else as text)",
        )
        parser.add_argument("--triggered-by", default="cli")

    def handle(self, dag_id: str, param: list[str], triggered_by: str, **options):
        params = dict(parse_param(p) for p in param)
        try:
            run = trigger_run(dag_id, params=params, triggered_by=triggered_by)
        except TriggerError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"triggered {dag_id}: run {run.id} ({run.state})")
