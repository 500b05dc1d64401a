from django.urls import path

from pipelines_ui import team_views

urlpatterns = [
    path("teams/", team_views.team_list, name="team_list"),
    path("teams/new/", team_views.team_create, name="team_create"),
    path("teams/<int:team_id>/", team_views.team_detail, name="team_detail"),
    path("teams/<int:team_id>/members/add/", team_views.member_add, name="team_member_add"),
    path("teams/<int:team_id>/members/<int:membership_id>/role/", team_views.member_role, name="team_member_role"),
    path(
        "teams/<int:team_id>/members/<int:membership_id>/remove/", team_views.member_remove, name="team_member_remove"
    ),
    path("teams/<int:team_id>/leave/", team_views.team_leave, name="team_leave"),
    path(
        "teams/<int:team_id>/invitations/<int:invitation_id>/revoke/",
        team_views.invitation_revoke,
        name="team_invitation_revoke",
    ),
    path("teams/<int:team_id>/secrets/", team_views.secret_set, name="team_secret_set"),
    path(
        "teams/<int:team_id>/secrets/<str:secret_name>/delete/",
        team_views.secret_delete,
        name="team_secret_delete",
    ),
    path("invitations/<str:token>/", team_views.invitation_accept, name="invitation_accept"),
    path("pipelines/<int:pk>/delete/", team_views.pipeline_delete, name="pipeline_delete"),
]
