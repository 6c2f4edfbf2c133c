"""`flowforge`: drive a FlowForge server from a terminal or script through its REST API.

Besides submitting, triggering and inspecting, it repairs runs (CONTRACT section 9):
`clear` a task to run it again, `mark` a task's outcome by hand, `rerun` a finished run.

Global options (`--api-url`, `--token`, `--json`) go before or after the command.
Exit status 0 on success; on failure 1 and one line on stderr (2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dags import boundary

from .cli_client import (
    DEFAULT_API_URL,
    FINAL_STATES,
    ApiClient,
    ApiError,
    CliError,
    print_json,
    segment,
    show,
    show_page,
    show_then_wait,
)
from .cli_format import (
    render_backfill,
    render_dags,
    render_dead_letters,
    render_logs,
    render_pools,
    render_run,
    render_runs,
    render_status,
    render_workers,
)
from .cli_repair import add_repair_commands

# --- submit -------------------------------------------------------------------------


def dag_files(names: list[str]) -> list[Path]:
    """Each --file as given; a folder stands for every *.yaml and *.yml file in it."""
    files: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            if not found:
                raise CliError(f"no *.yaml or *.yml files in {name}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CliError(f"no such file: {name}")
    return files


def submit_one(client: ApiClient, path: Path) -> dict:
    try:
        boundary.check_size(path.stat().st_size, str(path))
        text = path.read_text(encoding="utf-8")
    except boundary.LimitExceeded as exc:
        raise CliError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    return client.post(
        "/api/v1/dags",
        data=text.encode("utf-8"),
        headers={"Content-Type": "application/yaml"},
    )


def cmd_submit(client: ApiClient, args: argparse.Namespace) -> int:
    """Every file is tried, so that one bad file does not hide the errors of the next."""
    files = dag_files(args.file)
    answers, rejected = [], 0
    for path in files:
        try:
            dag = submit_one(client, path)
        except ApiError as exc:
            if exc.status != 400:
                raise
            rejected += 1
            for error in exc.errors:
                print(f"flowforge: {path}: {error}", file=sys.stderr)
            continue
        answers.append(dag)
        if not args.json:
            print(f"{dag['dag_id']}: {dag.get('outcome')}, version {dag.get('version')} ({path})")
    if args.json:  # one file: its answer as is; several: a list of answers
        print_json(answers[0] if len(files) == 1 and answers else answers)
    if rejected:
        raise CliError(f"{rejected} of {len(files)} file(s) rejected")
    return 0


# --- runs -----------------------------------------------------------------------------


def parse_params(pairs: list[str]) -> dict:
    """KEY=VALUE pairs; a value is JSON when it parses (3, true, [1,2]), else a string."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--param wants KEY=VALUE, got {pair!r}")
        try:
            boundary.check_json_depth(value.encode("utf-8", "surrogatepass"))
            params[key] = json.loads(value)
        except boundary.LimitExceeded as exc:
            raise CliError(f"--param {key}: {exc}") from None
        except ValueError:
            params[key] = value
    return params


def cmd_trigger(client: ApiClient, args: argparse.Namespace) -> int:
    body = {"dag_id": args.dag_id, "triggered_by": "cli", "params": parse_params(args.param)}
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    run = client.post("/api/v1/runs", json=body, headers=headers)
    return show_then_wait(
        client, args, run, f"run {run['run_id']} of {run['dag_id']}: {run['state']}"
    )


def cmd_backfill(client: ApiClient, args: argparse.Namespace) -> int:
    body = {"start": args.start, "end": args.end}
    done = client.post(f"/api/v1/dags/{args.dag_id}/backfill", json=body)
    return show(args, done, lambda: render_backfill(done))


