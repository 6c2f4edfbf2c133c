"""Signals between executing an attempt and completing it."""

from django.dispatch import Signal

# Sent by the worker when an attempt has ended; the completion handler in dispatch.py
# records it and releases downstream tasks. kwargs: claim, result, task.
attempt_finished = Signal()
