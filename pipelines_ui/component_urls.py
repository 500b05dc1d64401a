from django.urls import path

from pipelines_ui import component_views

urlpatterns = [
    path("components/", component_views.component_list, name="component_list"),
    path("components/register/", component_views.component_register, name="component_register"),
    path("components/<int:component_id>/", component_views.component_detail, name="component_detail"),
    path(
        "pipelines/<int:pk>/steps/<str:name>/register-component/",
        component_views.component_register_step,
        name="component_register_step",
    ),
]
