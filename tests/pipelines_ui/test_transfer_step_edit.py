"""Editing a `type: data_transfer` step in the browser: it keeps its task while it has no command,
and a command written in makes it a command step."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from pipelines_ui import services
from stepwise.spec import yaml_files
from tests.pipelines_ui.test_views import edit_post_from_page

CORPUS = Path(__file__).resolve().parents[1] / "azureml_corpus" / "data_transfer"


@pytest.fixture
def copy_pipeline(team, alice, compute):
    version = services.pipeline_import(team=team, path=CORPUS / "pipeline.yml", user=alice, name="copying")
    return version.pipeline


def save(alice, pipeline, **changes):
    client = Client()
    client.force_login(alice)
    url = reverse("step_edit", args=[pipeline.pk, "merge_files"])
    data = edit_post_from_page(client, url)
    data.update(changes)
    response = client.post(url, data, follow=True)
    assert "Saved step merge_files." in response.content.decode()
    pipeline.refresh_from_db()
    return services.version_spec_with_files(pipeline.latest_version)


def test_an_edit_without_a_command_keeps_the_transfer(alice, copy_pipeline):
    spec = save(alice, copy_pipeline, display_name="Merge the files")
    step = spec.jobs["merge_files"]
    assert step.display_name == "Merge the files"
    assert step.transfer is not None and step.transfer.task == "copy_data" and step.command == ""
    assert "type: data_transfer" in yaml_files(spec)["pipeline.yml"].decode()


def test_a_written_command_makes_it_a_command_step(alice, copy_pipeline):
    spec = save(alice, copy_pipeline, command="cp -r ${{inputs.folder1}}/. ${{outputs.output_folder}}")
    step = spec.jobs["merge_files"]
    assert step.transfer is None and step.command.startswith("cp -r")
    assert "type: data_transfer" not in yaml_files(spec)["pipeline.yml"].decode()


def test_the_pipeline_and_version_pages_show_the_transfer(alice, copy_pipeline):
    client = Client()
    client.force_login(alice)
    assert client.get(reverse("pipeline_detail", args=[copy_pipeline.pk])).status_code == 200
    version = copy_pipeline.latest_version
    html = client.get(reverse("version_detail", args=[copy_pipeline.pk, version.number])).content.decode()
    assert "Data transfer, <code>copy_data</code> (merge_with_overwrite): run by the worker" in html
