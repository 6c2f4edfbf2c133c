"""One-off jobs and inline workflows: ordinary runs of single-use DAGs the API builds.

They go through the same validation, engine, states and dead-letter queue as DAG runs.
"""

from __future__ import annotations

import re
import uuid

from django.db import IntegrityError, transaction

from dags.models import Dag
from dags.services import SpecError, create_adhoc_dag
from dags.spec import MAX_INTEGER

from .models import Job, Workflow
from .services import trigger_run

# Keys a job may give besides its type; they mean what they mean on a DAG task.
JOB_TASK_KEYS = {
    "command",
    "script",
    "callable",
    "method",
    "url",
    "headers",
    "body",
    "json",
    "expect_status",
    "timeout_secs",
    "timeout",
    "env",
    "queue",
    "retry_delay_secs",
    "retry_max_delay_secs",
    "backoff",
}
JOB_KEYS = JOB_TASK_KEYS | {"type", "name", "max_retries", "idempotency_key", "params"}


def _unique_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:16]}"


def job_document(data: dict) -> dict:
    """The one-task DAG behind a job. Raises SpecError naming the job's own fields."""
    unknown = sorted(set(data) - JOB_KEYS)
    if unknown:
        raise SpecError([f"job: unknown key '{key}'" for key in unknown])
    retries = data.get("max_retries", 0)
    if not (type(retries) is int and 0 <= retries <= MAX_INTEGER):
        raise SpecError(
            [f"job: 'max_retries' must be an integer from 0 to {MAX_INTEGER}, got {retries!r}"]
        )
    task = {key: data[key] for key in JOB_TASK_KEYS if key in data}
    task.update(id="job", type=data.get("type", "shell"), retries=retries)
    if "name" in data:
        task["name"] = data["name"]
    return {
        "id": _unique_id("job"),
        "name": data.get("name", "job"),
        "tasks": [task],
        "max_active_runs": 1,
        "params": data.get("params") or {},
    }


def submit_job(data: dict, idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Create and start a job; a repeated idempotency key returns the first job instead.

    Returns the job and whether this call created it. Raises SpecError on bad input.
    """
    key = idempotency_key or data.get("idempotency_key") or None
    if key is not None and not (isinstance(key, str) and len(key) <= 255):
        raise SpecError(["job: 'idempotency_key' must be a string of at most 255 characters"])
    if key:
        existing = Job.objects.filter(idempotency_key=key).select_related("run").first()
        if existing:
            return existing, False
    document = job_document(data)
    try:
        with transaction.atomic():
            dag = _job_dag(document)
            task = dag.current_version.dag_spec.task("job")
            run = trigger_run(dag, triggered_by="api")
            job = Job.objects.create(
                run=run,
                type=task.type,
                input=data,
                max_retries=task.retries,
                idempotency_key=key,
            )
    except IntegrityError:
        if not key:
            raise
        return Job.objects.select_related("run").get(idempotency_key=key), False
    return job, True


def _job_dag(document: dict) -> Dag:
    """The job's DAG; its problems are reported as the job's, not a task's or a DAG's."""
    try:
        return create_adhoc_dag(document, Dag.Kind.JOB)
    except SpecError as exc:
        prefixes = ("task 'job': ", "dag: ")
        raise SpecError(
            [
                next((f"job: {e[len(p) :]}" for p in prefixes if e.startswith(p)), e)
                for e in exc.errors
            ]
        ) from None


def slug(name):
    """A step name as a task id: 'Load to S3' -> 'load-to-s3' (non-strings left to validation)."""
    if not isinstance(name, str):
        return name
    return re.sub(r"[^a-z0-9_.-]+", "-", name.strip().lower()).strip("-") or name


def workflow_document(data: dict) -> dict:
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise SpecError(["workflow: 'steps' must be a non-empty list of steps"])
    tasks, previous = [], None
    for position, step in enumerate(steps, start=1):
        if not isinstance(step, dict):
            raise SpecError([f"workflow: step #{position} must be a mapping"])
        task = dict(step)
        task["id"] = step.get("id") or slug(step.get("name"))
        for key in ("depends_on", "dependencies"):
            if isinstance(task.get(key), list):
                task[key] = [slug(name) for name in task[key]]
        if "depends_on" not in task and "dependencies" not in task and previous:
            task["depends_on"] = [previous]  # steps run in order unless they say otherwise
        tasks.append(task)
        previous = task["id"]
    extra = sorted(set(data) - {"name", "steps", "description", "params"})
    if extra:
        raise SpecError([f"workflow: unknown key '{key}'" for key in extra])
    return {
        "id": _unique_id("workflow"),
        "name": data.get("name") or "workflow",
        "description": data.get("description", ""),
        "params": data.get("params") or {},
        "tasks": tasks,
    }


def submit_workflow(data: dict) -> Workflow:
    document = workflow_document(data)
    with transaction.atomic():
        dag = create_adhoc_dag(document, Dag.Kind.WORKFLOW)
        run = trigger_run(dag, triggered_by="api")
        return Workflow.objects.create(run=run, name=dag.name, input=data)
