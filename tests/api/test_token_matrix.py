"""Every API route against each scope and each role: the status design.md promises, and no
change of state on a refused request."""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.urls import get_resolver
from django.utils import timezone

from pipelines_ui import team_secrets
from pipelines_ui.api import data_triggers, endpoints, schedules
from pipelines_ui.api.models import ApiToken, DataTrigger, Endpoint, EndpointCall, Schedule
from pipelines_ui.api.tokens import digest
from pipelines_ui.models import Component, Pipeline, PipelineVersion, Role, Team, TeamSecret
from runs.data_assets import data_create_from_path
from runs.models import Run
from runs.registry.deployments import deployment_create
from runs.registry.models import Deployment, ScoringRequest
from runs.registry.services import model_create_from_path
from tests.api.conftest import bearer, token_for
from tests.conftest import built_once, make_user
from tests.runs.conftest import PIPELINE_YAML, make_pipeline, make_run

pytestmark = pytest.mark.django_db

ROLES = ("viewer", "editor", "admin")
SCOPES = ("read", "run", "write", "admin")
RANK = {"viewer": 0, "editor": 1, "admin": 2}


@dataclass(frozen=True)
class Route:
    name: str  # the URL pattern's name
    method: str
    scope: str  # the scope it needs
    role: str  # the least role it needs
    ok: int  # the status when allowed
    listing: bool = False  # a list: an outsider gets 200 and sees nothing, not 404


ROUTES = [
    Route("api_teams", "get", "read", "viewer", 200, listing=True),
    Route("api_team_secrets", "get", "read", "viewer", 200),
    Route("api_team_secret", "put", "admin", "admin", 200),  # replaces the world's secret
    Route("api_team_secret", "delete", "admin", "admin", 204),
    Route("api_pipelines", "get", "read", "viewer", 200, listing=True),
    Route("api_pipelines", "post", "write", "editor", 201),
    Route("api_pipeline_validate", "post", "read", "viewer", 200),
    Route("api_pipeline", "get", "read", "viewer", 200),
    Route("api_versions", "get", "read", "viewer", 200),
    Route("api_version", "get", "read", "viewer", 200),
    Route("api_version_export", "get", "read", "viewer", 200),
    Route("api_pipeline_runs", "post", "run", "editor", 201),
    Route("api_runs", "get", "read", "viewer", 200, listing=True),
    Route("api_run", "get", "read", "viewer", 200),
    Route("api_run_cancel", "post", "run", "editor", 200),
    Route("api_run_rerun", "post", "run", "editor", 201),
    Route("api_run_metrics", "get", "read", "viewer", 200),
    Route("api_step_log", "get", "read", "viewer", 200),
    Route("api_step_output", "get", "read", "viewer", 404),  # the step has not run: no such output
    Route("api_components", "get", "read", "viewer", 200, listing=True),
    Route("api_components", "post", "write", "editor", 201),
    Route("api_endpoints", "get", "read", "viewer", 200, listing=True),
    Route("api_endpoints", "post", "admin", "admin", 201),
    Route("api_endpoint", "get", "read", "viewer", 200),
    Route("api_endpoint_runs", "post", "run", "editor", 201),
    Route("api_schedules", "get", "read", "viewer", 200, listing=True),
    Route("api_schedules", "post", "admin", "admin", 201),
    Route("api_schedule", "get", "read", "viewer", 200),
    Route("api_schedule", "patch", "admin", "admin", 200),
    Route("api_schedule", "delete", "admin", "admin", 204),
    Route("api_data_triggers", "get", "read", "viewer", 200, listing=True),
    Route("api_data_triggers", "post", "run", "editor", 201),
    Route("api_data_trigger", "get", "read", "viewer", 200),
    Route("api_data_trigger", "patch", "run", "editor", 200),
    Route("api_data_trigger", "delete", "run", "editor", 204),
    Route("api_deployment_score", "post", "run", "editor", 503),  # no scorer runs in this test
]
# A pipeline reading a data asset by reference, for the data trigger routes.
READER_YAML = """
type: pipeline
inputs:
  raw: {type: uri_file, path: "azureml:rows@latest"}
jobs:
  read:
    command: cat ${{inputs.d}}
    inputs: {d: "${{parent.inputs.raw}}"}
"""
# Served to anyone: the schema and its docs.
NOT_HERE = {"api_schema", "api_docs"}


