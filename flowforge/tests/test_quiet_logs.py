"""The once-a-second housekeeping stays out of INFO logs; everything else stays in."""

import logging

from flowforge.quiet_logs import HousekeepingFilter


def record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_housekeeping_sends_receipts_and_successes_are_dropped_at_info():
    keep = HousekeepingFilter().filter
    assert not keep(record("celery.beat", logging.INFO, "Sending due task flowforge.schedule"))
    assert not keep(
        record("celery.worker.strategy", logging.INFO, "Task flowforge.reconcile[1] received")
    )
    assert not keep(
        record("celery.app.trace", logging.INFO, "Task flowforge.schedule[2] succeeded")
    )
    # A send that expired while no worker ran, discarded when one starts.
    assert not keep(
        record(
            "celery.worker.request",
            logging.INFO,
            "Discarding revoked task: flowforge.schedule[f7b71e6d-0000-4000-8000-000000000000]",
        )
    )


def test_task_lines_problems_and_flowforges_own_lines_are_kept():
    keep = HousekeepingFilter().filter
    assert keep(
        record("celery.app.trace", logging.INFO, "Task flowforge.execute_task[3] succeeded")
    )
    assert keep(record("celery.app.trace", logging.ERROR, "Task flowforge.schedule[4] raised"))
    assert keep(record("runs.scheduler", logging.INFO, "scheduler: {'created': 1}"))
