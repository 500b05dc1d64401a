from django.urls import path

from pipelines_ui import template_views as views

urlpatterns = [
    path("templates/", views.template_gallery, name="template_gallery"),
    path("templates/<int:template_id>/", views.template_detail, name="template_detail"),
    path(
        "templates/<int:template_id>/versions/<int:number>/diff/",
        views.template_version_diff,
        name="template_version_diff",
    ),
    path("templates/<int:template_id>/use/", views.template_use, name="template_use"),
    path("pipelines/<int:pk>/publish/", views.template_publish, name="template_publish"),
    path("pipelines/<int:pk>/duplicate/", views.pipeline_duplicate, name="pipeline_duplicate"),
    path("pipelines/<int:pk>/template-update/", views.template_update, name="template_update"),
]
