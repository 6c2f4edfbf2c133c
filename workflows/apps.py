from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"

    def ready(self) -> None:
        from . import dispatch, heartbeats  # noqa: F401  (they connect their signal handlers)
