from django.urls import path

from runs import views

urlpatterns = [
    path("pipelines/<int:pipeline_id>/run/", views.run_create_view, name="run_create"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/parts/", views.run_parts, name="run_parts"),
    path("runs/<int:run_id>/cancel/", views.run_cancel_view, name="run_cancel"),
    path("runs/<int:run_id>/rerun/", views.run_rerun_view, name="run_rerun"),
    path("runs/<int:run_id>/steps/<str:step_name>/", views.run_detail, name="run_step"),
    path("runs/<int:run_id>/steps/<str:step_name>/log/", views.step_log, name="step_log"),
    path(
        "runs/<int:run_id>/steps/<str:step_name>/outputs/<str:output_name>/",
        views.step_output_download,
        name="step_output",
    ),
]
