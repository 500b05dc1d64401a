from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from pipelines_ui.sign_in_form import SignInForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=SignInForm), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("runs.urls")),
    path("", include("runs.data_urls")),
    path("", include("runs.registry.urls")),
    path("api/v1/", include("pipelines_ui.api.urls")),
    path("", include("pipelines_ui.api.account_urls")),
    path("", include("pipelines_ui.api.endpoint_urls")),
    path("", include("pipelines_ui.api.schedule_urls")),
    path("", include("pipelines_ui.api.data_trigger_urls")),
    path("", include("pipelines_ui.api.notification_urls")),
    path("", include("pipelines_ui.authoring_urls")),
    path("", include("pipelines_ui.team_urls")),
    path("", include("pipelines_ui.template_urls")),
    path("", include("pipelines_ui.component_urls")),
    path("", RedirectView.as_view(pattern_name="pipeline_list", permanent=False), name="home"),
]
