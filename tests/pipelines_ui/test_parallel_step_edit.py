"""Editing a `type: parallel` step in the browser: its settings stay while its generated command
does, and a hand-edited command makes it a command step that exports as one."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from pipelines_ui import services
from stepwise.spec import yaml_files
from tests.pipelines_ui.test_views import edit_post_from_page

CORPUS = Path(__file__).resolve().parents[1] / "azureml_corpus" / "parallel"


@pytest.fixture
def parallel_pipeline(team, alice, compute):
    version = services.pipeline_import(team=team, path=CORPUS / "pipeline.yml", user=alice, name="scoring")
    return version.pipeline


def save(alice, pipeline, **changes):
    client = Client()
    client.force_login(alice)
    url = reverse("step_edit", args=[pipeline.pk, "score"])
    data = edit_post_from_page(client, url)
    data.update(changes)
    response = client.post(url, data, follow=True)
    assert "Saved step score." in response.content.decode()
    pipeline.refresh_from_db()
    return services.version_spec_with_files(pipeline.latest_version)


def test_an_edit_that_keeps_the_command_keeps_the_parallel_settings(alice, parallel_pipeline):
    spec = save(alice, parallel_pipeline, display_name="Score readings")
    step = spec.jobs["score"]
    assert step.display_name == "Score readings"
    assert step.parallel is not None and step.parallel.mini_batch_error_threshold == 1
    assert "type: parallel" in yaml_files(spec)["pipeline.yml"].decode()


def test_a_hand_edited_command_makes_it_a_command_step(alice, parallel_pipeline):
    spec = services.version_spec_with_files(parallel_pipeline.latest_version)
    edited = spec.jobs["score"].command.replace("--mini-batch-error-threshold 1", "--mini-batch-error-threshold 5")
    spec = save(alice, parallel_pipeline, command=edited)
    step = spec.jobs["score"]
    assert step.parallel is None and step.command == edited
    exported = yaml_files(spec)
    assert "type: parallel" not in exported["pipeline.yml"].decode()
    assert "--mini-batch-error-threshold 5" in exported["components/score.yml"].decode()