@dataclass
class World:
    team: object
    pipeline: Pipeline
    run: Run
    endpoint: Endpoint
    schedule: Schedule
    reader: Pipeline
    trigger: DataTrigger
    deployment: Deployment
    secret: TeamSecret

    def url(self, route: Route) -> str:
        team, p, r = quote(self.team.name, safe=""), self.pipeline.pk, self.run.pk
        return {
            "api_teams": "/api/v1/teams/",
            "api_team_secrets": f"/api/v1/teams/{self.team.pk}/secrets/",
            "api_team_secret": f"/api/v1/teams/{self.team.pk}/secrets/{self.secret.name}/",
            "api_pipelines": "/api/v1/pipelines/",
            "api_pipeline_validate": "/api/v1/pipelines/validate/",
            "api_pipeline": f"/api/v1/pipelines/{p}/",
            "api_versions": f"/api/v1/pipelines/{p}/versions/",
            "api_version": f"/api/v1/pipelines/{p}/versions/1/",
            "api_version_export": f"/api/v1/pipelines/{p}/versions/1/export/",
            "api_pipeline_runs": f"/api/v1/pipelines/{p}/runs/",
            "api_runs": "/api/v1/runs/",
            "api_run": f"/api/v1/runs/{r}/",
            "api_run_cancel": f"/api/v1/runs/{r}/cancel/",
            "api_run_rerun": f"/api/v1/runs/{r}/rerun/",
            "api_run_metrics": f"/api/v1/runs/{r}/metrics/",
            "api_step_log": f"/api/v1/runs/{r}/steps/prep/log/",
            "api_step_output": f"/api/v1/runs/{r}/steps/prep/outputs/data/",
            "api_components": "/api/v1/components/",
            "api_endpoints": "/api/v1/endpoints/",
            "api_endpoint": f"/api/v1/endpoints/{team}/{self.endpoint.name}/",
            "api_endpoint_runs": f"/api/v1/endpoints/{team}/{self.endpoint.name}/runs/",
            "api_schedules": "/api/v1/schedules/",
            "api_schedule": f"/api/v1/schedules/{self.schedule.pk}/",
            "api_data_triggers": "/api/v1/data-triggers/",
            "api_data_trigger": f"/api/v1/data-triggers/{self.trigger.pk}/",
            "api_deployment_score": f"/api/v1/deployments/{team}/{self.deployment.name}/score",
        }[route.name]

    def body(self, route: Route):
        if (route.name, route.method) == ("api_pipelines", "post"):
            upload = io.BytesIO(PIPELINE_YAML.encode())
            upload.name = "pipeline.yml"
            return {"file": upload, "team": self.team.name, "name": "imported"}, "multipart"
        if route.name == "api_pipeline_validate":
            upload = io.BytesIO(PIPELINE_YAML.encode())
            upload.name = "pipeline.yml"
            return {"file": upload, "team": self.team.name}, "multipart"
        if (route.name, route.method) == ("api_components", "post"):
            upload = io.BytesIO(b"type: command\nname: hello\ncommand: echo hello\n")
            upload.name = "hello.yml"
            return {"file": upload, "team": self.team.name}, "multipart"
        if (route.name, route.method) == ("api_endpoints", "post"):
            return {"team": self.team.name, "name": "second", "pipeline": self.pipeline.pk}, "json"
        if (route.name, route.method) == ("api_schedules", "post"):
            return {
                "team": self.team.name,
                "name": "second",
                "pipeline": self.pipeline.pk,
                "interval_seconds": 60,
            }, "json"
        if (route.name, route.method) in (("api_schedule", "patch"), ("api_data_trigger", "patch")):
            return {"enabled": False}, "json"
        if (route.name, route.method) == ("api_data_triggers", "post"):
            body = {"team": self.team.name, "name": "second", "pipeline": self.reader.pk, "input_name": "raw"}
            return {**body, "asset": "rows"}, "json"
        if (route.name, route.method) == ("api_team_secret", "put"):
            return {"value": "planted"}, "json"
        if route.name == "api_deployment_score":
            return {"inputs": [[1.0]]}, "json"
        return {}, "json"


