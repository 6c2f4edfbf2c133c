"""Run endpoints of /api/v1/: trigger, list, detail, tasks, logs, cancel, the DLQ list.
Repairs are in repair.py."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from dags.api import get_dag
from dags.api_fields import Conflict, Invalid

from .. import services
from ..models import DagRun, DeadLetter, TaskInstance
from ..states import RunState
from .lookups import get_instance, get_run
from .serializers import (
    AttemptSerializer,
    DeadLetterSerializer,
    RunCreateSerializer,
    RunDetailSerializer,
    RunSerializer,
    TaskInstanceSerializer,
    TriggerSerializer,
)

READ = "runs.view_dagrun"
TRIGGER = "runs.trigger_dagrun"


def idempotency_key(request, body: dict) -> str | None:
    key = request.headers.get("Idempotency-Key") or body.get("idempotency_key")
    if key and len(key) > 255:
        raise ValidationError("Idempotency-Key: at most 255 characters")
    return key


def trigger(request, dag, body: dict) -> Response:
    """Trigger and answer 201 with the run, or 200 with the first run for a repeated key."""
    try:
        run, created = services.trigger_once(
            dag,
            idempotency_key(request, body),
            params=body.get("params") or {},
            triggered_by=body.get("triggered_by") or "api",
        )
    except services.ParamsRefused as exc:
        raise Invalid({"params": exc.problems}, fields={"params": exc.problems}) from None
    except services.TriggerError as exc:
        raise ValidationError(str(exc)) from None
    code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return Response(RunDetailSerializer(get_run(run.id)).data, status=code)


class DagRuns(generics.ListAPIView):
    """GET: the DAG's runs, newest first. POST: trigger a run ({"params": {...}} optional)."""

    serializer_class = RunSerializer
    read_permission = READ
    write_permission = TRIGGER

    def get_queryset(self):
        dag = get_dag(self.kwargs["dag_id"])
        return (
            DagRun.objects.filter(dag=dag)
            .select_related("dag", "dag_version")
            .prefetch_related("repairs")
        )

    @extend_schema(
        request=TriggerSerializer, responses={201: RunDetailSerializer, 200: RunDetailSerializer}
    )
    def post(self, request, dag_id: str):
        body = TriggerSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return trigger(request, get_dag(dag_id), body.validated_data)


@extend_schema(
    parameters=[
        OpenApiParameter("dag_id", str, description="only runs of this DAG"),
        OpenApiParameter("state", str, enum=RunState.values, description="only runs in this state"),
    ]
)
class RunList(generics.ListAPIView):
    """GET: recent runs, newest first. POST: trigger a run of `dag_id`."""

    serializer_class = RunSerializer
    read_permission = READ
    write_permission = TRIGGER

    def get_queryset(self):
        runs = (
            DagRun.objects.select_related("dag", "dag_version")
            .prefetch_related("repairs")
            .order_by("-created_at")
        )
        if dag_id := self.request.query_params.get("dag_id"):
            runs = runs.filter(dag__dag_id=dag_id)
        if state := self.request.query_params.get("state"):
            if state not in RunState.values:
                raise ValidationError(
                    f"unknown state '{state}'; one of {', '.join(RunState.values)}"
                )
            runs = runs.filter(state=state)
        return runs

    @extend_schema(
        request=RunCreateSerializer, responses={201: RunDetailSerializer, 200: RunDetailSerializer}
    )
    def post(self, request):
        body = RunCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return trigger(request, get_dag(body.validated_data["dag_id"]), body.validated_data)


class RunDetail(APIView):
    read_permission = READ

    @extend_schema(responses=RunDetailSerializer)
    def get(self, request, run_id: str):
        return Response(RunDetailSerializer(get_run(run_id)).data)


class RunTasks(generics.ListAPIView):
    """GET: the run's task instances."""

    serializer_class = TaskInstanceSerializer
    read_permission = READ

    def get_queryset(self):
        return TaskInstance.objects.filter(run=get_run(self.kwargs["run_id"])).order_by("id")


class TaskLogs(APIView):
    """GET: every attempt of one task instance: output tails and errors."""

    read_permission = READ

    @extend_schema(responses=AttemptSerializer(many=True))
    def get(self, request, run_id: str, task_id: str):
        instance = get_instance(run_id, task_id)
        attempts = AttemptSerializer(instance.attempts.order_by("try_number"), many=True).data
        return Response(
            {
                "run_id": str(instance.run_id),
                "task_id": task_id,
                "state": instance.state,
                "attempts": attempts,
            }
        )


class RunCancel(APIView):
    read_permission = READ
    write_permission = "runs.cancel_dagrun"

    @extend_schema(request=None, responses=RunDetailSerializer)
    def post(self, request, run_id: str):
        try:
            run = services.cancel_run(get_run(run_id))
        except services.RunFinished as exc:
            raise Conflict(str(exc)) from None
        return Response(RunDetailSerializer(get_run(run.id)).data)


class DeadLetterList(generics.ListAPIView):
    serializer_class = DeadLetterSerializer
    read_permission = "runs.view_deadletter"
    queryset = DeadLetter.objects.order_by("-created_at", "-id")
