"""The editor's side of secret inputs: declared without a default, bound only to a pipeline input."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from pipelines_ui.forms import SOURCE_LITERAL, PipelineInputForm, source_to_binding
from stepwise.spec import ParentInput


def test_a_secret_pipeline_input_takes_no_default_in_the_editor():
    form = PipelineInputForm({"name": "token", "type": "secret", "default": "hunter2-value"})
    assert not form.is_valid()
    assert form.errors["default"] == ["A secret takes no default: its value is given when a run starts."]
    form = PipelineInputForm({"name": "token", "type": "secret", "default": ""})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["default_value"] is None


def test_a_secret_step_input_takes_a_pipeline_input_not_a_typed_value():
    with pytest.raises(ValidationError, match="never a typed value"):
        source_to_binding(SOURCE_LITERAL, "secret", "hunter2-value")
    assert source_to_binding("input:token", "secret", "") == ParentInput("token")
