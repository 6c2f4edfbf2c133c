"""After a load test: is every job accounted for? Counts through the API, then each job
checked in the database: its final state, its attempts against its try_number, its
successes and its dead letters."""

from __future__ import annotations

from collections import Counter

import requests
from django.db import connection

STATUSES = ("queued", "running", "success", "failed", "cancelled")

JOB_ROWS = """
SELECT j.id, j.input->>'name', r.state, ti.state, ti.try_number,
       (SELECT count(*) FROM runs_taskattempt a WHERE a.task_instance_id = ti.id),
       (SELECT count(*) FROM runs_taskattempt a
         WHERE a.task_instance_id = ti.id AND a.state = 'success'),
       (SELECT count(*) FROM runs_deadletter d WHERE d.task_instance_id = ti.id)
FROM runs_job j
JOIN runs_dagrun r ON r.id = j.run_id
JOIN runs_taskinstance ti ON ti.run_id = r.id
WHERE j.id >= %s
"""


def _count(url: str, token: str, path: str) -> int:
    response = requests.get(f"{url}{path}", headers={"Authorization": f"Token {token}"}, timeout=60)
    response.raise_for_status()
    return response.json()["count"]


def api_counts(url: str, token: str) -> dict[str, int]:
    """Jobs by status (GET /api/v1/jobs?status=...) and dead letters (GET /api/v1/dlq)."""
    counts = {
        status: _count(url, token, f"/api/v1/jobs?status={status}&page_size=1")
        for status in STATUSES
    }
    counts["dlq"] = _count(url, token, "/api/v1/dlq?page_size=1")
    return counts


def _job_problems(row: tuple, max_tries: int) -> list[str]:
    job, kind, run_state, state, tries, attempts, successes, dead = row
    found = []
    if attempts != tries:
        found.append(f"job {job}: {attempts} attempt rows for try_number {tries}")
    if run_state == "success" and (state != "success" or successes != 1 or dead):
        found.append(f"job {job}: succeeded with {successes} successes, {dead} dead letters")
    elif run_state == "failed" and (kind != "flaky" or tries != max_tries or dead != 1):
        found.append(f"job {job} ({kind}) failed after {tries} tries with {dead} dead letters")
    elif run_state not in ("success", "failed"):
        found.append(f"job {job} ended {run_state}")
    return found


def audit(first_job_id: int, submitted_ids: list[int], max_tries: int = 3) -> dict:
    """Every job from first_job_id on, checked row by row; a summary and its problems."""
    with connection.cursor() as cursor:
        cursor.execute(JOB_ROWS, [first_job_id])
        rows = cursor.fetchall()
    states = Counter(row[2] for row in rows)
    problems = [problem for row in rows for problem in _job_problems(row, max_tries)]
    stored, sent = {row[0] for row in rows}, set(submitted_ids)
    if stored != sent or len(submitted_ids) != len(sent):
        problems.append(
            f"{len(sent - stored)} submitted jobs missing, {len(stored - sent)} unexpected, "
            f"{len(submitted_ids) - len(sent)} ids answered twice"
        )
    return {
        "jobs": len(rows),
        "success": states["success"],
        "failed": states["failed"],
        "attempts": sum(row[5] for row in rows),
        "dead_letters": sum(row[7] for row in rows),
        "by_kind": dict(Counter(f"{row[1]} {row[2]}" for row in rows)),
        "row_problems": problems[:20],
        "row_problem_count": len(problems),
    }


def problems(
    audit: dict,
    before: dict[str, int],
    after: dict[str, int],
    n: int,
    dead_letter_bounds: tuple[float, float],
) -> list[str]:
    """Everything that says a job was lost, duplicated, or dead-lettered improbably often."""
    found = list(audit["row_problems"])
    if audit["row_problem_count"] > len(found):
        found.append(f"... {audit['row_problem_count'] - len(found)} more")
    delta = {key: after[key] - before[key] for key in after}
    if delta["success"] + delta["failed"] != n or audit["jobs"] != n:
        found.append(f"API counts {delta} do not add up to {n} jobs ({audit['jobs']} stored)")
    if delta["dlq"] != delta["failed"] or delta["dlq"] != audit["dead_letters"]:
        found.append(f"DLQ grew by {delta['dlq']}, failed jobs by {delta['failed']}")
    low, high = dead_letter_bounds
    if not low <= audit["dead_letters"] <= high:
        found.append(f"{audit['dead_letters']} dead letters, outside [{low:.1f}, {high:.1f}]")
    return found
