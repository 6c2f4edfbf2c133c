from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"

    def ready(self) -> None:
        from . import dispatch  # noqa: F401  (connects the completion handler)
