from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "pipelines_ui.api"
    label = "api"
    verbose_name = "REST API"
