from django.urls import path

from runs.registry import lineage_views, views
from runs.urls import NameConverter  # noqa: F401 - registers the `name` converter

urlpatterns = [
    path("models/", views.model_list, name="model_list"),
    path("models/new/", views.model_upload, name="model_upload"),
    path("models/<int:model_id>/", views.model_detail, name="model_detail"),
    path("models/<int:model_id>/versions/<name:version>/download/", views.model_download, name="model_download"),
    path("models/<int:model_id>/versions/<name:version>/archive/", views.model_archive_view, name="model_archive"),
    path(
        "runs/<int:run_id>/steps/<name:step_name>/outputs/<name:output_name>/register-model/",
        views.register_step_output_as_model,
        name="step_output_register_model",
    ),
    path("lineage/data/<int:version_id>/", lineage_views.lineage_data, name="lineage_data"),
    path("lineage/models/<int:version_id>/", lineage_views.lineage_model, name="lineage_model"),
    path("lineage/runs/<int:run_id>/", lineage_views.lineage_run, name="lineage_run"),
]
