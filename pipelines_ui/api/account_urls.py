from django.urls import path

from pipelines_ui.api import token_views

urlpatterns = [
    path("account/tokens/", token_views.token_list, name="token_list"),
    path("account/tokens/<int:token_id>/revoke/", token_views.token_revoke, name="token_revoke"),
]