def state() -> tuple:
    return (
        Pipeline.objects.count(),
        PipelineVersion.objects.count(),
        Run.objects.count(),
        Run.objects.filter(cancel_requested=True).count(),
        Endpoint.objects.count(),
        EndpointCall.objects.count(),
        Component.objects.count(),
        list(Schedule.objects.values_list("pk", "enabled", "handled_until")),
        list(DataTrigger.objects.values_list("pk", "enabled")),
        ScoringRequest.objects.count(),
        list(TeamSecret.objects.values_list("pk", "value", "updated_by", "updated_at")),
    )


def model_file(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"model")
    return path


def build_world(team, alice, tmp_path: Path) -> World:
    """The world of team's objects, its files under `tmp_path` (STEPWISE_ARTIFACTS in it)."""
    pipeline = make_pipeline(team, alice)
    run = make_run(pipeline, alice)
    endpoint = endpoints.endpoint_create(team=team, name="score", pipeline=pipeline, user=alice)
    schedule = schedules.schedule_create(
        team=team, pipeline=pipeline, user=alice, settings=schedules.Settings(name="hourly", cron="0 * * * *")
    )
    (tmp_path / "rows.csv").write_text("a\n1\n")
    rows = data_create_from_path(team=team, name="rows", path=tmp_path / "rows.csv", type_="uri_file")
    reader = make_pipeline(team, alice, name="reader", yaml_text=READER_YAML)
    trigger = data_triggers.data_trigger_create(
        team=team,
        settings=data_triggers.TriggerSettings(name="on rows", pipeline=reader, input_name="raw", asset=rows.asset),
        user=alice,
    )
    model = model_create_from_path(team=team, name="clf", path=model_file(tmp_path))
    deployment = deployment_create(team=team, name="clf", model_version=model)
    secret, _ = team_secrets.secret_set(team=team, name="REGISTRY_TOKEN", value="s3cr3t", by=alice)
    return World(
        team=team,
        pipeline=pipeline,
        run=run,
        endpoint=endpoint,
        schedule=schedule,
        reader=reader,
        trigger=trigger,
        deployment=deployment,
        secret=secret,
    )


@pytest.fixture(scope="class")
def _shared_world(django_db_setup, django_db_blocker, tmp_path_factory):
    """The team, alice and the world, built once for a class of tests (tests/conftest.py's
    built_once): building one per test took about half of these tests' time."""
    root = tmp_path_factory.mktemp("token-matrix")

    def build():
        team = Team.objects.create(name="Data Science")
        alice = make_user("alice", team, Role.ADMIN)
        return root, alice.pk, build_world(team, alice, root)

    yield from built_once(django_db_blocker, build, STEPWISE_ARTIFACTS=str(root / "artifacts"))


