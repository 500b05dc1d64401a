"""A pipeline with nested pipeline components, run end to end by real workers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from django.urls import reverse

from pipelines_ui.services import pipeline_import
from runs import services
from runs.models import RunState, StepState
from tests.integration.test_execution import log_text, steps_of, wait_run

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "azureml_corpus" / "pipeline_component"
INNER = ["train_and_eval__prep", "train_and_eval__fit__train"]


def test_inner_outputs_reach_the_outer_job_and_a_rerun_reuses_every_step(workers, alice, team, tmp_path, client):
    workers.start(2)
    shutil.copytree(CORPUS, tmp_path / "p")
    version = pipeline_import(team=team, path=tmp_path / "p" / "pipeline.yml", user=alice, name="nested")

    first = wait_run(services.run_create(version=version, user=alice), timeout=120)
    assert first.state == RunState.SUCCEEDED, workers.logs()
    steps = steps_of(first)
    assert set(steps) == {*INNER, "report"}
    assert {s.state for s in steps.values()} == {StepState.SUCCEEDED}
    # prep (level 1) upper-cased the rows, train (level 2) repeated the word twice (the
    # component input's default), and the outer report read train's output through both
    # components' outputs.
    assert "report: hello-hello ALPHA,BETA" in log_text(steps["report"])
    assert "prepared 2 rows" in log_text(steps["train_and_eval__prep"])

    second = wait_run(services.run_create(version=version, user=alice), timeout=120)
    assert second.state == RunState.SUCCEEDED
    again = steps_of(second)
    assert {s.state for s in again.values()} == {StepState.REUSED}
    assert all(s.reused_from.run_id == first.pk for s in again.values())

    # The run page draws the component collapsed as one node, painted from its steps.
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[second.pk]), {"collapse": "component-train_and_eval"})
    html = page.content.decode()
    assert page.status_code == 200 and 'id="step&#45;train_and_eval__prep"' not in html
    config = json.loads(html.split('id="run-config" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert config["groups"]["component-train_and_eval"] == INNER
