"""The digits example end to end: its named `custom_model` output registers a model version with
the run's accuracy, a rerun adds no equal version, `deploy_as` deploys it, and it scores digits."""

from __future__ import annotations

import pytest
from django.test import Client
from sklearn.datasets import load_digits

from pipelines_ui.api.tokens import token_create
from pipelines_ui.services import pipeline_import
from runs import services
from runs.models import RunState
from runs.registry.models import Deployment, ModelVersion
from tests.integration.conftest import ROOT, wait_for
from tests.integration.test_deployments import deployer  # noqa: F401 - the fixture
from tests.integration.test_execution import wait_run

pytestmark = pytest.mark.integration


def test_the_digits_pipeline_registers_and_serves_its_model(workers, deployer, alice, team):  # noqa: F811
    workers.start(1)
    version = pipeline_import(team=team, path=ROOT / "examples/notebooks/digits.yml", user=alice, name="digits")
    run = wait_run(services.run_create(version=version, user=alice, inputs={"epochs": 3}), timeout=120)
    assert run.state == RunState.SUCCEEDED, workers.logs()
    model = ModelVersion.objects.get(model__name="digits-clf")
    assert (model.version, model.flavour, model.step_output.step_run.run) == ("1", "custom_model", run)
    assert model.metrics["accuracy"] > 0.8
    assert not Deployment.objects.exists(), "deploy_as was not given"
    # Asked by the pipeline parameter: the (reused) step's model is deployed.
    inputs = {"epochs": 3, "deploy_as": "digits"}
    rerun = wait_run(services.run_create(version=version, user=alice, inputs=inputs), timeout=120)
    assert rerun.state == RunState.SUCCEEDED
    assert ModelVersion.objects.filter(model__name="digits-clf").count() == 1, "reused content adds no version"
    deployment = Deployment.objects.get(team=team, name="digits")
    assert deployment.model_version == model

    def serving():
        deployment.refresh_from_db()
        return deployment.serving_version_id == model.pk

    wait_for(serving, message="the digits scorer")
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token_create(user=alice, name='s', scopes=['run']).secret}"
    digits = load_digits()
    rows = (digits.data[:5] / 16.0).tolist()
    response = client.post(
        f"/api/v1/deployments/{team.name}/digits/score", {"inputs": rows}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    predictions = response.json()["predictions"]
    assert sum(p == t for p, t in zip(predictions, digits.target[:5], strict=True)) >= 4
    assert Deployment.objects.get(pk=deployment.pk).requests.count() == 1
