"""Repair endpoints of /api/v1/ (CONTRACT section 9): clear, mark, rerun, retry, and the
dead-letter retry. Each answers with the run as it is after the repair."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from dags.api_fields import Conflict, StrictBooleanField, WholeNumberField

from .. import repair
from ..models import DagRun, DeadLetter, TaskInstance
from .lookups import get_instance, get_run, int_id
from .serializers import RunDetailSerializer

READ = "runs.view_dagrun"
REPAIR = "runs.retry_taskinstance"


class ClearSerializer(serializers.Serializer):
    downstream = StrictBooleanField(
        required=False, default=True, help_text="clear every task downstream of it too"
    )
    try_number = WholeNumberField(
        required=False,
        min_value=0,
        help_text="the try number you saw; if the task has moved on since, 409",
    )


class MarkSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=list(repair.MARKABLE))
    try_number = WholeNumberField(
        required=False,
        min_value=0,
        help_text="the try number you saw; if the task has moved on since, 409",
    )


def _user(request) -> str:
    return request.user.get_username() if request.user.is_authenticated else ""


def _answer(run: DagRun) -> Response:
    return Response(RunDetailSerializer(get_run(run.id)).data)


def _refused(exc: repair.RepairRefused) -> Conflict:
    """A 409; a conflict also names the task's state and try number now."""
    if isinstance(exc, repair.RepairConflict):
        fields = {"task_id": exc.task_id, "state": exc.state, "try_number": exc.try_number}
        return Conflict(str(exc), fields=fields)
    return Conflict(str(exc))


def _repaired(call, *args, **kwargs) -> Response:
    try:
        return _answer(call(*args, **kwargs))
    except repair.RepairRefused as exc:
        raise _refused(exc) from None
    except (DagRun.DoesNotExist, TaskInstance.DoesNotExist) as exc:
        raise NotFound(str(exc) or "no such run") from None


class TaskClear(APIView):
    """POST: run the task (and, unless `downstream` is false, its downstream) again."""

    read_permission = READ
    write_permission = REPAIR

    @extend_schema(request=ClearSerializer, responses=RunDetailSerializer)
    def post(self, request, run_id: str, task_id: str):
        instance = get_instance(run_id, task_id)
        body = ClearSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return _repaired(
            repair.clear_task,
            instance.run_id,
            task_id,
            downstream=body.validated_data["downstream"],
            by=_user(request),
            seen=repair.Seen.of(instance, body.validated_data.get("try_number")),
        )


class TaskMark(APIView):
    """POST: set the task's outcome by hand; its downstream follows its trigger rules."""

    read_permission = READ
    write_permission = REPAIR

    @extend_schema(request=MarkSerializer, responses=RunDetailSerializer)
    def post(self, request, run_id: str, task_id: str):
        instance = get_instance(run_id, task_id)
        body = MarkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return _repaired(
            repair.mark_task,
            instance.run_id,
            task_id,
            body.validated_data["state"],
            by=_user(request),
            seen=repair.Seen.of(instance, body.validated_data.get("try_number")),
        )


class RunRerun(APIView):
    """POST: run a finished run's failed, upstream_failed and cancelled tasks again."""

    read_permission = READ
    write_permission = REPAIR

    @extend_schema(request=None, responses=RunDetailSerializer)
    def post(self, request, run_id: str):
        return _repaired(repair.rerun, get_run(run_id).id, by=_user(request))


class TaskRetry(APIView):
    """POST: clear a failed task and its downstream tasks and run them again."""

    read_permission = READ
    write_permission = REPAIR

    @extend_schema(request=None, responses=RunDetailSerializer)
    def post(self, request, run_id: str, task_id: str):
        instance = get_instance(run_id, task_id)
        return _repaired(repair.retry_task, instance.run_id, task_id, by=_user(request))


class DeadLetterRetry(APIView):
    """POST: run a dead-lettered task again with fresh tries, resuming its run."""

    read_permission = "runs.view_deadletter"
    write_permission = REPAIR

    @extend_schema(request=None, responses=RunDetailSerializer)
    def post(self, request, pk: str):
        entry = DeadLetter.objects.filter(pk=int_id(pk)).first()
        if entry is None:
            raise NotFound(f"no dead-letter entry with id '{pk}'")
        return _repaired(repair.retry_dead_letter, entry, by=_user(request))
