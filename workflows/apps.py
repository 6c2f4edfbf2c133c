from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"

    def ready(self) -> None:
        from . import checks, dispatch, heartbeats  # noqa: F401  (they register handlers)
