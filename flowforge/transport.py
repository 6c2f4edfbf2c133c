"""kombu's filesystem transport with an atomic publish, for the embedded default.

kombu writes a message file in place, so a polling worker can read it half-written and
die on a JSONDecodeError (kombu issue 1551). Writing under a temporary name that the
consumer ignores and renaming it into place makes every message appear whole.
"""

import os
import uuid
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

# The longest a worker's wait for messages lasts before it looks at its stop flag.
DRAIN_SECS = 0.2


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # consumers only pick up names ending in ".<queue>.msg"
        with open(partial, "wb") as handle:
            handle.write(str_to_bytes(dumps(payload)))
        os.replace(partial, final)


class Transport(filesystem.Transport):
    Channel = Channel

    def drain_events(self, connection, timeout=None):
        # Celery's blocking loop (used with this transport) waits up to 2 s here and
        # only then looks whether the worker was told to stop: a Ctrl-C waited that long
        # for nothing. Polling is what this transport does anyway, so return sooner.
        if timeout is None or timeout > DRAIN_SECS:
            timeout = DRAIN_SECS
        return super().drain_events(connection, timeout=timeout)


def install() -> None:
    """Make ``filesystem://`` URLs use this transport."""
    TRANSPORT_ALIASES["filesystem"] = "flowforge.transport:Transport"
