"""Submitting, pausing and deactivating DAGs: the only writers of DAG rows."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from django.db import IntegrityError, transaction

from . import schedules
from .dag_spec import DagSpec
from .models import Dag, DagVersion, Pool
from .spec import SpecError, parse_dag, parse_document

__all__ = ["SpecError", "SubmitResult", "submit_dag", "submit_file", "dag_files"]


@dataclass(frozen=True)
class SubmitResult:
    dag: Dag
    version: DagVersion
    # "created", "updated" (a new version), "reactivated" (the same content, submitted again
    # after a deactivation) or "unchanged"
    outcome: str


def content_hash(stored_spec: dict) -> str:
    """Of a spec as stored (DagSpec.to_json()): the same content, the same hash."""
    canonical = json.dumps(stored_spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_dag(text: str) -> SubmitResult:
    """Validate YAML and store it: a new DAG, a new version of one, or nothing if identical.

    Raises SpecError (with every problem) before anything is written.
    """
    spec = parse_dag(text)
    _check_pools(spec)
    stored_spec = spec.to_json()
    digest = content_hash(stored_spec)
    with transaction.atomic():
        dag, created = _locked_dag(spec)
        current = dag.current_version
        if current is not None and current.content_hash == digest:
            if dag.is_active:
                return SubmitResult(dag, current, "unchanged")
            _activate(dag, previous=current.dag_spec)
            return SubmitResult(dag, current, "reactivated")
        number = (current.version + 1) if current else 1
        version = DagVersion.objects.create(
            dag=dag, version=number, spec=stored_spec, source=text, content_hash=digest
        )
        dag.current_version = version
        dag.name = spec.name
        dag.description = spec.description
        dag.save(update_fields=["current_version", "name", "description", "updated_at"])
        _activate(dag, previous=current.dag_spec if current else None)
    return SubmitResult(dag, version, "created" if created else "updated")


def _check_pools(spec: DagSpec) -> None:
    """An unknown pool is a submit error (CONTRACT section 7), naming each task."""
    named = {task.pool for task in spec.tasks if task.pool}
    known = set(Pool.objects.filter(name__in=named).values_list("name", flat=True))
    errors = [
        f"task '{task.id}': 'pool' names unknown pool '{task.pool}'; create it first "
        "(POST /api/v1/pools, manage.py pool or the admin)"
        for task in spec.tasks
        if task.pool and task.pool not in known
    ]
    if errors:
        raise SpecError(errors)


def _activate(dag: Dag, previous: DagSpec | None) -> None:
    """A submitted DAG is active (a deactivated one comes back) and on its schedule;
    `previous` is the spec it had before."""
    if not dag.is_active:
        dag.is_active = True
        dag.save(update_fields=["is_active", "updated_at"])
    schedules.plan(dag, previous)


def _locked_dag(spec: DagSpec) -> tuple[Dag, bool]:
    """The Dag row for this spec, locked for the rest of the transaction."""
    defaults = {"name": spec.name, "description": spec.description}
    try:
        with transaction.atomic():
            _, created = Dag.objects.get_or_create(dag_id=spec.id, defaults=defaults)
    except IntegrityError:  # a concurrent submit created it first
        created = False
    dag = (
        Dag.objects.select_for_update(of=("self",))
        .select_related("current_version")
        .get(dag_id=spec.id)
    )
    return dag, created


def dag_files(path: Path) -> list[Path]:
    """The DAG files a path names: the file itself, or every *.yaml/*.yml in a folder."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml"} and p.is_file())
    return [path]


def submit_file(path: Path) -> SubmitResult:
    """submit_dag of a file's text: the same file sent through the API is the same version."""
    return submit_dag(path.read_text())


def set_paused(dag: Dag, paused: bool) -> Dag:
    with transaction.atomic():
        Dag.objects.filter(pk=dag.pk).update(is_paused=paused)
        dag.refresh_from_db()
    return dag


def deactivate(dag: Dag) -> Dag:
    with transaction.atomic():
        Dag.objects.filter(pk=dag.pk).update(is_active=False)
        dag.refresh_from_db()
    return dag


def create_adhoc_dag(document: dict, kind: str) -> Dag:
    """A single-use DAG behind a job or an inline workflow (validated like any DAG file).

    Raises SpecError before anything is written.
    """
    spec = parse_document(document)
    _check_pools(spec)
    stored_spec = spec.to_json()
    dag = Dag.objects.create(
        dag_id=spec.id, kind=kind, name=spec.name, description=spec.description
    )
    dag.current_version = DagVersion.objects.create(
        dag=dag,
        version=1,
        spec=stored_spec,
        source=json.dumps(document),
        content_hash=content_hash(stored_spec),
    )
    dag.save(update_fields=["current_version"])
    return dag
