"""Submitting DAGs: versions, identical resubmits, rejected files, the submit_dag command."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from dags.cron import CronSchedule
from dags.models import Dag, DagVersion
from dags.services import SpecError, submit_dag

pytestmark = pytest.mark.django_db

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
V1 = "id: pipe\nschedule: '@daily'\ntasks:\n  - {id: a, command: echo one}\n"
V2 = "id: pipe\nschedule: '30 2 * * *'\ntasks:\n  - {id: a, command: echo two}\n"


def test_new_dag_then_identical_then_changed():
    first = submit_dag(V1)
    assert (first.outcome, first.version.version) == ("created", 1)
    again = submit_dag(V1 + "# only a comment differs\n")
    assert (again.outcome, again.version.pk) == ("unchanged", first.version.pk)
    changed = submit_dag(V2)
    assert (changed.outcome, changed.version.version) == ("updated", 2)
    dag = Dag.objects.get(dag_id="pipe")
    assert dag.current_version == changed.version
    assert DagVersion.objects.filter(dag=dag).count() == 2
    assert DagVersion.objects.get(dag=dag, version=1).spec["tasks"][0]["command"] == "echo one"


def test_a_schedule_plans_the_next_run_and_follows_the_dag():
    before = timezone.now()
    submit_dag(V1)
    first = Dag.objects.get(dag_id="pipe").next_run_at
    assert first == CronSchedule("0 0 * * *").next_after(before)
    # Ticks are FlowForge's own: there is no per-DAG beat entry for Celery's crontab.
    assert not PeriodicTask.objects.filter(name__startswith="flowforge:").exists()
    submit_dag(V1.replace("echo one", "echo changed"))  # the same schedule keeps its plan
    assert Dag.objects.get(dag_id="pipe").next_run_at == first
    submit_dag(V2)
    assert Dag.objects.get(dag_id="pipe").next_run_at == CronSchedule("30 2 * * *").next_after(
        before
    )
    submit_dag("id: pipe\ntasks:\n  - {id: a, command: echo manual}\n")
    assert Dag.objects.get(dag_id="pipe").next_run_at is None


def test_rejected_file_changes_nothing():
    submit_dag(V1)
    with pytest.raises(SpecError) as caught:
        submit_dag("id: pipe\ntasks:\n  - {id: a, command: echo x, depend_on: [b]}\n")
    assert "did you mean 'depends_on'" in str(caught.value)
    dag = Dag.objects.get(dag_id="pipe")
    assert dag.current_version.version == 1
    assert DagVersion.objects.count() == 1


def test_submit_dag_command_takes_files_and_folders():
    out = StringIO()
    call_command("submit_dag", str(EXAMPLES), stdout=out)
    assert "etl-pipeline created (version 1)" in out.getvalue()
    assert "data-pipeline created (version 1)" in out.getvalue()
    out = StringIO()
    call_command("submit_dag", str(EXAMPLES / "etl-pipeline.yaml"), stdout=out)
    assert "etl-pipeline unchanged (version 1)" in out.getvalue()


def test_submit_dag_command_rejects_bad_files_with_reasons(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: loop\ntasks:\n  - {id: a, command: x, depends_on: [b]}\n"
        "  - {id: b, command: x, depends_on: [a]}\n"
    )
    err = StringIO()
    with pytest.raises(CommandError, match="1 of 1 DAG file"):
        call_command("submit_dag", str(bad), stderr=err)
    assert "cycle" in err.getvalue() and "a" in err.getvalue()
    assert not Dag.objects.filter(dag_id="loop").exists()
    with pytest.raises(CommandError, match="no such file"):
        call_command("submit_dag", str(tmp_path / "missing.yaml"))


def test_a_file_through_submit_dag_and_through_the_api_is_one_version(admin):
    """The CLI posts a file's text; submit_dag reads it from disk: the same DAG either way.
    A relative python script stays relative (workers resolve it in their DAGs folder)."""
    path = EXAMPLES / "data-pipeline.yaml"
    call_command("submit_dag", str(path), stdout=StringIO())
    answer = admin.post("/api/v1/dags", path.read_text(), content_type="application/yaml")
    assert (answer.status_code, answer.json()["outcome"], answer.json()["version"]) == (
        200,
        "unchanged",
        1,
    )
    spec = Dag.objects.get(dag_id="data-pipeline").current_version.spec
    assert [t["script"] for t in spec["tasks"] if t["type"] == "python"] == ["transform.py"]


def test_submitting_a_deactivated_dag_again_brings_it_back():
    from dags.services import deactivate
    from runs.scheduler import schedule_due
    from runs.services import TriggerError, trigger_run

    first = submit_dag(V1)
    due = Dag.objects.get(dag_id="pipe").next_run_at
    deactivate(first.dag)
    with pytest.raises(TriggerError, match="deactivated; resubmit it"):
        trigger_run("pipe")
    assert schedule_due(now=due).created == 0  # a deactivated DAG's ticks get no runs
    again = submit_dag(V1)
    assert (again.outcome, again.version.pk) == ("reactivated", first.version.pk)
    assert Dag.objects.get(dag_id="pipe").is_active
    assert schedule_due(now=due).created == 1  # its plan kept: the tick missed meanwhile
    assert trigger_run("pipe").dag_version_id == first.version.pk


def test_a_task_naming_an_unknown_pool_is_refused_and_changes_nothing():
    from dags.models import Pool

    text = "id: pooled\ntasks:\n  - {id: a, command: 'true', pool: warehouse}\n"
    with pytest.raises(SpecError) as caught:
        submit_dag(text)
    assert caught.value.errors == [
        "task 'a': 'pool' names unknown pool 'warehouse'; create it first "
        "(POST /api/v1/pools, manage.py pool or the admin)"
    ]
    assert not Dag.objects.filter(dag_id="pooled").exists()
    Pool.objects.create(name="warehouse", slots=2)
    assert submit_dag(text).dag.dag_spec.task("a").pool == "warehouse"
    with pytest.raises(SpecError, match="'pool' 'Ware House' must match"):
        submit_dag(text.replace("warehouse", "Ware House"))
