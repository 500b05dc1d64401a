from django.apps import AppConfig


class PipelinesUiConfig(AppConfig):
    name = "pipelines_ui"
    verbose_name = "Pipelines"
