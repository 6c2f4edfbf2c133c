"""`celery beat` that stops on the first SIGTERM or Ctrl-C, whenever it comes."""

from __future__ import annotations

from types import FrameType

from celery import beat, platforms
from celery.apps.beat import Beat as CeleryBeat


class Beat(CeleryBeat):
    """Celery's beat application with a stop handler that cannot be lost.

    Celery's own handler saves the schedule and raises SystemExit. Python drops an exception
    raised in a signal handler while a weakref callback or `__del__` runs ("Exception
    ignored in ..."), and the scheduler's start-up, which builds the Django models, runs
    such callbacks: between one in eight and one in forty SIGTERMs sent during start-up
    were lost in our tries, and beat ran on.
    This handler first tells the service to stop, so that its loop ends at its next turn
    even when the SystemExit is dropped; the loop's `finally` saves the schedule either way.
    """

    def install_sync_handler(self, service: beat.Service) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            service.stop()
            raise SystemExit()

        platforms.signals.update(SIGTERM=stop, SIGINT=stop)
