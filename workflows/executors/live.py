"""The output of a running attempt as it comes, for the task page's live tail.

The executor writes both streams into one `LiveOutput` in the order they arrive; the
lease thread takes what changed with each renewal (workflows/leases.py), so the live
tail costs no round trip of its own and nothing in the finish: an attempt shorter than
one heartbeat never writes it at all.
"""

from __future__ import annotations

import io
import threading

LIVE_OUTPUT_CHARS = 16_000  # the last characters kept (runs.models.TaskInstance.live_output)


class LiveOutput(io.TextIOBase):
    """A writable text stream keeping the last LIVE_OUTPUT_CHARS characters, written by
    the executor's thread and taken by the lease thread."""

    def __init__(self, limit: int = LIVE_OUTPUT_CHARS) -> None:
        super().__init__()
        self._limit = limit
        self._text = ""
        self._changed = False
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._text = (self._text + text)[-self._limit :]
            self._changed = self._changed or bool(text)
        return len(text)

    def take(self) -> str | None:
        """The output so far if it changed since the last take, else None."""
        with self._lock:
            if not self._changed:
                return None
            self._changed = False
            return self._text


class Tee(io.TextIOBase):
    """Writes to a stream and to a LiveOutput: a python callable's stdout or stderr."""

    def __init__(self, stream: io.TextIOBase, live: LiveOutput) -> None:
        super().__init__()
        self._stream, self._live = stream, live

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._live.write(text)
        return self._stream.write(text)
