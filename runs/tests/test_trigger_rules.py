"""Trigger rules decide from upstream counts; the engine spreads skips and failures."""

import pytest

from runs.trigger_rules import Decision, decide
from testkit.engine import run_dag

RUN, WAIT, SKIP, UF = Decision.RUN, Decision.WAIT, Decision.SKIP, Decision.UPSTREAM_FAILED


@pytest.mark.parametrize(
    "rule, pending, succeeded, failed, skipped, expected",
    [
        ("all_success", 1, 1, 0, 0, WAIT),
        ("all_success", 0, 2, 0, 0, RUN),
        ("all_success", 0, 1, 1, 0, UF),
        ("all_success", 0, 1, 0, 1, SKIP),
        ("all_failed", 0, 0, 2, 0, RUN),
        ("all_failed", 0, 1, 1, 0, SKIP),
        ("all_done", 1, 0, 1, 0, WAIT),
        ("all_done", 0, 1, 1, 1, RUN),
        ("one_success", 2, 1, 0, 0, RUN),
        ("one_success", 0, 0, 1, 1, UF),
        ("one_success", 0, 0, 0, 2, SKIP),
        ("one_failed", 2, 0, 1, 0, RUN),
        ("one_failed", 0, 2, 0, 0, SKIP),
        ("none_failed", 0, 1, 0, 1, RUN),
        ("none_failed", 0, 1, 1, 0, UF),
        ("none_failed", 1, 1, 0, 0, WAIT),
    ],
)
def test_decide(rule, pending, succeeded, failed, skipped, expected):
    assert decide(rule, pending, succeeded, failed, skipped) == expected


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_rules_spread_through_a_run():
    run, t = run_dag(
        """
id: rules
tasks:
  - {id: ok, command: "true"}
  - {id: bad, command: "false"}
  - {id: needs-both, command: "true", depends_on: [ok, bad]}
  - {id: after-needs-both, command: "true", depends_on: [needs-both]}
  - {id: cleanup, command: "true", depends_on: [ok, bad], trigger_rule: all_done}
  - {id: alert, command: "true", depends_on: [ok, bad], trigger_rule: one_failed}
  - {id: any-ok, command: "true", depends_on: [ok, bad], trigger_rule: one_success}
  - {id: only-failures, command: "true", depends_on: [ok, bad], trigger_rule: all_failed}
  - {id: after-skip, command: "true", depends_on: [only-failures]}
  - {id: tolerant, command: "true", depends_on: [after-skip, ok], trigger_rule: none_failed}
"""
    )
    states = {task_id: ti.state for task_id, ti in t.items()}
    assert states == {
        "ok": "success",
        "bad": "failed",
        "needs-both": "upstream_failed",
        "after-needs-both": "upstream_failed",
        "cleanup": "success",
        "alert": "success",
        "any-ok": "success",
        "only-failures": "skipped",
        "after-skip": "skipped",
        "tolerant": "success",
    }
    assert run.state == "failed"
    assert run.tasks_unfinished == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_run_with_only_skips_and_successes_succeeds():
    run, t = run_dag(
        """
id: skips
tasks:
  - {id: ok, command: "true"}
  - {id: on-failure, command: "true", depends_on: [ok], trigger_rule: all_failed}
"""
    )
    assert t["on-failure"].state == "skipped"
    assert run.state == "success"
