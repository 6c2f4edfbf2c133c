"""The worker's side of /metrics (CONTRACT section 11): its counts are written to the
host's multiprocess directory (runs/telemetry.py), which this module keeps tidy, and,
on a host without the web process, served on a port of the worker's own.

- A worker's main process starting cleans the directory of exited processes' files when
  none of its writers is alive (the rule: runs/telemetry.py, prepare_multiprocess_dir).
- A pool process exiting is marked dead, so its live gauges (none of FlowForge's own)
  leave the sums.
- With FLOWFORGE_WORKER_METRICS_PORT set, the main process serves the directory's sums
  on that port once the worker is ready. Set it only where no web process shares the
  directory: the web's /metrics already serves what is counted on its host, and a second
  endpoint over the same files would count it twice. The gauges (database and broker
  wide) are the web's alone.
"""

from __future__ import annotations

import logging
import os

from celery.signals import worker_init, worker_process_shutdown, worker_ready
from django.conf import settings
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from runs import telemetry

log = logging.getLogger(__name__)


@worker_init.connect
def _clean_on_start(**kwargs) -> None:
    telemetry.prepare_multiprocess_dir()


@worker_process_shutdown.connect
def _mark_pool_process_dead(pid: int | None = None, **kwargs) -> None:
    if telemetry.multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid or os.getpid(), str(telemetry.multiprocess_dir()))


@worker_ready.connect
def _serve_when_asked(**kwargs) -> None:
    port = settings.FLOWFORGE_WORKER_METRICS_PORT
    if port:
        serve(port)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve the sums of this host's multiprocess directory on `port` (a thread)."""
    directory = telemetry.multiprocess_dir()
    if directory is None:
        log.error(
            "FLOWFORGE_WORKER_METRICS_PORT=%s needs PROMETHEUS_MULTIPROC_DIR (it is set "
            "empty): the worker's pool processes count in files there; not serving",
            port,
        )
        return
    registry = CollectorRegistry()
    registry.register(telemetry.FilesCollector(directory))
    try:
        start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        log.error("metrics: cannot serve on port %s (%s); the worker runs on without", port, exc)
        return
    log.info("metrics: serving this host's worker metrics on port %s (/metrics)", port)
