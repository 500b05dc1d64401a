from django.urls import path

from pipelines_ui import step_preview, views

urlpatterns = [
    path("pipelines/", views.pipeline_list, name="pipeline_list"),
    path("pipelines/new/", views.pipeline_create, name="pipeline_create"),
    path("pipelines/import/", views.pipeline_import, name="pipeline_import"),
    path("pipelines/<int:pk>/", views.pipeline_detail, name="pipeline_detail"),
    path("pipelines/<int:pk>/settings/", views.pipeline_settings, name="pipeline_settings"),
    path("pipelines/<int:pk>/interface/", views.pipeline_interface, name="pipeline_interface"),
    path("pipelines/<int:pk>/steps/new/", views.step_create, name="step_create"),
    path("pipelines/<int:pk>/preview/step/", step_preview.step_preview, name="step_preview"),
    path("pipelines/<int:pk>/steps/<str:name>/", views.step_edit, name="step_edit"),
    path("pipelines/<int:pk>/steps/<str:name>/delete/", views.step_delete, name="step_delete"),
    path("pipelines/<int:pk>/versions/", views.pipeline_versions, name="pipeline_versions"),
    path("pipelines/<int:pk>/versions/<int:number>/", views.version_detail, name="version_detail"),
    path("pipelines/<int:pk>/versions/<int:number>/diff/", views.version_diff, name="version_diff"),
    path("pipelines/<int:pk>/versions/<int:number>/restore/", views.version_restore, name="version_restore"),
    path("pipelines/<int:pk>/export/", views.pipeline_export, name="pipeline_export"),
]
