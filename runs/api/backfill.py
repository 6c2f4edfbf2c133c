"""POST /api/v1/dags/{dag_id}/backfill (CONTRACT section 7)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from dags.api import get_dag
from dags.api_fields import StrictCharField

from .. import scheduler, services
from ..models import DagRun
from .serializers import RunSerializer


class BackfillSerializer(serializers.Serializer):
    start = StrictCharField(help_text="ISO 8601 date or date-time; naive: in the DAG's zone")
    end = StrictCharField(help_text="ISO 8601 date or date-time; the window is [start, end]")


class DagBackfill(APIView):
    """POST: a run for every tick of the DAG's schedule in [start, end] that has none."""

    read_permission = "runs.view_dagrun"
    write_permission = "runs.trigger_dagrun"

    @extend_schema(
        request=BackfillSerializer,
        responses={
            201: inline_serializer(
                "BackfillResult",
                {
                    "created": RunSerializer(many=True),
                    "skipped": serializers.ListField(child=serializers.DateTimeField()),
                },
            ),
            400: OpenApiResponse(description="a bad window; nothing was created"),
        },
    )
    def post(self, request, dag_id: str):
        dag = get_dag(dag_id)
        body = BackfillSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            start = scheduler.window_edge(body.validated_data["start"], dag.timezone, "start")
            end = scheduler.window_edge(body.validated_data["end"], dag.timezone, "end")
            done = scheduler.backfill(dag, start, end)
        except (scheduler.BackfillError, services.TriggerError) as exc:
            raise ValidationError(str(exc)) from None
        runs = DagRun.objects.filter(id__in=[run.id for run in done.created])
        runs = (
            runs.select_related("dag", "dag_version")
            .prefetch_related("repairs")
            .order_by("logical_date")
        )
        return Response(
            {
                "created": RunSerializer(runs, many=True).data,
                # As the runs' logical dates are shown: UTC.
                "skipped": [serializers.DateTimeField().to_representation(t) for t in done.skipped],
            },
            status=status.HTTP_201_CREATED if done.created else status.HTTP_200_OK,
        )
