"""schemathesis against the served API, with a token holding every scope, for every operation in
the schema: no 500, no response that violates the schema, no 2xx for a request that violates it."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from pipelines_ui.api.tokens import token_create
from runs.models import LogChunk, Metric, StepRun
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline, make_run


@pytest.fixture
def api_token(transactional_db, team, settings, tmp_path):
    settings.STEPWISE_API_RATE = "100000/min"
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")
    admin = make_user("schemathesis", team, "admin")
    pipeline = make_pipeline(team, admin)
    run = make_run(pipeline, admin)
    step = StepRun.objects.get(run=run, name="prep")
    LogChunk.objects.create(step_run=step, attempt=1, seq=0, line_count=2, text="a\nb")
    Metric.objects.create(step_run=step, name="loss", value=1.5, step=0)
    return token_create(user=admin, name="schemathesis", scopes=["read", "run", "write", "admin"]).secret


@pytest.fixture
def api_schema(live_server, api_token):
    return schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema/?format=json")


schema = schemathesis.pytest.from_fixture("api_schema")

# Four tests rather than one, so that pytest-xdist spreads the operations over its processes:
# together they cover every operation of the schema (the last takes whatever the others leave).
GROUPS = {
    "pipelines": schema.include(path_regex="^/api/v1/pipelines/"),
    "runs": schema.include(path_regex="^/api/v1/runs/"),
    "triggers": schema.include(path_regex="^/api/v1/(schedules|data-triggers)/"),
    "the_rest": schema.exclude(path_regex="^/api/v1/(pipelines|runs|schedules|data-triggers)/"),
}
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def conforms(case, api_token, live_server) -> None:
    # Every check but "a schema-valid request is accepted": a schema cannot say that an upload
    # must hold a valid pipeline, or which ids exist, so a 400 or 404 there is right.
    case.call_and_validate(
        base_url=live_server.url,
        headers={"Authorization": f"Bearer {api_token}"},
        excluded_checks=[positive_data_acceptance],
    )


@pytest.mark.slow
@GROUPS["pipelines"].parametrize()
@SETTINGS
def test_pipeline_operations_conform_to_the_schema(case, api_token, live_server):
    conforms(case, api_token, live_server)


@pytest.mark.slow
@GROUPS["runs"].parametrize()
@SETTINGS
def test_run_operations_conform_to_the_schema(case, api_token, live_server):
    conforms(case, api_token, live_server)


@pytest.mark.slow
@GROUPS["triggers"].parametrize()
@SETTINGS
def test_schedule_and_trigger_operations_conform_to_the_schema(case, api_token, live_server):
    conforms(case, api_token, live_server)


@pytest.mark.slow
@GROUPS["the_rest"].parametrize()
@SETTINGS
def test_every_other_operation_conforms_to_the_schema(case, api_token, live_server):
    conforms(case, api_token, live_server)