class SharedWorld:
    """`team`, `alice` (as tests/conftest.py makes them) and `world`, from _shared_world: fresh
    instances read for each test, STEPWISE_ARTIFACTS re-applied."""

    @pytest.fixture
    def team(self, db, _shared_world) -> Team:
        return Team.objects.get(pk=_shared_world[2].team.pk)

    @pytest.fixture
    def alice(self, team, _shared_world):
        return get_user_model().objects.get(pk=_shared_world[1])

    @pytest.fixture
    def world(self, team, alice, settings, _shared_world) -> World:
        root, _alice, world = _shared_world
        settings.STEPWISE_ARTIFACTS = str(root / "artifacts")
        return World(**{f.name: type(o).objects.get(pk=o.pk) for f in fields(World) for o in [getattr(world, f.name)]})


def call(client, route: Route, world: World):
    data, fmt = world.body(route)
    return getattr(client, route.method)(world.url(route), data, format=fmt)


def test_the_matrix_covers_every_api_route():
    api = next(p for p in get_resolver().url_patterns if str(p.pattern) == "api/v1/")
    named = {p.name for p in api.url_patterns if p.name}
    assert named - {r.name for r in ROUTES} - NOT_HERE == set(), "add a row to ROUTES for each new API route"


class TestEachRole(SharedWorld):
    """The world built once for the class (see SharedWorld)."""

    @pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.name}")
    @pytest.mark.parametrize("role", ROLES)
    def test_each_role_with_every_scope(self, route, role, world, team):
        user = make_user(f"u-{role}", team, role)
        before = state()
        response = call(bearer(token_for(user, *SCOPES)), route, world)
        if RANK[role] >= RANK[route.role]:
            assert response.status_code == route.ok, response.content
        else:
            assert response.status_code == 403, response.content
            assert f"this needs {route.role}" in response.json()["detail"]
            assert state() == before


class TestEachScope(SharedWorld):
    """The world built once for the class (see SharedWorld)."""

    @pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.name}")
    @pytest.mark.parametrize("scope", SCOPES)
    def test_each_scope_for_an_admin(self, route, scope, world, team):
        user = make_user("boss", team, "admin")
        before = state()
        response = call(bearer(token_for(user, scope)), route, world)
        if scope == route.scope:
            assert response.status_code == route.ok, response.content
        else:
            assert response.status_code == 403, response.content
            assert f"'{route.scope}' scope" in response.json()["detail"]
            assert state() == before


class TestAnotherTeam(SharedWorld):
    """The world built once for the class (see SharedWorld)."""

    @pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.name}")
    def test_another_team_s_objects_are_404(self, route, world, other_team):
        outsider = make_user("outsider", other_team, "admin")
        before = state()
        response = call(bearer(token_for(outsider, *SCOPES)), route, world)
        if route.listing:
            assert response.status_code == 200
            body = response.json()
            results = body if isinstance(body, list) else body["results"]
            assert all(item.get("team") in (None, other_team.name) for item in results)
            assert world.team.name not in str(body)
        elif (route.name, route.method) in (
            ("api_pipelines", "post"),
            ("api_pipeline_validate", "post"),
            ("api_endpoints", "post"),
            ("api_schedules", "post"),
            ("api_data_triggers", "post"),
        ):
            assert response.status_code == 404  # the team named in the body is not theirs
        else:
            assert response.status_code == 404, response.content
        assert state() == before


class TestNoValidToken(SharedWorld):
    """The world built once for the class (see SharedWorld)."""

    @pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.name}")
    @pytest.mark.parametrize("how", ["missing", "wrong", "expired", "revoked"])
    def test_no_valid_token_is_401(self, route, how, world, alice):
        if how == "missing":
            from rest_framework.test import APIClient

            client = APIClient()
        elif how == "wrong":
            client = bearer("swt_" + "x" * 43)
        else:
            secret = token_for(alice, *SCOPES)
            field = {
                "expired": {"expires_at": timezone.now() - timedelta(minutes=1)},
                "revoked": {"revoked_at": timezone.now()},
            }
            ApiToken.objects.filter(token_sha256=digest(secret)).update(**field[how])
            client = bearer(secret)
        before = state()
        assert call(client, route, world).status_code == 401
        assert state() == before
