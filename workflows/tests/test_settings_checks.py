"""Settings read strictly from the environment, and system checks for those that must agree."""

import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks

from testkit.engine import ROOT


def check_ids() -> set[str]:
    return {message.id for message in run_checks(tags=["flowforge"])}


def test_a_heartbeat_slower_than_half_the_lease_is_an_error(settings):
    assert check_ids() == set()
    settings.FLOWFORGE_LEASE_SECS, settings.FLOWFORGE_HEARTBEAT_SECS = 10, 6
    assert check_ids() == {"flowforge.E001"}


def test_a_visibility_timeout_below_the_default_task_timeout_is_a_warning(settings):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600}
    assert check_ids() == {"flowforge.W002"}


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("FLOWFORGE_LEASE_SECS", "sixty", "is not a whole number"),
        ("FLOWFORGE_LEASE_SECS", "0", "is not at least 1"),
        ("FLOWFORGE_SHUTDOWN_GRACE_SECS", "nan", "is not at least 0"),
        ("DEBUG", "ture", "is not a boolean"),
        ("LOG_LEVEL", "loud", "is not one of DEBUG, INFO"),
        ("FLOWFORGE_THROTTLE_ANON", "many", "is not a rate such as 1000/min"),
    ],
)
def test_a_malformed_setting_stops_every_process_naming_it(variable, value, says):
    env = {"PATH": os.environ["PATH"], "FLOWFORGE_VAR_DIR": "/tmp", variable: value}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"ImproperlyConfigured: {variable}={value!r} {says}" in done.stderr
