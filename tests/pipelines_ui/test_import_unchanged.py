"""Importing the content a pipeline already has adds no version, and the page says so."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from pipelines_ui.models import Pipeline
from tests.pipelines_ui.test_views import GOOD_YAML

pytestmark = pytest.mark.django_db


def test_reimporting_identical_content_says_nothing_changed(client, alice, team, compute):
    client.force_login(alice)
    first = client.post(
        reverse("pipeline_import"), {"file": SimpleUploadedFile("p.yml", GOOD_YAML), "team": team.pk}, follow=True
    )
    assert "Imported hello_yaml as version 1." in first.content.decode()

    again = client.post(
        reverse("pipeline_import"), {"file": SimpleUploadedFile("p.yml", GOOD_YAML), "team": team.pk}, follow=True
    )
    html = again.content.decode()
    assert "Nothing changed: hello_yaml is already at version 1 with exactly this content" in html
    assert "as version" not in html
    assert Pipeline.objects.get(name="hello_yaml").versions.count() == 1

    changed = GOOD_YAML.replace(b"echo hello", b"echo hello again")
    third = client.post(
        reverse("pipeline_import"), {"file": SimpleUploadedFile("p.yml", changed), "team": team.pk}, follow=True
    )
    assert "Imported hello_yaml as version 2." in third.content.decode()