def cmd_runs(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.get("/api/v1/runs", dag_id=args.dag_id, state=args.state, page_size=args.limit)
    return show_page(args, page, render_runs, "no runs")


def cmd_run(client: ApiClient, args: argparse.Namespace) -> int:
    run = client.get(f"/api/v1/runs/{segment(args.run_id)}")
    return show(args, run, lambda: render_run(run))


def cmd_cancel(client: ApiClient, args: argparse.Namespace) -> int:
    run = client.post(f"/api/v1/runs/{segment(args.run_id)}/cancel")
    return show(args, run, lambda: f"run {run['run_id']}: {run['state']}")


def cmd_logs(client: ApiClient, args: argparse.Namespace) -> int:
    path = f"/api/v1/runs/{segment(args.run_id)}/tasks/{segment(args.task_id)}/logs"
    logs = client.get(path)
    return show(args, logs, lambda: render_logs(logs))


# --- DAGs, system, dead letters -------------------------------------------------------


def cmd_dags(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.get("/api/v1/dags", page_size=args.limit)
    return show_page(args, page, render_dags, "no DAGs; submit one with: flowforge submit -f FILE")


def cmd_pause(client: ApiClient, args: argparse.Namespace) -> int:
    """`pause` or `unpause`, by the `paused` default its subparser sets."""
    action = "pause" if args.paused else "unpause"
    dag = client.post(f"/api/v1/dags/{segment(args.dag_id)}/{action}")
    state = "paused" if dag.get("is_paused") else "unpaused"  # as the server has it now
    return show(args, dag, lambda: f"{dag['dag_id']}: {state}")


def cmd_delete(client: ApiClient, args: argparse.Namespace) -> int:
    """Deactivate: the API keeps the DAG and its runs, and answers 204 with no body."""
    client.delete(f"/api/v1/dags/{segment(args.dag_id)}")
    answer = {"dag_id": args.dag_id, "is_active": False}
    message = (
        f"{args.dag_id}: deactivated (no new runs; its history is kept; "
        "submit it again to reactivate)"
    )
    return show(args, answer, lambda: message)


def cmd_pools(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.get("/api/v1/pools", page_size=args.limit)
    return show_page(
        args, page, render_pools, "no pools; create one with: flowforge pool NAME --slots N"
    )


def cmd_pool(client: ApiClient, args: argparse.Namespace) -> int:
    """Create the pool or set its slots (and description); the API says which it did."""
    body: dict[str, object] = {"name": args.name, "slots": args.slots}
    if args.description is not None:
        body["description"] = args.description
    pool = client.post("/api/v1/pools", json=body)
    message = (
        f"pool {pool['name']} {pool.get('outcome')}: "
        f"{pool['slots']} slots, {pool['running']} running"
    )
    return show(args, pool, lambda: message)


def cmd_status(client: ApiClient, args: argparse.Namespace) -> int:
    status = client.get("/api/v1/status")
    return show(args, status, lambda: render_status(status, client.base_url))


def cmd_workers(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.get("/api/v1/workers", all="true" if args.all else None, page_size=1000)
    return show_page(args, page, render_workers, "no worker has sent a heartbeat lately")


def cmd_dlq(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.get("/api/v1/dlq", page_size=args.limit)
    return show_page(args, page, render_dead_letters, "the dead-letter queue is empty")


def cmd_dlq_retry(client: ApiClient, args: argparse.Namespace) -> int:
    run = client.post(f"/api/v1/dlq/{segment(args.id)}/retry")
    message = f"dead letter {args.id} retried: run {run['run_id']} is {run['state']}"
    return show(args, run, lambda: message)


# --- parser and entry point -------------------------------------------------------------


def global_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name. SUPPRESS leaves them unset
    when absent, so a value given after the command is not reset by its subparser."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--api-url",
        default=argparse.SUPPRESS,
        help=f"FlowForge server (env FLOWFORGE_API_URL; default {DEFAULT_API_URL})",
    )
    options.add_argument(
        "--token", default=argparse.SUPPRESS, help="API token (env FLOWFORGE_TOKEN)"
    )
    options.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the API's JSON answer instead of a table",
    )
    return options


def add_commands(commands, options: argparse.ArgumentParser) -> None:
    def command(name: str, handler, summary: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[options], help=summary, description=summary)
        parser.set_defaults(handler=handler)
        return parser

    submit = command("submit", cmd_submit, "submit DAG files (a folder: its *.yaml/*.yml)")
    submit.add_argument("--file", "-f", action="append", required=True, metavar="PATH")

    trigger = command("trigger", cmd_trigger, "start a run of a DAG")
    trigger.add_argument("dag_id")
    trigger.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE")
    trigger.add_argument("--wait", "-w", action="store_true", help="wait for the run to end")
    trigger.add_argument("--idempotency-key", metavar="KEY", help="a repeat returns the first run")
    trigger.add_argument("--timeout", type=float, metavar="SECS", help="give up waiting after")
    trigger.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)

    backfill = command("backfill", cmd_backfill, "a run for every tick in a past window")
    backfill.add_argument("dag_id")
    backfill.add_argument("--start", required=True, help="ISO 8601 date or date-time")
    backfill.add_argument("--end", required=True, help="ISO 8601 date or date-time")

    command("dags", cmd_dags, "list DAGs").add_argument("--limit", type=int, default=1000)
    pause = command("pause", cmd_pause, "stop a DAG's scheduled runs")
    pause.add_argument("dag_id")
    pause.set_defaults(paused=True)
    unpause = command("unpause", cmd_pause, "resume a DAG's scheduled runs")
    unpause.add_argument("dag_id")
    unpause.set_defaults(paused=False)
    delete = command("delete", cmd_delete, "deactivate a DAG (no new runs; history kept)")
    delete.add_argument("dag_id")
    runs = command("runs", cmd_runs, "list recent runs, newest first")
    runs.add_argument("--dag-id")
    runs.add_argument("--state", choices=sorted(FINAL_STATES | {"queued", "running"}))
    runs.add_argument("--limit", type=int, default=20)
    command("run", cmd_run, "show a run and its tasks").add_argument("run_id")
    command("cancel", cmd_cancel, "cancel a run").add_argument("run_id")
    logs = command("logs", cmd_logs, "show every attempt's output of a task")
    logs.add_argument("run_id")
    logs.add_argument("task_id")
    add_repair_commands(command)
    command("pools", cmd_pools, "list pools: slots and tasks running").add_argument(
        "--limit", type=int, default=1000
    )
    pool = command("pool", cmd_pool, "create a pool, or set its slots")
    pool.add_argument("name")
    pool.add_argument("--slots", type=int, required=True, help="tasks of the pool run at once")
    pool.add_argument("--description", help="kept as it is when left out")
    command("status", cmd_status, "counts by state, queue depths, workers")
    workers = command("workers", cmd_workers, "workers seen by heartbeat")
    workers.add_argument("--all", action="store_true", help="include workers gone quiet")
    command("dlq", cmd_dlq, "list the dead-letter queue").add_argument(
        "--limit", type=int, default=50
    )
    command("dlq-retry", cmd_dlq_retry, "run a dead-lettered task again").add_argument("id")


def build_parser() -> argparse.ArgumentParser:
    options = global_options()
    parser = argparse.ArgumentParser(
        prog="flowforge", parents=[options], description="Drive a FlowForge server."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(commands, options)
    return parser


def client_for(args: argparse.Namespace) -> ApiClient:
    url = getattr(args, "api_url", None) or os.environ.get("FLOWFORGE_API_URL") or DEFAULT_API_URL
    token = getattr(args, "token", None) or os.environ.get("FLOWFORGE_TOKEN") or None
    return ApiClient(url, token)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    try:
        return args.handler(client_for(args), args)
    except CliError as exc:
        print(f"flowforge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `flowforge runs | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
