"""The admin of execution state (and of DAGs, with the action that starts their runs).

Every row here is the engine's: read-only, changed only by actions that call
runs.services, as the API does.
"""

from . import dags, dead_letters, runs, tasks, workers  # noqa: F401  (each registers its models)
