"""Jobs (one-off tasks) and workflows (inline step lists) of /api/v1/."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from dags.services import SpecError

from ..adhoc import submit_job, submit_workflow
from ..models import Job, Workflow
from ..states import RunState
from .lookups import int_id
from .serializers import JobSerializer, WorkflowSerializer

SUBMIT = "dags.submit_dag"  # a job or workflow names its own commands, like a DAG file


class JobInputSerializer(serializers.Serializer):
    type = serializers.ChoiceField(["shell", "http", "python"], default="shell")
    command = serializers.CharField(required=False)
    url = serializers.CharField(required=False)
    callable = serializers.CharField(required=False)
    max_retries = serializers.IntegerField(min_value=0, required=False, default=0)
    idempotency_key = serializers.CharField(required=False, max_length=255)


class WorkflowInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    steps = serializers.ListField(child=serializers.DictField(), min_length=1)


def require_object(data) -> dict:
    if not isinstance(data, dict):
        raise ValidationError("the body must be a JSON object")
    return data


@extend_schema(parameters=[OpenApiParameter("status", str, enum=RunState.values)])
class JobList(generics.ListAPIView):
    """GET: jobs, newest first (filter `status`). POST: submit a one-off job."""

    serializer_class = JobSerializer
    read_permission = "runs.view_job"
    write_permission = SUBMIT

    def get_queryset(self):
        jobs = Job.objects.select_related("run").prefetch_related("run__task_instances")
        if wanted := self.request.query_params.get("status"):
            if wanted not in RunState.values:
                raise ValidationError(
                    f"unknown status '{wanted}'; one of {', '.join(RunState.values)}"
                )
            jobs = jobs.filter(run__state=wanted)
        return jobs

    @extend_schema(request=JobInputSerializer, responses={201: JobSerializer, 200: JobSerializer})
    def post(self, request):
        data = require_object(request.data)
        try:
            job, created = submit_job(data, request.headers.get("Idempotency-Key"))
        except SpecError as exc:
            raise ValidationError(exc.errors) from None
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(JobSerializer(job).data, status=code)


class JobDetail(APIView):
    read_permission = "runs.view_job"

    @extend_schema(responses=JobSerializer)
    def get(self, request, pk: str):
        job = Job.objects.select_related("run").filter(pk=int_id(pk)).first()
        if job is None:
            raise NotFound(f"no job with id '{pk}'")
        return Response(JobSerializer(job).data)


class WorkflowCreate(APIView):
    read_permission = "runs.view_workflow"
    write_permission = SUBMIT

    @extend_schema(request=WorkflowInputSerializer, responses={201: WorkflowSerializer})
    def post(self, request):
        try:
            workflow = submit_workflow(require_object(request.data))
        except SpecError as exc:
            raise ValidationError(exc.errors) from None
        return Response(WorkflowSerializer(workflow).data, status=status.HTTP_201_CREATED)


class WorkflowDetail(APIView):
    read_permission = "runs.view_workflow"

    @extend_schema(responses=WorkflowSerializer)
    def get(self, request, pk: str):
        workflow = Workflow.objects.select_related("run").filter(pk=int_id(pk)).first()
        if workflow is None:
            raise NotFound(f"no workflow with id '{pk}'")
        return Response(WorkflowSerializer(workflow).data)
