"""`flowforge clear`, `mark` and `rerun` (CONTRACT section 9) against a real server and
worker, and the repair trail `flowforge run` shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowforge.tests.test_cli import api_url, cli, failed, ok, token, write  # noqa: F401
from testkit.engine import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FINAL = ("success", "failed", "cancelled")
SLOW = """\
id: slow-repair
name: Slow repair
tasks:
  - id: nap
    command: "sleep 30"
"""


def chain(tmp_path: Path) -> str:
    """a -> b -> c, where b succeeds only once `ok` exists in tmp_path."""
    return write(
        tmp_path,
        "chain.yaml",
        f"""\
id: repair-chain
name: Repair chain
tasks:
  - id: a
    command: "echo a"
  - id: b
    command: "test -f {tmp_path / "ok"}"
    depends_on: [a]
  - id: c
    command: "echo c"
    depends_on: [b]
""",
    )


def run_chain(cli, tmp_path: Path, succeed: bool) -> str:  # noqa: F811
    """Submit the chain, trigger it and wait for its end: the run id."""
    if succeed:
        (tmp_path / "ok").touch()
    ok(cli("submit", "-f", chain(tmp_path)))
    waited = cli("trigger", "repair-chain", "--wait")
    run_id = waited.out.split()[1]  # "run <id> of repair-chain: queued"
    if succeed:
        ok(waited)
    else:
        assert failed(waited) == f"flowforge: run {run_id} failed"
    return run_id


def run_json(cli, run_id: str) -> dict:  # noqa: F811
    return ok(cli("run", run_id, "--json")).json()


def finished(cli, run_id: str) -> dict:  # noqa: F811
    """The run once it has ended again, as `flowforge run --json` shows it."""

    def final() -> dict | None:
        run = run_json(cli, run_id)
        return run if run["state"] in FINAL else None

    return wait_for(final, timeout=60, interval=0.5, message=f"run {run_id} to end")


def tries(run: dict) -> dict[str, tuple[str, int]]:
    return {t["task_id"]: (t["state"], t["try_number"]) for t in run["tasks"]}


def repair_rows(shown: str) -> list[list[str]]:
    """The REPAIRS table of `flowforge run`, each row split on spaces (AT is two words)."""
    lines = shown.split("\nREPAIRS\n", 1)[1].splitlines()
    assert lines[0].split() == ["AT", "BY", "ACTION", "TASK", "DETAILS", "TASKS"]
    return [line.split() for line in lines[1:]]


def test_rerun_runs_only_the_failed_tasks_again(cli, tmp_path):  # noqa: F811
    run_id = run_chain(cli, tmp_path, succeed=False)
    assert tries(run_json(cli, run_id)) == {
        "a": ("success", 1),
        "b": ("failed", 1),
        "c": ("upstream_failed", 0),
    }
    assert "REPAIRS" not in ok(cli("run", run_id)).out  # no repairs yet: no table

    (tmp_path / "ok").touch()
    rerun = ok(cli("rerun", run_id, "--wait", "--timeout", "60"))
    assert rerun.out.startswith(f"run {run_id}: rerunning 2 task(s); run is ")
    assert f"run {run_id}: success" in rerun.out

    run = run_json(cli, run_id)
    assert tries(run) == {"a": ("success", 1), "b": ("success", 2), "c": ("success", 1)}
    [repair] = run["repairs"]
    assert (repair["action"], repair["task_id"], repair["by"]) == ("rerun", None, "cli-admin")
    assert sorted(repair["tasks"]) == ["b", "c"] and repair["details"] == {}

    [row] = repair_rows(ok(cli("run", run_id)).out)
    assert row[2:5] == ["cli-admin", "rerun", "-"] and row[5] == "-"
    assert sorted(row[6].split(",")) == ["b", "c"]


def test_mark_a_failed_task_success_lets_its_downstream_run(cli, tmp_path):  # noqa: F811
    run_id = run_chain(cli, tmp_path, succeed=False)
    marked = ok(cli("mark", run_id, "b", "--state", "success"))
    assert marked.out == f"run {run_id}: b marked success; run is running\n"

    run = finished(cli, run_id)
    assert run["state"] == "success"
    assert tries(run) == {"a": ("success", 1), "b": ("success", 1), "c": ("success", 1)}
    [row] = repair_rows(ok(cli("run", run_id)).out)
    assert row[2:5] == ["cli-admin", "mark", "b"]
    assert " ".join(row[5:-1]) == "success (was failed)"
    assert row[-1] == "b,c"  # c too: it left upstream_failed to run


def test_clear_runs_a_task_again_with_or_without_its_downstream(cli, tmp_path):  # noqa: F811
    run_id = run_chain(cli, tmp_path, succeed=True)

    cleared = ok(cli("clear", run_id, "a"))
    assert cleared.out == f"run {run_id}: cleared a and 2 downstream task(s); run is running\n"
    run = finished(cli, run_id)
    assert run["state"] == "success"
    assert tries(run) == {"a": ("success", 2), "b": ("success", 2), "c": ("success", 2)}

    only = ok(cli("clear", run_id, "b", "--no-downstream"))
    assert only.out == f"run {run_id}: cleared b (not its downstream); run is running\n"
    run = finished(cli, run_id)
    assert tries(run) == {"a": ("success", 2), "b": ("success", 3), "c": ("success", 2)}
    assert [(r["action"], r["task_id"], r["details"]) for r in run["repairs"]] == [
        ("clear", "a", {"downstream": True}),
        ("clear", "b", {"downstream": False}),
    ]
    assert [row[3:6] for row in repair_rows(ok(cli("run", run_id)).out)] == [
        ["clear", "a", "downstream"],
        ["clear", "b", "no"],  # "no downstream", split on its space
    ]

    # --try-number is the "as I last saw it" precondition: a stale one is a 409.
    stale = failed(cli("clear", run_id, "c", "--try-number", "1"))
    assert stale.startswith("flowforge: 409 conflict:") and "success" in stale
    answer = ok(cli("clear", run_id, "c", "--try-number", "2", "--json")).json()
    assert answer["repairs"][-1]["tasks"] == ["c"]
    assert tries(finished(cli, run_id))["c"] == ("success", 3)


def test_bad_repairs_are_one_line(cli, tmp_path):  # noqa: F811
    usage = cli("mark", "some-run", "b", "--state", "running")
    assert usage.code == 2 and "invalid choice: 'running'" in usage.err

    ok(cli("submit", "-f", write(tmp_path, "slow.yaml", SLOW)))
    run_id = ok(cli("trigger", "slow-repair", "--json")).json()["run_id"]
    wait_for(
        lambda: tries(run_json(cli, run_id))["nap"] == ("running", 1),
        timeout=30,
        interval=0.5,
        message="nap to start",
    )
    try:
        assert failed(cli("mark", run_id, "nope", "--state", "success")).startswith(
            "flowforge: 404 not found:"
        )
        assert failed(cli("clear", "no-such-run", "nap")).startswith("flowforge: 404 not found:")
        assert failed(cli("rerun", run_id)).startswith("flowforge: 409 conflict:")
    finally:
        ok(cli("cancel", run_id))

    # The worker stops the command at its next lease heartbeat and only then records the
    # attempt; wait for that, so that the table flush after the test does not race it.
    def recorded() -> list:
        return ok(cli("logs", run_id, "nap", "--json")).json()["attempts"]

    [attempt] = wait_for(recorded, timeout=30, interval=0.5, message="the attempt to stop")
    assert attempt["state"] == "cancelled"
