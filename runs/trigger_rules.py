"""Trigger rules: given how a task's upstream tasks ended so far, what happens to it."""

from __future__ import annotations

from enum import StrEnum

from .states import all_success_ready


class Decision(StrEnum):
    WAIT = "wait"
    RUN = "queued"
    UPSTREAM_FAILED = "upstream_failed"
    SKIP = "skipped"


def decide(rule: str, pending: int, succeeded: int, failed: int, skipped: int) -> Decision:
    """Decide a pending task's fate from its upstream counts (failed includes upstream_failed).

    one_success and one_failed may fire before every upstream task is done; the others
    wait until none is pending.
    """
    if rule == "one_success" and succeeded:
        return Decision.RUN
    if rule == "one_failed" and failed:
        return Decision.RUN
    if pending:
        return Decision.WAIT
    return _when_all_done(rule, succeeded, failed, skipped)


def _when_all_done(rule: str, succeeded: int, failed: int, skipped: int) -> Decision:
    if rule == "all_success":
        if all_success_ready(0, failed, skipped):
            return Decision.RUN
        return Decision.UPSTREAM_FAILED if failed else Decision.SKIP
    if rule == "all_failed":
        return Decision.RUN if not succeeded and not skipped else Decision.SKIP
    if rule == "all_done":
        return Decision.RUN
    if rule == "none_failed":
        return Decision.UPSTREAM_FAILED if failed else Decision.RUN
    if rule == "one_success":  # every upstream ended and none succeeded
        return Decision.UPSTREAM_FAILED if failed else Decision.SKIP
    if rule == "one_failed":  # every upstream ended and none failed
        return Decision.SKIP
    raise ValueError(f"unknown trigger rule {rule!r}")
