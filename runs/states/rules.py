"""The two rules the engine's statements compute inside the database, each defined once:

- readiness: when an all_success task whose upstream tasks are being released is ready
  to run (Airflow's default trigger rule; CONTRACT section 1);
- the run countdown: when a run is over, and how it ended (CONTRACT section 2).

Each renders the SQL that the finish statement (one statement on PostgreSQL, its steps on
SQLite) and the other statements of this package share; readiness is also evaluated in
Python, by the trigger rules (runs/trigger_rules.py) and the reconciler.
"""

from __future__ import annotations

from .machine import RunState, TaskState

# An all_success task is ready when its latch holds exactly these counts.
ALL_SUCCESS_READY: dict[str, int] = {
    "pending_upstream": 0,
    "upstream_failed": 0,
    "upstream_skipped": 0,
}


def all_success_ready(pending: int, failed: int, skipped: int) -> bool:
    """Whether an all_success latch with these counts is ready (upstream_failed counts
    in `failed`)."""
    counts = {"pending_upstream": pending, "upstream_failed": failed, "upstream_skipped": skipped}
    return all(counts[column] == value for column, value in ALL_SUCCESS_READY.items())


# A latch's counters after a release of `done` upstream tasks, of which `succeeded`,
# `failed` and `skipped` ended so.
_RELEASED = {
    "pending_upstream": "pending_upstream - %(done)s",
    "upstream_succeeded": "upstream_succeeded + %(succeeded)s",
    "upstream_failed": "upstream_failed + %(failed)s",
    "upstream_skipped": "upstream_skipped + %(skipped)s",
}


def release_set(queues: str) -> str:
    """The SET of a latch release. A pending row for which the SQL condition `queues`
    holds (an all_success task) goes to `%(latch_ready)s` (queued) once ALL_SUCCESS_READY holds
    after the release. Parameters: done, succeeded, failed, skipped, latch_pending, latch_ready, now."""
    ready = " AND ".join(
        [queues, "state = %(latch_pending)s"]
        + [f"{_RELEASED[column]} = {value}" for column, value in ALL_SUCCESS_READY.items()]
    )
    return ", ".join(
        [f"{column} = {after}" for column, after in _RELEASED.items()]
        + [
            f"state = CASE WHEN {ready} THEN %(latch_ready)s ELSE state END",
            f"queued_at = CASE WHEN {ready} THEN %(now)s ELSE queued_at END",
        ]
    )


RELEASE_STATES = {"latch_pending": TaskState.PENDING, "latch_ready": TaskState.QUEUED}


def countdown_set() -> str:
    """The SET of the run countdown: `final` more task instances are final, `failing` of
    them failed (negative: cleared to run again). While some are unfinished the run is
    running; the last one sets success or failed and the finish time.
    Parameters: final, failing, run_running, run_failed, run_success, now."""
    unfinished = "tasks_unfinished - %(final)s"
    failed = "tasks_failed + %(failing)s"
    return (
        f"tasks_unfinished = {unfinished}, tasks_failed = {failed},"
        f" state = CASE WHEN {unfinished} > 0 THEN %(run_running)s"
        f" WHEN {failed} > 0 THEN %(run_failed)s ELSE %(run_success)s END,"
        f" finished_at = CASE WHEN {unfinished} > 0 THEN NULL ELSE %(now)s END"
    )


COUNTDOWN_STATES = {
    "run_running": RunState.RUNNING,
    "run_failed": RunState.FAILED,
    "run_success": RunState.SUCCESS,
}
