from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"

    def ready(self) -> None:
        from . import checks, heartbeats  # noqa: F401  (they register checks and handlers)
