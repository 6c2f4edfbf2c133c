"""FlowForge: a DAG workflow orchestrator on Django and Celery."""

import os
import sys
from pathlib import Path


def _prometheus_multiprocess_dir() -> None:
    """Where each FlowForge process of this host writes its Prometheus counters, so that
    the web's /metrics sums them all (prometheus_client's multiprocess mode):
    PROMETHEUS_MULTIPROC_DIR, by default `metrics/` under the var dir (FLOWFORGE_VAR_DIR,
    as in settings.py). Set it empty for one process's own metrics only.

    prometheus_client reads the variable once, when it is first imported, which must not
    come first: `celery` imports it (through flower's command plugin) before it imports
    this package. So it is read again here, before any FlowForge metric exists. The
    directory itself is made where metrics are first counted (runs/telemetry.py).
    """
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if value is None:
        var_dir = os.environ.get(
            "FLOWFORGE_VAR_DIR", Path(__file__).resolve().parent.parent / "var"
        )
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(var_dir) / "metrics")
    elif not value:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


_prometheus_multiprocess_dir()

from .celery import app as celery_app  # noqa: E402  (after the metrics' directory is known)

__all__ = ["celery_app"]
