from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"

    def ready(self) -> None:
        # They register checks and signal handlers.
        from . import checks, heartbeats, metrics_server  # noqa: F401
