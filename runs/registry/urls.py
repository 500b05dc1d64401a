from django.urls import path

from runs.registry import deployment_views, lineage_views, views
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
    path("deployments/", deployment_views.deployment_list, name="deployment_list"),
    path("deployments/new/", deployment_views.deployment_create, name="deployment_create"),
    path("deployments/<int:deployment_id>/", deployment_views.deployment_detail, name="deployment_detail"),
    path("deployments/<int:deployment_id>/swap/", deployment_views.deployment_swap_view, name="deployment_swap"),
    path(
        "deployments/<int:deployment_id>/rollback/",
        deployment_views.deployment_rollback_view,
        name="deployment_rollback",
    ),
    path("deployments/<int:deployment_id>/test/", deployment_views.deployment_test, name="deployment_test"),
]
