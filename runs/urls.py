from django.urls import path, register_converter

from runs import compare_views, output_views, views, worker_views


class NameConverter:
    """A step or output name: one path segment without control characters (PostgreSQL refuses NUL)."""

    regex = r"[^/\x00-\x1f\x7f]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(NameConverter, "name")

urlpatterns = [
    path("pipelines/<int:pipeline_id>/run/", views.run_create_view, name="run_create"),
    path("runs/", views.run_list, name="run_list"),
    path("pipelines/<int:pipeline_id>/runs/", views.pipeline_runs, name="pipeline_runs"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/parts/", views.run_parts, name="run_parts"),
    path("runs/<int:run_id>/metrics/", compare_views.run_metrics, name="run_metrics"),
    path("runs/compare/", compare_views.run_compare, name="run_compare"),
    path("runs/<int:run_id>/cancel/", views.run_cancel_view, name="run_cancel"),
    path("runs/<int:run_id>/rerun/", views.run_rerun_view, name="run_rerun"),
    path("runs/<int:run_id>/steps/<name:step_name>/", views.run_detail, name="run_step"),
    path("runs/<int:run_id>/steps/<name:step_name>/log/", views.step_log, name="step_log"),
    path(
        "runs/<int:run_id>/steps/<name:step_name>/outputs/<name:output_name>/",
        views.step_output_download,
        name="step_output",
    ),
    path(
        "runs/<int:run_id>/steps/<name:step_name>/outputs/<name:output_name>/files/",
        output_views.step_output_files,
        name="step_output_files",
    ),
    path(
        "runs/<int:run_id>/steps/<name:step_name>/outputs/<name:output_name>/file/",
        output_views.step_output_file,
        name="step_output_file",
    ),
    path("workers/", worker_views.worker_list, name="worker_list"),
    path("workers/<int:worker_id>/drain/", worker_views.worker_drain_view, name="worker_drain"),
    path("workers/<int:worker_id>/undrain/", worker_views.worker_undrain_view, name="worker_undrain"),
]
