"""`python -m bench.run` (make bench): every benchmark on its own database and Redis
database, with its own workers; results to bench/results/<name>.md and .json.

    make bench                                   all benchmarks, the issue's sizes
    make bench ARGS="--quick"                    smaller sizes, fewer repetitions
    make bench ARGS="--only chain,db_work"       some benchmarks only
    make bench ARGS="--only load_jobs --jobs 20000 --repeat 1"
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from .context import Context, Sizes

BENCHMARKS = {
    "chain": "bench.chain",
    "throughput": "bench.throughput",
    "flat_cost": "bench.flat_cost",
    "db_work": "bench.db_work",
    "api": "bench.api_load",
    "scale_out": "bench.scale_out",
    "load_jobs": "bench.load_jobs",
    "slot_cost": "bench.slot_cost",
    "pages": "bench.pages",
    "metrics": "bench.metrics_scrape",
    "events": "bench.events",
}
RESULTS = Path(__file__).resolve().parent / "results"


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    return names


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(item) for item in text.split(","))


SIZE_OPTIONS = {
    "chain": (int, "tasks in the chain"),
    "tasks": (int, "task instances per throughput workload"),
    "widths": (_numbers, "fan-out widths of the throughput workloads, e.g. 100,1000"),
    "flat_big": (int, "tasks of the big DAG (flat cost)"),
    "flat_samples": (int, "small-DAG tasks timed per repetition (flat cost)"),
    "db_width": (int, "fan-out width whose database work is counted"),
    "api_requests": (int, "HTTP requests per API figure"),
    "concurrency": (int, "HTTP clients at once"),
    "scale_tasks": (int, "task instances per scale-out point"),
    "scale_procs": (_numbers, "worker processes per scale-out point, e.g. 1,2,4"),
    "jobs": (int, "jobs of the load test"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repetitions")
    parser.add_argument("--repeat", type=int, help="repetitions of each figure (default 3)")
    parser.add_argument("--only", type=_names, help=f"comma list of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--skip", type=_names, default=[], help="comma list to leave out")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--name", help="results file name (default: latest, or the --only list)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE",
        help="extra environment for this process, workers and gunicorn (e.g. CONN_MAX_AGE=60)",
    )  # fmt: skip
    for name, (kind, text) in SIZE_OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, help=text)
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    for name in SIZE_OPTIONS:
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))
    return sizes


def selected(args: argparse.Namespace) -> list[str]:
    return [name for name in (args.only or BENCHMARKS) if name not in args.skip]


def _extra_env(pairs: list[str]) -> dict[str, str]:
    extra = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env {pair!r}: expected KEY=VALUE")
        extra[key] = value
    return extra


def _prepare_django(log_file: Path) -> None:
    """Set Django up on the bench database and migrate it. The engine's own log lines
    (one per attempt, when the bench plays the worker) go to a file, as a worker's would."""
    import logging

    import django
    from django.core.management import call_command

    django.setup()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.FileHandler(log_file))
    call_command("migrate", verbosity=0, interactive=False)


def run_one(ctx: Context, name: str):
    """One benchmark's result; one that crashed is reported as a problem, and the others
    still run."""
    from .stats import BenchResult

    ctx.log(f"--- {name}")
    started = time.monotonic()
    try:
        result = importlib.import_module(BENCHMARKS[name]).run(ctx)
    except Exception:  # noqa: BLE001 - reported in the results, and the exit status
        ctx.log(traceback.format_exc())
        crash = traceback.format_exc().strip().splitlines()[-1]
        result = BenchResult(name, name, "crashed", problems=[f"crashed: {crash}"])
    result.details["wall_secs"] = round(time.monotonic() - started, 1)
    return result


def run_benchmarks(ctx: Context, names: list[str]) -> list:
    return [run_one(ctx, name) for name in names]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names, sizes = selected(args), sizes_from(args)
    repeat = args.repeat or (2 if args.quick else 3)
    from . import report
    from .services import bench_environment

    with bench_environment(_extra_env(args.env)) as env:
        _prepare_django(env.workdir / "bench.log")
        ctx = Context(env, sizes, repeat)
        ctx.log(f"database {env.db_url}, broker {env.broker_url}; running {', '.join(names)}")
        machine = report.environment_facts()
        results = run_benchmarks(ctx, names)
        name = args.name or ("latest" if args.only is None else "-".join(names))
        given = vars(args) | {"repeat": repeat, "argv": sys.argv[1:] if argv is None else argv}
        paths = report.write(args.out, name, machine, given, sizes, results)
    for path in paths:
        print(path)
    failed = [f"{result.name}: {problem}" for result in results for problem in result.problems]
    for problem in failed:
        print(f"PROBLEM {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
