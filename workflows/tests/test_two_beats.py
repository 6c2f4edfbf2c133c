"""Two real beat processes, a real worker, a `* * * * *` DAG: one run per tick, each at
the tick the API promised (CONTRACT section 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection

from dags.models import Dag
from runs.models import DagRun
from testkit.engine import ROOT, database_url, submit, terminate, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

EVERY_MINUTE = """
id: every-minute
schedule: "* * * * *"
tasks:
  - {id: a, command: "true", queue: nobody-listens}
"""


def start_beat(folder: Path) -> subprocess.Popen:
    """A `celery beat` on this session's test database and broker."""
    folder.mkdir()
    # LOG_LEVEL=DEBUG keeps beat's "Sending due task" lines, which show it firing.
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "LOG_LEVEL": "DEBUG",
    }
    env.pop("FLOWFORGE_TEST_DB_NAME", None)
    with open(folder / "beat.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "flowforge", "beat", "-l", "info"],
            cwd=folder,  # beat's own files stay in the test's folder
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def test_two_beats_make_exactly_one_run_per_tick(worker, tmp_path):
    dag = submit(EVERY_MINUTE)
    first = Dag.objects.get(pk=dag.pk).next_run_at
    beats = [start_beat(tmp_path / f"beat{n}") for n in (1, 2)]
    try:
        wait_for(
            lambda: DagRun.objects.filter(dag=dag, logical_date__gt=first).exists(),
            timeout=150,
            interval=0.5,
            message="the runs of two ticks",
        )
    finally:
        terminate(*beats)
    ticks = Counter(DagRun.objects.filter(dag=dag).values_list("logical_date", flat=True))
    assert sorted(ticks)[:2] == [first, first + timedelta(minutes=1)]
    assert set(ticks.values()) == {1}, ticks
    assert {run.triggered_by for run in DagRun.objects.filter(dag=dag)} == {"schedule"}
    for n in (1, 2):  # both beats were firing the scheduler all along
        log = (tmp_path / f"beat{n}" / "beat.log").read_text()
        assert log.count("Sending due task flowforge.schedule") > 30, log[-2000:]
