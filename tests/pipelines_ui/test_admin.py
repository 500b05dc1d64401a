from __future__ import annotations

from django.contrib.auth import get_user_model
from django.urls import reverse


def test_admin_manages_teams_and_shows_versions_read_only(client, pipeline, team):
    root = get_user_model().objects.create_superuser("root", password="pw-root")
    client.force_login(root)
    assert client.get(reverse("admin:pipelines_ui_team_change", args=[team.pk])).status_code == 200
    assert b"memberships-TOTAL_FORMS" in client.get(reverse("admin:pipelines_ui_team_change", args=[team.pk])).content
    assert client.get(reverse("admin:pipelines_ui_pipeline_changelist")).status_code == 200
    version = pipeline.latest_version
    page = client.get(reverse("admin:pipelines_ui_pipelineversion_change", args=[version.pk]))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.get(reverse("admin:pipelines_ui_pipelineversion_add")).status_code == 403
