"""The step preview endpoint: drawn from the posted form, nothing saved, authorized like editing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from pipelines_ui.models import PipelineVersion
from tests.runs.conftest import make_pipeline

pytestmark = pytest.mark.django_db


def form_data(**overrides) -> dict:
    data = {
        "name": "report",
        "command": "echo ${{inputs.model}}",
        "max_retries": "0",
        "is_deterministic": "on",
        "in-TOTAL_FORMS": "1",
        "in-INITIAL_FORMS": "0",
        "in-0-name": "model",
        "in-0-type": "uri_file",
        "in-0-source": "output:train.model",
        "out-TOTAL_FORMS": "0",
        "out-INITIAL_FORMS": "0",
        "code-TOTAL_FORMS": "0",
        "code-INITIAL_FORMS": "0",
    }
    return {**data, **overrides}


@pytest.fixture
def pipeline(team, alice):
    return make_pipeline(team, alice)  # prep -> train -> report


def preview_url(pipeline, step: str = "report") -> str:
    return reverse("step_preview", args=[pipeline.pk]) + f"?step={step}"


def test_a_rename_is_previewed_and_not_saved(client, alice, pipeline):
    client.force_login(alice)
    answer = client.post(preview_url(pipeline), form_data(name="summary")).json()
    assert 'id="step&#45;summary"' in answer["html"] and 'id="step&#45;report"' not in answer["html"]
    assert answer["current"] == "step-summary"
    assert answer["note"].startswith("Preview of your unsaved changes")
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 1


def test_a_form_error_shows_the_saved_graph_and_names_it(client, alice, pipeline):
    client.force_login(alice)
    answer = client.post(preview_url(pipeline), form_data(name="Report")).json()
    assert 'id="step&#45;report"' in answer["html"]
    assert answer["note"].startswith("Showing the saved graph") and "upper-case" in answer["note"]


def test_a_viewer_may_not_and_an_outsider_sees_nothing(client, pipeline, viewer, charlie):
    client.force_login(viewer)
    assert client.post(preview_url(pipeline), form_data()).status_code == 403
    client.force_login(charlie)
    assert client.post(preview_url(pipeline), form_data()).status_code == 404
    assert client.get(preview_url(pipeline)).status_code == 405
