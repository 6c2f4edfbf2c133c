"""`flowforge clear`, `mark` and `rerun`: repairing a run (CONTRACT section 9)."""

from __future__ import annotations

import argparse

from .cli_client import ApiClient, segment, show, show_then_wait


def task_path(args: argparse.Namespace, action: str) -> str:
    return f"/api/v1/runs/{segment(args.run_id)}/tasks/{segment(args.task_id)}/{action}"


def repaired_tasks(run: dict, action: str, task_id: str | None = None) -> list[str] | None:
    """The task ids the newest repair changed, when it is the `action` (on `task_id`) just
    asked for; None from a server that keeps no audit trail (no `repairs` in its runs)."""
    repairs = run.get("repairs") or []
    newest = repairs[-1] if repairs else {}
    if newest.get("action") != action or newest.get("task_id") != task_id:
        return None
    return newest.get("tasks")


def with_precondition(body: dict, args: argparse.Namespace) -> dict:
    """--try-number N: the server refuses (409) if the task moved on from that try."""
    if args.try_number is not None:
        body["try_number"] = args.try_number
    return body


def cmd_clear(client: ApiClient, args: argparse.Namespace) -> int:
    body = with_precondition({"downstream": not args.no_downstream}, args)
    run = client.post(task_path(args, "clear"), json=body)
    cleared = repaired_tasks(run, "clear", args.task_id)
    if args.no_downstream:
        what = f"cleared {args.task_id} (not its downstream)"
    elif cleared is None:
        what = f"cleared {args.task_id} and its downstream tasks"
    else:
        downstream = [task for task in cleared if task != args.task_id]
        what = f"cleared {args.task_id} and {len(downstream)} downstream task(s)"
    return show(args, run, lambda: f"run {run['run_id']}: {what}; run is {run['state']}")


def cmd_mark(client: ApiClient, args: argparse.Namespace) -> int:
    body = with_precondition({"state": args.state}, args)
    run = client.post(task_path(args, "mark"), json=body)
    message = f"run {run['run_id']}: {args.task_id} marked {args.state}; run is {run['state']}"
    return show(args, run, lambda: message)


def cmd_rerun(client: ApiClient, args: argparse.Namespace) -> int:
    run = client.post(f"/api/v1/runs/{segment(args.run_id)}/rerun")
    rerun = repaired_tasks(run, "rerun")
    what = "its failed and cancelled tasks" if rerun is None else f"{len(rerun)} task(s)"
    return show_then_wait(
        client, args, run, f"run {run['run_id']}: rerunning {what}; run is {run['state']}"
    )


def add_try_number(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--try-number",
        type=int,
        metavar="N",
        help="only if the task is still on try N, as last seen (else 409)",
    )


def add_repair_commands(command) -> None:
    """clear, mark, rerun: each answers with the run, its `repairs` naming what changed."""
    clear = command("clear", cmd_clear, "run a task (and its downstream) again, new attempts")
    clear.add_argument("run_id")
    clear.add_argument("task_id")
    clear.add_argument("--no-downstream", action="store_true", help="clear only this task")
    add_try_number(clear)
    mark = command("mark", cmd_mark, "set a task's outcome by hand; downstream tasks follow")
    mark.add_argument("run_id")
    mark.add_argument("task_id")
    mark.add_argument("--state", required=True, choices=["success", "failed"])
    add_try_number(mark)
    rerun = command("rerun", cmd_rerun, "run a finished run's failed and cancelled tasks again")
    rerun.add_argument("run_id")
    rerun.add_argument("--wait", "-w", action="store_true", help="wait for the run to end")
    rerun.add_argument("--timeout", type=float, metavar="SECS", help="give up waiting after")
    rerun.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
