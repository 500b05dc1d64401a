"""Every number the editor takes is bounded: a form error naming the limit, never a 500."""

from __future__ import annotations

import pytest
from django.urls import reverse

from pipelines_ui.models import PipelineVersion
from stepwise.spec.bindings import MAX_RETRIES, MAX_TIMEOUT_S
from tests.pipelines_ui.test_views import step_post

HUGE = "99999999999999999999999"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timeout_s", HUGE, f"at most {MAX_TIMEOUT_S} seconds"),
        ("timeout_s", "0", "greater than or equal to 1"),
        ("max_retries", str(MAX_RETRIES + 1), f"less than or equal to {MAX_RETRIES}"),
        ("max_retries", HUGE, f"less than or equal to {MAX_RETRIES}"),
        ("max_retries", "-1", "greater than or equal to 0"),
    ],
)
def test_step_form_numbers_out_of_range_are_form_errors(client, alice, pipeline, field, value, message):
    client.force_login(alice)
    response = client.post(reverse("step_create", args=[pipeline.pk]), step_post(**{field: value}))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert PipelineVersion.objects.count() == 1


@pytest.mark.parametrize(
    ("value", "message"), [(HUGE, "Expected an integer from"), ("1e400", "Expected a finite number"), ("nan", "finite")]
)
def test_step_literal_inputs_out_of_range_are_form_errors(client, alice, pipeline, value, message):
    client.force_login(alice)
    data = step_post(**{"in-1-type": "integer" if value == HUGE else "number", "in-1-value": value})
    response = client.post(reverse("step_create", args=[pipeline.pk]), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert PipelineVersion.objects.count() == 1


@pytest.mark.parametrize(("type_", "value"), [("integer", str(10**30)), ("number", "1e400")])
def test_pipeline_input_defaults_out_of_range_are_form_errors(client, alice, pipeline, type_, value):
    client.force_login(alice)
    interface = {
        "base_version": "1",
        "pin-TOTAL_FORMS": "1",
        "pin-INITIAL_FORMS": "0",
        "pin-0-name": "big",
        "pin-0-type": type_,
        "pin-0-default": value,
        "pout-TOTAL_FORMS": "0",
        "pout-INITIAL_FORMS": "0",
    }
    response = client.post(reverse("pipeline_interface", args=[pipeline.pk]), interface)
    assert response.status_code == 400
    assert "Expected a" in response.content.decode()
    assert PipelineVersion.objects.count() == 1
