from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from pipelines_ui.api import component_views, data_trigger_views, schedule_views, team_secret_views, views
from pipelines_ui.api.deployment_views import DeploymentScore

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # The split view serves Swagger UI's start-up script as a file: the CSP forbids inline scripts.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
    path("teams/", views.TeamList.as_view(), name="api_teams"),
    path("teams/<int:team_id>/secrets/", team_secret_views.TeamSecretList.as_view(), name="api_team_secrets"),
    path(
        "teams/<int:team_id>/secrets/<name:name>/",
        team_secret_views.TeamSecretDetail.as_view(),
        name="api_team_secret",
    ),
    path("pipelines/", views.PipelineList.as_view(), name="api_pipelines"),
    path("pipelines/validate/", views.PipelineValidate.as_view(), name="api_pipeline_validate"),
    path("pipelines/<int:pipeline_id>/", views.PipelineDetail.as_view(), name="api_pipeline"),
    path("pipelines/<int:pipeline_id>/versions/", views.VersionList.as_view(), name="api_versions"),
    path("pipelines/<int:pipeline_id>/versions/<int:number>/", views.VersionDetail.as_view(), name="api_version"),
    path(
        "pipelines/<int:pipeline_id>/versions/<int:number>/export/",
        views.VersionExport.as_view(),
        name="api_version_export",
    ),
    path("pipelines/<int:pipeline_id>/runs/", views.PipelineRuns.as_view(), name="api_pipeline_runs"),
    path("runs/", views.RunList.as_view(), name="api_runs"),
    path("runs/<int:run_id>/", views.RunDetail.as_view(), name="api_run"),
    path("runs/<int:run_id>/cancel/", views.RunCancel.as_view(), name="api_run_cancel"),
    path("runs/<int:run_id>/rerun/", views.RunRerun.as_view(), name="api_run_rerun"),
    path("runs/<int:run_id>/metrics/", views.RunMetrics.as_view(), name="api_run_metrics"),
    path("runs/<int:run_id>/steps/<name:step_name>/log/", views.StepLog.as_view(), name="api_step_log"),
    path(
        "runs/<int:run_id>/steps/<name:step_name>/outputs/<name:output_name>/",
        views.StepOutput.as_view(),
        name="api_step_output",
    ),
    path("components/", component_views.ComponentList.as_view(), name="api_components"),
    path("endpoints/", views.EndpointList.as_view(), name="api_endpoints"),
    # {team}: the team's name, URL-encoded (team names hold no "/").
    path("endpoints/<name:team>/<name:name>/runs/", views.EndpointRuns.as_view(), name="api_endpoint_runs"),
    path("endpoints/<name:team>/<name:name>/", views.EndpointDetail.as_view(), name="api_endpoint"),
    path("schedules/", schedule_views.ScheduleList.as_view(), name="api_schedules"),
    path("schedules/<int:schedule_id>/", schedule_views.ScheduleDetail.as_view(), name="api_schedule"),
    path("data-triggers/", data_trigger_views.DataTriggerList.as_view(), name="api_data_triggers"),
    path("data-triggers/<int:trigger_id>/", data_trigger_views.DataTriggerDetail.as_view(), name="api_data_trigger"),
    path("deployments/<name:team>/<name:name>/score", DeploymentScore.as_view(), name="api_deployment_score"),
    # Anything else under /api/v1/ is a JSON 404, not the site's HTML page.
    re_path(r"^[\s\S]*$", views.not_found),  # newlines too: a name may hold %0A
]
