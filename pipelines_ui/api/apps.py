from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "pipelines_ui.api"
    label = "api"
    verbose_name = "REST API"

    def ready(self) -> None:
        from pipelines_ui.api import notifications
        from runs.signals import run_ended

        run_ended.connect(notifications.outbox_on_run_end, dispatch_uid="stepwise-notification-outbox")
