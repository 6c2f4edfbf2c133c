"""How runs, task instances, attempts, dead letters, jobs and workflows look in the API."""

import re

from rest_framework import serializers

from dags.api_fields import StrictCharField

from ..models import (
    DagRun,
    DeadLetter,
    Job,
    Repair,
    TaskAttempt,
    TaskInstance,
    WorkerHeartbeat,
    Workflow,
)


class TaskInstanceSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(allow_null=True, read_only=True)

    class Meta:
        model = TaskInstance
        fields = [
            "task_id",
            "state",
            "try_number",
            "max_tries",
            "queued_at",
            "started_at",
            "finished_at",
            "duration",
            "next_retry_at",
            "worker",
            "exit_code",
            "error",
            "output",
        ]


class RepairSerializer(serializers.ModelSerializer):
    """One entry of a run's audit trail of repairs (CONTRACT section 9)."""

    task_id = serializers.CharField(allow_null=True, read_only=True)

    class Meta:
        model = Repair
        fields = ["id", "action", "task_id", "details", "tasks", "by", "at"]

    def to_representation(self, instance: Repair) -> dict:
        data = super().to_representation(instance)
        data["task_id"] = data["task_id"] or None  # a rerun names no task
        return data


class RunSerializer(serializers.ModelSerializer):
    run_id = serializers.UUIDField(source="id", read_only=True)
    dag_id = serializers.CharField(source="dag.dag_id", read_only=True)
    version = serializers.IntegerField(source="dag_version.version", read_only=True)
    repairs = RepairSerializer(many=True, read_only=True)

    class Meta:
        model = DagRun
        fields = [
            "run_id",
            "dag_id",
            "version",
            "state",
            "triggered_by",
            "logical_date",
            "params",
            "created_at",
            "started_at",
            "finished_at",
            "repairs",
        ]


class RunDetailSerializer(RunSerializer):
    tasks = TaskInstanceSerializer(source="task_instances", many=True, read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "tasks"]


class TriggerSerializer(serializers.Serializer):
    params = serializers.DictField(required=False, default=dict)
    triggered_by = StrictCharField(required=False, default="api", max_length=32)
    idempotency_key = StrictCharField(required=False, max_length=255)

    def validate_triggered_by(self, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", value):
            raise serializers.ValidationError(
                "lower-case letters, digits, '-' and '_', starting with a letter (e.g. 'cli')"
            )
        return value


class RunCreateSerializer(TriggerSerializer):
    dag_id = StrictCharField(max_length=100)


class AttemptSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(allow_null=True, read_only=True)

    class Meta:
        model = TaskAttempt
        fields = [
            "try_number",
            "state",
            "worker",
            "started_at",
            "finished_at",
            "duration",
            "exit_code",
            "stdout",
            "stderr",
            "error",
        ]


class DeadLetterSerializer(serializers.ModelSerializer):
    run_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = DeadLetter
        fields = [
            "id",
            "run_id",
            "dag_id",
            "task_id",
            "attempts",
            "error",
            "created_at",
            "retried_at",
            "retried_by",
        ]


class JobSerializer(serializers.ModelSerializer):
    run_id = serializers.UUIDField(read_only=True)
    status = serializers.CharField(source="run.state", read_only=True)
    attempts = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "run_id",
            "status",
            "type",
            "input",
            "max_retries",
            "idempotency_key",
            "attempts",
            "error",
            "created_at",
        ]

    def _instance(self, job: Job) -> TaskInstance | None:
        instances = list(job.run.task_instances.all())
        return instances[0] if instances else None

    def get_attempts(self, job: Job) -> int:
        instance = self._instance(job)
        return instance.try_number if instance else 0

    def get_error(self, job: Job) -> str:
        instance = self._instance(job)
        return instance.error if instance else ""


class WorkflowSerializer(serializers.ModelSerializer):
    run_id = serializers.UUIDField(read_only=True)
    status = serializers.CharField(source="run.state", read_only=True)
    tasks = TaskInstanceSerializer(source="run.task_instances", many=True, read_only=True)

    class Meta:
        model = Workflow
        fields = ["id", "run_id", "status", "name", "input", "tasks", "created_at"]


class WorkerSerializer(serializers.ModelSerializer):
    running_tasks = serializers.ListField(source="running", child=serializers.IntegerField())

    class Meta:
        model = WorkerHeartbeat
        fields = ["hostname", "pid", "queues", "running_tasks", "started_at", "last_heartbeat"]
