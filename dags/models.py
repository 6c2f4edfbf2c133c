"""DAG definitions: a Dag is a name users refer to, a DagVersion one immutable content."""

from django.db import models


class Dag(models.Model):
    class Kind(models.TextChoices):
        DAG = "dag"  # submitted as a DAG file
        JOB = "job"  # made by the jobs API for one one-off task
        WORKFLOW = "workflow"  # made by the workflows API from a list of steps

    dag_id = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DAG)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    is_paused = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    current_version = models.ForeignKey(
        "DagVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["dag_id"]
        verbose_name = "DAG"
        permissions = [
            ("submit_dag", "Can submit and deactivate DAGs"),
            ("pause_dag", "Can pause and unpause DAGs"),
        ]

    def __str__(self) -> str:
        return self.dag_id

    @property
    def spec(self) -> dict:
        return self.current_version.spec if self.current_version else {}

    @property
    def schedule(self) -> str | None:
        return self.spec.get("schedule")

    @property
    def timezone(self) -> str:
        return self.spec.get("timezone", "UTC")


class DagVersion(models.Model):
    """One content of a DAG. Never changed after it is written: runs point at it."""

    dag = models.ForeignKey(Dag, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    spec = models.JSONField()
    source = models.TextField()
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dag", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["dag", "version"], name="dag_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.dag.dag_id} v{self.version}"
