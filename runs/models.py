"""Execution state: runs, their task instances, each attempt, and dead letters.

Rows change state only through runs/states/, where every transition is a guarded UPDATE.
"""

import uuid

from django.db import models

from dags.models import Dag, DagVersion

from .enums import RunState, TaskState


class DagRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dag = models.ForeignKey(Dag, on_delete=models.PROTECT, related_name="runs")
    dag_version = models.ForeignKey(DagVersion, on_delete=models.PROTECT, related_name="runs")
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.QUEUED)
    triggered_by = models.CharField(max_length=32, default="api")
    logical_date = models.DateTimeField()
    params = models.JSONField(default=dict, blank=True)
    # A client's key for "trigger this once": a repeat with the same key gets this run.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    # Countdown of task instances not yet final, and how many ended failed: the run
    # finishes when the first reaches 0, without scanning its tasks.
    tasks_unfinished = models.PositiveIntegerField(default=0)
    tasks_failed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # started_at + the DAG's run_timeout: past it the run is failed (runs/timeouts.py).
    deadline_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "-created_at"], name="run_state_created"),
            models.Index(fields=["dag", "state"], name="run_dag_state"),
            # A DAG's newest runs: the dashboard's last-run marks and grid.
            models.Index(fields=["dag", "-created_at"], name="run_dag_newest"),
            # The run list, newest first, paged by (created_at, id).
            models.Index(fields=["-created_at", "-id"], name="run_newest"),
            models.Index(
                fields=["deadline_at"], condition=models.Q(state="running"), name="run_deadline"
            ),
        ]
        permissions = [
            ("trigger_dagrun", "Can trigger runs"),
            ("cancel_dagrun", "Can cancel runs"),
            ("retry_taskinstance", "Can repair runs: retry, clear, mark, rerun"),
        ]
        constraints = [
            # A cron tick (or backfill) makes one run, however many beats or retries fire it.
            models.UniqueConstraint(
                fields=["dag", "logical_date"],
                condition=models.Q(triggered_by__in=["schedule", "backfill"]),
                name="run_unique_scheduled_tick",
            ),
        ]

    def __str__(self) -> str:
        # dag_id here is the Dag row's key; the name people know is the Dag's dag_id.
        return f"{self.dag.dag_id} run {str(self.id)[:8]}"

    @property
    def run_id(self) -> uuid.UUID:
        return self.id

    @property
    def is_finished(self) -> bool:
        return self.state in RunState.FINAL


class TaskInstance(models.Model):
    # No index of its own: task_instance_unique (run, task_id) serves lookups by run, and
    # every index is one more entry written by each of a task's state changes.
    run = models.ForeignKey(
        DagRun, on_delete=models.CASCADE, related_name="task_instances", db_index=False
    )
    task_id = models.CharField(max_length=100)
    state = models.CharField(max_length=16, choices=TaskState.choices, default=TaskState.PENDING)
    try_number = models.PositiveIntegerField(default=0)
    max_tries = models.PositiveIntegerField(default=1)
    # The latch: upstream tasks not yet final, and how those that are final ended.
    pending_upstream = models.PositiveIntegerField(default=0)
    upstream_succeeded = models.PositiveIntegerField(default=0)
    upstream_failed = models.PositiveIntegerField(default=0)
    upstream_skipped = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")
    # The running attempt's process group on its worker's host (set with a lease renewal),
    # so that whoever declares the attempt lost can fence it.
    pgid = models.PositiveIntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    output = models.JSONField(null=True, blank=True)
    # The pool its attempts take a slot of (dags.Pool.name), copied from the spec.
    pool = models.CharField(max_length=100, blank=True, default="")
    # Queued, but its claim found no slot (run or pool): the next release wakes it.
    waiting_slot = models.BooleanField(default=False)
    # The lease of an attempt that a cancel, timeout or repair stopped while it ran: its
    # process may run on until its worker notices, at the latest until this lease (and
    # the time to kill it) is over. No new attempt is claimed before (workflows/attempts.py).
    stopped_lease = models.DateTimeField(null=True, blank=True)
    # The running attempt's output so far (stdout and stderr as they came, the last
    # LIVE_OUTPUT_CHARS characters), written with each lease renewal: the task page's
    # live tail. The attempt's row keeps the whole tails once it ends.
    live_output = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "task_id"], name="task_instance_unique"),
        ]
        # Partial indexes for the reconciler's scans: an instance is in one at most, so a
        # state change writes fewer index entries than an index on (state, ...) would.
        indexes = [
            models.Index(
                fields=["queued_at"], condition=models.Q(state="queued"), name="ti_queued"
            ),
            models.Index(
                fields=["run", "queued_at"],
                condition=models.Q(waiting_slot=True),
                name="ti_waiting_run",
            ),
            models.Index(
                fields=["pool", "queued_at"],
                condition=models.Q(waiting_slot=True),
                name="ti_waiting_pool",
            ),
            models.Index(
                fields=["lease_expires_at"], condition=models.Q(state="running"), name="ti_lease"
            ),
            models.Index(
                fields=["next_retry_at"], condition=models.Q(state="up_for_retry"), name="ti_retry"
            ),
            # The reconciler's "released but never moved" repair: without it, a full scan
            # of every pending instance on each pass.
            models.Index(
                fields=["run"],
                condition=models.Q(state="pending", pending_upstream=0),
                name="ti_pending_released",
            ),
            # /metrics counts pending instances (each other unfinished state has its
            # index above) without reading the finished ones.
            models.Index(fields=["run"], condition=models.Q(state="pending"), name="ti_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.run.dag.dag_id}/{self.task_id} in run {str(self.run_id)[:8]}"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class RunSlots(models.Model):
    """The running-task limit of one run (`max_active_tasks`), for runs that have one.

    Kept apart from DagRun so that the finish statement, which counts the run down, and
    the release of a slot update different rows. `running` is kept by runs/states; the
    constraint makes a claim that would exceed the limit fail as a whole.
    """

    run = models.OneToOneField(
        DagRun, primary_key=True, on_delete=models.CASCADE, related_name="slots"
    )
    max_active_tasks = models.PositiveIntegerField()
    running = models.PositiveIntegerField(default=0)
    waiting = models.PositiveIntegerField(default=0)  # as Pool.waiting

    class Meta:
        verbose_name_plural = "run slots"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(running__lte=models.F("max_active_tasks")),
                name="run_within_max_active_tasks",
            ),
        ]


