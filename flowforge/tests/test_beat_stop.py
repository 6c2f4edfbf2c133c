"""`celery beat` stops on the first SIGTERM or Ctrl-C, also one whose SystemExit Python drops
(flowforge/beat.py): a supervisor's stop or a person's Ctrl-C is never lost."""

from __future__ import annotations

import signal
import sys
import threading
import weakref

import pytest
from celery import beat
from django.db import connection

from flowforge.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def signal_handlers():
    """The test installs beat's handlers in this process; they are put back afterwards."""
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)


def test_a_sigterm_whose_exit_python_drops_still_stops_the_scheduler(signal_handlers, monkeypatch):
    service = beat.Service(app, max_interval=1, scheduler_cls=app.conf.beat_scheduler)
    app.Beat().install_sync_handler(service)  # what `celery -A flowforge beat` installs
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)

    # A signal handled while a weakref callback runs, as happens while the scheduler starts
    # up and the garbage collector runs: Python reports the handler's SystemExit as
    # "Exception ignored" and carries on.
    class Doomed:
        pass

    doomed = Doomed()
    _ref = weakref.ref(doomed, lambda ref: signal.raise_signal(signal.SIGTERM))
    del doomed
    assert [type(d.exc_value) for d in dropped] == [SystemExit]

    def run_beat() -> None:
        try:
            service.start()
        finally:
            connection.close()  # this thread's own, which the test database's drop would meet

    loop = threading.Thread(target=run_beat, daemon=True)
    loop.start()
    loop.join(15)
    running = loop.is_alive()
    service.stop(wait=running)
    assert not running, "beat went on after a SIGTERM"
