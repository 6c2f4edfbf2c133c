"""The DAG endpoints of /api/v1/: list, submit, detail, deactivate, pause, trigger."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services
from .api_fields import StrictCharField
from .models import Dag

READ = "dags.view_dag"


class DagTaskSerializer(serializers.Serializer):
    task_id = serializers.CharField(source="id")
    name = serializers.CharField()
    type = serializers.CharField()
    depends_on = serializers.ListField(child=serializers.CharField())
    trigger_rule = serializers.CharField()
    retries = serializers.IntegerField()
    timeout_secs = serializers.FloatField()
    queue = serializers.CharField()


class DagSerializer(serializers.ModelSerializer):
    schedule = serializers.CharField(allow_null=True, help_text="as written in the DAG file")
    cron = serializers.SerializerMethodField(help_text="the schedule as a 5-field cron line")
    timezone = serializers.CharField()
    version = serializers.IntegerField(source="current_version.version", allow_null=True)
    next_run_at = serializers.SerializerMethodField()
    tasks = serializers.SerializerMethodField()

    class Meta:
        model = Dag
        fields = [
            "dag_id",
            "name",
            "description",
            "schedule",
            "cron",
            "timezone",
            "version",
            "is_paused",
            "is_active",
            "next_run_at",
            "tasks",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_cron(self, dag: Dag) -> str | None:
        return dag.cron

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_run_at(self, dag: Dag) -> str | None:
        # The tick whose run the scheduler creates next (runs/scheduler.py); none while
        # paused or deactivated, or past the schedule's end_date.
        if dag.is_paused or not dag.is_active or dag.next_run_at is None:
            return None
        return dag.next_run_at.astimezone(ZoneInfo(dag.timezone)).isoformat()

    @extend_schema_field(DagTaskSerializer(many=True))
    def get_tasks(self, dag: Dag) -> list[dict]:
        tasks = dag.dag_spec.tasks if dag.dag_spec else ()
        return DagTaskSerializer(tasks, many=True).data


class SubmitSerializer(serializers.Serializer):
    yaml = StrictCharField(trim_whitespace=False, help_text="the DAG file's text")


def get_dag(dag_id: str) -> Dag:
    try:
        return Dag.objects.select_related("current_version").get(dag_id=dag_id, kind=Dag.Kind.DAG)
    except Dag.DoesNotExist:
        raise NotFound(f"no DAG with id '{dag_id}'") from None


class DagList(generics.ListAPIView):
    """GET: the DAGs, paginated. POST: submit a DAG file (JSON {"yaml": ...} or raw YAML)."""

    serializer_class = DagSerializer
    read_permission = READ
    write_permission = "dags.submit_dag"
    queryset = Dag.objects.filter(kind=Dag.Kind.DAG).select_related("current_version")

    @extend_schema(
        request=SubmitSerializer,
        responses={
            201: DagSerializer,
            200: DagSerializer,
            400: OpenApiResponse(description="rejected"),
        },
    )
    def post(self, request):
        body = SubmitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = services.submit_dag(body.validated_data["yaml"])
        except services.SpecError as exc:
            raise ValidationError(exc.errors) from None
        code = status.HTTP_201_CREATED if result.outcome == "created" else status.HTTP_200_OK
        data = DagSerializer(result.dag).data
        return Response({**data, "outcome": result.outcome}, status=code)


class DagDetail(APIView):
    """GET: one DAG with its tasks. DELETE: deactivate it (no new runs, history kept)."""

    read_permission = READ
    write_permission = "dags.submit_dag"

    @extend_schema(responses=DagSerializer)
    def get(self, request, dag_id: str):
        return Response(DagSerializer(get_dag(dag_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, dag_id: str):
        services.deactivate(get_dag(dag_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DagPause(APIView):
    """POST: stop (pause) or resume (unpause) the DAG's scheduled runs."""

    read_permission = READ
    write_permission = "dags.pause_dag"
    paused = True

    @extend_schema(request=None, responses=DagSerializer)
    def post(self, request, dag_id: str):
        dag = services.set_paused(get_dag(dag_id), self.paused)
        return Response(DagSerializer(dag).data)
