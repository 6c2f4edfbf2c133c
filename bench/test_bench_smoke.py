"""CI smoke of the benchmark suite: every benchmark on tiny sizes, as `make bench` runs it
(its own database, Redis database, workers and gunicorn). It checks that the suite
completes and writes well-formed results with every job accounted for; never a timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--quick", "--repeat", "1", "--chain", "5", "--tasks", "40", "--widths", "20",
    "--flat-big", "20", "--flat-samples", "20", "--db-width", "20", "--api-requests", "50",
    "--scale-tasks", "100", "--scale-procs", "1,2", "--jobs", "50",
]  # fmt: skip
# What a pytest session set for itself; the bench claims its own.
SESSION_ONLY = ("CELERY_BROKER_URL", "FLOWFORGE_QUEUE_PREFIX", "FLOWFORGE_TEST_DB_NAME")


def run_bench(out: Path, *args: str, timeout: float) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in SESSION_ONLY}
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--out", str(out), "--name", "smoke", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert (out / "smoke.md").read_text().startswith("# FlowForge benchmarks")
    return json.loads((out / "smoke.json").read_text())


def assert_well_formed(document: dict, names: set[str]) -> None:
    assert document["machine"]["cores"] >= 1
    assert {"Python", "Django", "celery", "kombu", "PostgreSQL", "Redis"} <= set(
        document["versions"]
    )
    assert set(document["benchmarks"]) == names
    for name, result in document["benchmarks"].items():
        assert result["figures"], name
        assert result["problems"] == [], (name, result["problems"])
        for figure in result["figures"]:
            summary = figure["flowforge"]
            assert summary["n"] >= 1 and summary["min"] <= summary["median"] <= summary["max"]
            if figure["comparable"] and figure["baseline_values"]:  # a ratio where it can
                nonzero = sum(1 for value in figure["baseline_values"] if value)
                assert (figure["ratio"] or {"n": 0})["n"] == nonzero, figure


def assert_jobs_accounted_for(result: dict, jobs: int) -> None:
    for outcome in result["details"]["rounds"]:
        audit = outcome["audit"]
        assert audit["jobs"] == jobs
        assert audit["success"] + audit["failed"] == jobs
        assert audit["dead_letters"] == audit["failed"]
        assert audit["row_problem_count"] == 0
        assert outcome["problems"] == []


def test_every_benchmark_runs_on_tiny_sizes(tmp_path):
    document = run_bench(tmp_path, *TINY, timeout=240)
    assert_well_formed(
        document,
        {
            "chain",
            "throughput",
            "flat_cost",
            "db_work",
            "api",
            "scale_out",
            "load_jobs",
            "slot_cost",
            "pages",
            "metrics",
            "events",
        },
    )
    assert_jobs_accounted_for(document["benchmarks"]["load_jobs"], 50)


@pytest.mark.slow
def test_load_test_at_ci_size(tmp_path):
    """Issue 4's CI size: 500 jobs, 20% flaky, two workers; none lost or duplicated."""
    args = ["--only", "load_jobs", "--jobs", "500", "--repeat", "1"]
    document = run_bench(tmp_path, *args, timeout=240)
    assert_well_formed(document, {"load_jobs"})
    assert_jobs_accounted_for(document["benchmarks"]["load_jobs"], 500)