class TaskAttempt(models.Model):
    """One execution of a task instance: what ran, where, and how it ended."""

    task_instance = models.ForeignKey(
        TaskInstance, on_delete=models.CASCADE, related_name="attempts"
    )
    try_number = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=TaskState.choices)
    worker = models.CharField(max_length=255, blank=True, default="")
    host = models.CharField(max_length=255, blank=True, default="")
    pgid = models.PositiveIntegerField(null=True, blank=True)  # its process group there
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    stdout = models.TextField(blank=True, default="")
    stderr = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["task_instance", "try_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["task_instance", "try_number"], name="attempt_unique_try"
            ),
        ]
        # The status page's last hour (failure rate, mean duration): a range on it.
        indexes = [models.Index(fields=["finished_at"], name="attempt_finished")]

    def __str__(self) -> str:
        instance = self.task_instance
        return f"{instance.run.dag.dag_id}/{instance.task_id} try {self.try_number} ({self.state})"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class DeadLetter(models.Model):
    """A task instance that used up its retries, kept until someone retries or drops it."""

    run = models.ForeignKey(DagRun, on_delete=models.CASCADE, related_name="dead_letters")
    task_instance = models.ForeignKey(
        TaskInstance, on_delete=models.CASCADE, related_name="dead_letters"
    )
    dag_id = models.CharField(max_length=100)
    task_id = models.CharField(max_length=100)
    attempts = models.PositiveIntegerField()
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    retried_at = models.DateTimeField(null=True, blank=True)
    retried_by = models.CharField(max_length=150, blank=True, default="")  # a username

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The dead-letter lists (API and dashboard), newest first, a page at a time.
            models.Index(fields=["-created_at", "-id"], name="dead_letter_newest"),
            # /metrics' dead-letter depth: the entries not retried, without the rest.
            models.Index(
                fields=["created_at"],
                condition=models.Q(retried_at__isnull=True),
                name="dead_letter_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dag_id}/{self.task_id} after {self.attempts} attempts"


class Repair(models.Model):
    """One repair of a run by hand (CONTRACT section 9): who did what, and when.

    `action` is clear, mark, rerun, retry (a failed task and its downstream) or dlq_retry;
    `tasks` the ids of the task instances it changed; `details` what was asked (clear:
    downstream; mark: the state and the one it replaced).
    """

    class Action(models.TextChoices):
        CLEAR = "clear"
        MARK = "mark"
        RERUN = "rerun"
        RETRY = "retry"
        DLQ_RETRY = "dlq_retry"

    run = models.ForeignKey(DagRun, on_delete=models.CASCADE, related_name="repairs")
    action = models.CharField(max_length=16, choices=Action.choices)
    task_id = models.CharField(max_length=100, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    tasks = models.JSONField(default=list, blank=True)
    by = models.CharField(max_length=150, blank=True, default="")  # a username
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["run", "at"], name="repair_run_at")]

    def __str__(self) -> str:
        target = f" {self.task_id}" if self.task_id else ""
        return f"{self.action}{target} by {self.by or 'someone'}"


class Job(models.Model):
    """A one-off task submitted through the API: a one-task run underneath."""

    run = models.OneToOneField(DagRun, on_delete=models.CASCADE, related_name="job")
    type = models.CharField(max_length=16)
    input = models.JSONField(default=dict)
    max_retries = models.PositiveIntegerField(default=0)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.type})"


class Workflow(models.Model):
    """An inline list of steps submitted through the API: a run of its own DAG underneath."""

    run = models.OneToOneField(DagRun, on_delete=models.CASCADE, related_name="workflow")
    name = models.CharField(max_length=200)
    input = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"workflow {self.pk}: {self.name}"


class WorkerHeartbeat(models.Model):
    """The last sign of life of one worker, written every few seconds while it runs."""

    hostname = models.CharField(max_length=255, unique=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    queues = models.JSONField(default=list)
    running = models.JSONField(default=list)  # task instance ids being executed
    started_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField()

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname
