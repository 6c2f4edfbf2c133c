"""The results files: a Markdown table for people and JSON for tools, with the machine and
the versions they were measured on."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from .context import Sizes
from .stats import BenchResult, Figure

PACKAGES = ("Django", "celery", "kombu", "redis", "psycopg2-binary", "gunicorn", "requests")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return 0.0


def _server_versions() -> dict[str, str]:
    import redis
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    info = redis.Redis.from_url(settings.CELERY_BROKER_URL).info("server")
    return {"PostgreSQL": postgres, "Redis": info["redis_version"]}


def environment_facts() -> dict:
    return {
        "machine": {
            "cores": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "cpu_model": _cpu_model(),
            "kernel": platform.release(),
            "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        },
        "versions": {
            "Python": platform.python_version(),
            **{name: version(name) for name in PACKAGES},
            **_server_versions(),
        },
    }


def _cell(summary: dict | None, digits: int = 2) -> str:
    if summary is None:
        return "—"
    low, mid, high = (f"{summary[key]:,.{digits}f}" for key in ("min", "median", "max"))
    return f"**{mid}** ({low}–{high})"


def _figure_row(figure: Figure) -> str:
    data = figure.as_dict()
    baseline = _cell(data["baseline"])
    if data["baseline"] is not None and figure.baseline_label:
        baseline += f" {figure.baseline_label}"
    return (
        f"| {figure.label} | {figure.unit} | {_cell(data['flowforge'])} | {baseline} "
        f"| {_cell(data['ratio'])} |"
    )


def _section(result: BenchResult) -> list[str]:
    lines = [f"## {result.title} (`{result.name}`)", "", result.method, ""]
    lines += [
        "| figure | unit | FlowForge | baseline | ratio FlowForge ÷ baseline |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [_figure_row(figure) for figure in result.figures]
    lines += [""] + [f"- {note}" for note in result.notes]
    lines += [f"- **PROBLEM**: {problem}" for problem in result.problems]
    return lines + [""]


def markdown(facts: dict, args: dict, sizes: Sizes, results: list[BenchResult]) -> str:
    machine, versions = facts["machine"], facts["versions"]
    lines = [
        "# FlowForge benchmarks",
        "",
        f"Measured {facts['finished_at']} with `python -m bench.run {' '.join(args['argv'])}`"
        f" ({args['repeat']} repetition(s); cells: **median** (min–max)).",
        "",
        f"Machine: {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"{machine['cpu_model']}, Linux {machine['kernel']}, load average at start "
        f"{machine['load_average_at_start']} (other engineers share this machine).",
        "",
        "Versions: " + ", ".join(f"{name} {number}" for name, number in versions.items()) + ".",
        "",
        "Sizes: " + ", ".join(f"{key}={value}" for key, value in sizes.as_dict().items()) + ".",
        "",
    ]
    for result in results:
        lines += _section(result)
    return "\n".join(lines)


def write(
    folder: Path, name: str, facts: dict, args: dict, sizes: Sizes, results: list[BenchResult]
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    facts = facts | {"finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    args = {key: value for key, value in args.items() if key != "out"}
    document = {
        **facts,
        "arguments": args,
        "sizes": sizes.as_dict(),
        "benchmarks": {result.name: result.as_dict() for result in results},
    }
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    md_path.write_text(markdown(facts, args, sizes, results) + "\n")
    return [md_path, json_path]
