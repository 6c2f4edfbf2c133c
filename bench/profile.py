"""`python -m bench.profile`: where a worker's time per task goes, sampled by py-spy.

Triggers fan-out runs of no-op python tasks (as bench/throughput.py does), starts one
`celery worker -c 2`, records it with `py-spy record --subprocesses` while it drains
them, and writes bench/results/profile.md and .json: the functions that hold the largest
share of the pool processes' samples (a function counts once per sample when it is
anywhere on the stack), and the same in ms per task (py-spy is pinned in
requirements.txt; it needs ptrace, which containers may deny).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .run import RESULTS, _prepare_django

PROJECT_CODE = re.compile(r"\((?:bench|dags|flowforge|runs|workflows)/")
# Where the database and broker time goes, whoever calls it.
PLUMBING = re.compile(
    r"^(BaseDatabaseWrapper\.ensure_connection|DatabaseWrapper\._close|BaseDatabaseWrapper\._commit"
    r"|CursorWrapper\._execute|Celery\.send_task|DjangoWorkerFixup\.close_database) "
)
LINE_NUMBER = re.compile(r":\d+\)$")
RATE = 250  # samples per second


def aggregate(raw: Path) -> dict:
    """Inclusive and self sample counts per function, pool processes only (the samples
    whose stack passes through two `process` frames: the worker's main, then a child)."""
    inclusive, own, total = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        code = [LINE_NUMBER.sub(")", f) for f in frames if not f.startswith("process ")]
        if len(frames) - len(code) < 2 or not code:
            continue
        total += int(count)
        inclusive.update(dict.fromkeys(set(code), int(count)))
        own[code[-1]] += int(count)
    return {"samples": total, "inclusive": inclusive, "self": own}


def top(counts: Counter, total: int, tasks: int, only=None, limit=25) -> list:
    """(share of samples, ms per task, function) of the largest entries; a sample stands
    for 1/RATE s of one pool process's time."""
    rows = [(name, n) for name, n in counts.most_common() if only is None or only(name)]
    return [
        (round(100 * n / total, 1), round(n / RATE / tasks * 1e3, 2), name)
        for name, n in rows[:limit]
    ]


def record(env, runs: int, width: int, raw: Path, idle: bool) -> tuple[int, float]:
    """Drain `runs` fan-outs under py-spy; (task instances, seconds of draining)."""
    from . import workloads
    from .processes import Worker, running

    dag = workloads.submit(workloads.fan_out_spec(f"bench-profile-{width}", width))
    run_ids = workloads.trigger_batch(dag, runs)
    worker = Worker(env, 2).start()
    with running(worker):
        spy = subprocess.Popen(
            [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record",
             "--pid", str(worker.process.pid), "--subprocesses", "--format", "raw",
             "--rate", str(RATE), "--nonblocking", "--output", str(raw),
             *(["--idle"] if idle else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        workloads.wait_runs(run_ids, workloads.timeout_for(runs * width), worker.check_alive)
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    window = workloads.task_window(run_ids)
    return window.count, window.seconds


def markdown(report: dict) -> str:
    lines = [
        "# Where a worker's time per task goes (py-spy)",
        "",
        f"{report['tasks']:,} no-op python tasks ({report['runs']} runs × {report['width']}-task "
        f"fan-out), one `celery worker -c 2`, {report['tasks_per_second']:.1f} tasks/s; "
        f"{report['samples']:,} samples of the pool processes at {RATE} Hz "
        + (
            "(with --idle: wall-clock time, waiting for the next message included). "
            if report.get("idle")
            else "(py-spy's default leaves idle processes out; waiting on PostgreSQL or "
            "Redis in a C call counts). "
        )
        + f"ms/task = samples ÷ {RATE} Hz ÷ tasks.",
        "",
    ]
    sections = (
        ("Project code, inclusive", "project"),
        ("Database and broker plumbing, inclusive", "plumbing"),
        ("Everything, self", "self"),
    )
    for title, key in sections:
        lines += [f"## {title}", "", "| share | ms/task | function |", "| --- | --- | --- |"]
        lines += [f"| {share}% | {ms} | `{name}` |" for share, ms, name in report[key]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--idle", action="store_true", help="sample idle time too (wall clock)")
    args = parser.parse_args(argv)
    from .services import bench_environment

    with bench_environment() as env:
        _prepare_django(env.workdir / "bench.log")
        raw = env.workdir / "profile.raw"
        tasks, seconds = record(env, args.runs, args.width, raw, args.idle)
        found = aggregate(raw)
    total = found["samples"]
    report = {
        "runs": args.runs,
        "width": args.width,
        "tasks": tasks,
        "tasks_per_second": tasks / seconds,
        "samples": total,
        "idle": args.idle,
        "project": top(found["inclusive"], total, tasks, PROJECT_CODE.search),
        "plumbing": top(found["inclusive"], total, tasks, PLUMBING.search),
        "self": top(found["self"], total, tasks),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "profile.md").write_text(markdown(report) + "\n")
    print(args.out / "profile.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
