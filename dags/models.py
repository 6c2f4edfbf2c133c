"""DAG definitions: a Dag is a name users refer to, a DagVersion one immutable content."""

from functools import cached_property

from django.db import models

from .dag_spec import DagSpec


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
    # The next cron tick that gets a run, planned by dags/schedules.py and moved on by the
    # scheduler (runs/scheduler.py); None: no schedule, or past its end_date.
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
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
    def dag_spec(self) -> DagSpec | None:
        """The current version's spec (cached on that version); None before the first one."""
        return self.current_version.dag_spec if self.current_version else None

    @property
    def schedule(self) -> str | None:
        """The schedule as the DAG file wrote it; None for manual runs only."""
        return self.dag_spec.schedule if self.dag_spec else None

    @property
    def cron(self) -> str | None:
        """The 5-field cron line the DAG is scheduled on; None for manual runs only."""
        return self.dag_spec.cron if self.dag_spec else None

    @property
    def timezone(self) -> str:
        return self.dag_spec.timezone if self.dag_spec else "UTC"


class DagVersion(models.Model):
    """One content of a DAG. Never changed after it is written: runs point at it."""

    dag = models.ForeignKey(Dag, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    spec = models.JSONField()  # DagSpec.to_json(); read it typed as `dag_spec`
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

    @cached_property
    def dag_spec(self) -> DagSpec:
        """`spec` as a DagSpec (read once per instance: a version never changes)."""
        return DagSpec.from_json(self.spec)


class Pool(models.Model):
    """A named number of slots shared by every task that names it (`pool:` in a DAG file),
    across runs and DAGs: at most `slots` of them run at once (CONTRACT section 7).

    `running` is kept by the engine's claim and finish statements (runs/states), never by
    hand; the constraint makes a claim that would exceed `slots` fail as a whole.
    """

    name = models.CharField(max_length=100, unique=True)
    slots = models.PositiveIntegerField()
    running = models.PositiveIntegerField(default=0)
    # Tasks marked waiting for a slot of this pool, at least (runs/states/slots.py): a
    # finish that gives a slot back looks for one to wake only when this is above 0.
    waiting = models.PositiveIntegerField(default=0)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(running__lte=models.F("slots")), name="pool_within_slots"
            ),
        ]

    def __str__(self) -> str:
        return self.name
