from django.urls import path

from pipelines_ui.api import endpoint_pages

urlpatterns = [
    path("endpoints/", endpoint_pages.endpoint_list, name="endpoint_list"),
    path("endpoints/<int:endpoint_id>/", endpoint_pages.endpoint_detail, name="endpoint_detail"),
    path("endpoints/<int:endpoint_id>/versions/", endpoint_pages.endpoint_add_version, name="endpoint_add_version"),
    path("endpoints/<int:endpoint_id>/default/", endpoint_pages.endpoint_set_default, name="endpoint_set_default"),
    path("pipelines/<int:pk>/endpoints/new/", endpoint_pages.endpoint_create, name="endpoint_create"),
]
