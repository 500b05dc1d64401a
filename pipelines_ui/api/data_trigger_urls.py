from django.urls import path

from pipelines_ui.api import data_trigger_pages

urlpatterns = [
    path("pipelines/<int:pk>/data-triggers/", data_trigger_pages.pipeline_data_triggers, name="pipeline_data_triggers"),
    path("data/<int:asset_id>/triggers/", data_trigger_pages.asset_data_triggers, name="asset_data_triggers"),
    path(
        "data-triggers/<int:trigger_id>/enabled/", data_trigger_pages.data_trigger_enabled, name="data_trigger_enabled"
    ),
    path("data-triggers/<int:trigger_id>/delete/", data_trigger_pages.data_trigger_delete, name="data_trigger_delete"),
]
