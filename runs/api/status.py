"""/api/v1/status and /api/v1/workers."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import WorkerHeartbeat
from ..status import alive_workers, system_status
from .serializers import WorkerSerializer


class Status(APIView):
    """GET: counts of DAGs, runs and tasks by state, queue depths, workers alive."""

    read_permission = "runs.view_dagrun"

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(system_status())


@extend_schema(parameters=[OpenApiParameter("all", bool, description="include workers gone quiet")])
class WorkerList(generics.ListAPIView):
    """GET: workers seen by heartbeat: hostname, queues, last heartbeat, running tasks."""

    serializer_class = WorkerSerializer
    read_permission = "runs.view_workerheartbeat"

    def get_queryset(self):
        if self.request.query_params.get("all") in ("1", "true", "yes"):
            return WorkerHeartbeat.objects.all()
        return alive_workers()
