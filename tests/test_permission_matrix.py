"""The permission matrix: every URL pattern, for every role, gets the status written here.

Roles: anonymous (signed out), outsider (charlie, admin of another team), and the three roles
of team A (vera views, bob edits, alice administers). Each row names one URL pattern, one
method, how to fill the URL in for an object of team A, the data to send, and the status each
role gets; `LOGIN` means a redirect to the sign-in page. A refused request (login, 403, 404,
405, 410) must leave every table as it was. Team A's pipeline name must never reach the outsider.

A URL pattern without a row fails `test_every_url_pattern_has_a_row`: add rows for new URLs to
ROWS below (one per method the view takes), with the statuses the design asks for (design.md,
Sharing: viewer sees and downloads, editor also edits and runs, admin also manages members and
deletes; another team's object is 404).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from unittest import mock
from urllib.parse import urlsplit

import pytest
from channels.testing import WebsocketCommunicator
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone

from pipelines_ui import components, team_secrets, teams, template_services
from pipelines_ui.api import data_triggers, endpoints, notifications, schedules
from pipelines_ui.api import tokens as api_tokens
from pipelines_ui.api.models import Delivery
from pipelines_ui.models import Role, Team
from runs import artifacts, data_assets
from runs.data_assets import data_create_from_path
from runs.data_views import upload_begin
from runs.forms import FIELD_PREFIX
from runs.models import Run, RunState, StepOutput, StepState, Worker
from runs.registry.deployments import deployment_create
from runs.registry.services import model_create_from_path
from tests.conftest import built_once, make_user
from tests.runs.conftest import PIPELINE_YAML, make_pipeline, make_run, set_step

SECRET = "team-a-secret-pipeline"
# A pipeline reading a data asset by reference, for the data trigger rows.
READER_YAML = """
type: pipeline
inputs:
  raw: {type: uri_file, path: "azureml:rows@latest"}
jobs:
  read:
    command: cat ${{inputs.d}}
    inputs: {d: "${{parent.inputs.raw}}"}
"""
LOGIN = "login"
PERSONAS = ("anonymous", "outsider", "viewer", "editor", "admin")
# Not the project's own pages: the admin (walked as staff-only by test_access.py) and static files.
EXCLUDED_PREFIXES = ("admin/", "static/")
REFUSED = {LOGIN, 401, 403, 404, 405, 409, 410}


@dataclass(frozen=True)
class Expect:
    anonymous: int | str
    outsider: int | str
    viewer: int | str
    editor: int | str
    admin: int | str

    def for_(self, persona: str) -> int | str:
        return getattr(self, persona)


API_READ = Expect(401, 404, 200, 200, 200)  # the REST API, signed in with the browser session
API_RUN = Expect(401, 404, 403, 201, 201)
# The usual shapes.
PAGE = Expect(LOGIN, 404, 200, 200, 200)  # a page of a team A object: members see it
LIST = Expect(LOGIN, 200, 200, 200, 200)  # a list or form of the user's own teams
EDIT = Expect(LOGIN, 404, 403, 302, 302)  # a change editors and admins may make
ADMIN = Expect(LOGIN, 404, 403, 403, 302)  # a change only admins may make
POST_ONLY = Expect(LOGIN, 405, 405, 405, 405)  # GET on a POST-only view


def _no_args(w) -> list:
    return []


@dataclass(frozen=True)
class Row:
    name: str  # the URL pattern's name
    method: str  # "get" or "post"
    expect: Expect
    args: Callable[[SimpleNamespace], list] = _no_args
    data: Callable[[SimpleNamespace], dict] = lambda w: {}
    # A query string, without the "?"; or a function of the world giving one (its row needs a variant).
    query: str | Callable[[SimpleNamespace], str] = ""
    json: bool = False  # send `data` as a JSON body (the API's POSTs)
    path: str = ""  # for a pattern without a name (its route is then the row's name): the URL to ask
    # Personas whose request, though answered like an allowed one, must change nothing either.
    unchanged: frozenset[str] = frozenset()
    variant: str = ""  # tells apart rows of the same name and method
    why: str = ""  # when a status is not the usual one for its shape

    @property
    def id(self) -> str:
        return "-".join(part for part in (self.name, self.method, self.variant or str(self.query)) if part)

    def query_for(self, w) -> str:
        return self.query(w) if callable(self.query) else self.query


def pipeline(w) -> list:
    return [w.pipeline.pk]


def run(w) -> list:
    return [w.run.pk]


def step(w) -> list:
    return [w.pipeline.pk, "prep"]


def version(w) -> list:
    return [w.pipeline.pk, w.pipeline.latest_version.number]


def run_step(w) -> list:
    return [w.run.pk, "prep"]


def team(w) -> list:
    return [w.team.pk]


def member(w) -> list:
    return [w.team.pk, w.erin_membership.pk]


def team_secret(w) -> list:
    return [w.team.pk, w.team_secret.name]


def base(w) -> dict:
    return {"base_version": w.pipeline.latest_version.number}


ROWS: list[Row] = [
    # ---- home and sign-in
    Row("home", "get", Expect(302, 302, 302, 302, 302), why="a redirect to the pipelines list, for anyone"),
    Row("login", "get", Expect(200, 200, 200, 200, 200)),
    Row("login", "post", Expect(200, 200, 200, 200, 200), why="no credentials: the form again"),
    Row("logout", "post", Expect(302, 302, 302, 302, 302)),
    Row("logout", "get", Expect(405, 405, 405, 405, 405)),
    # ---- pipelines: lists and creation
    Row("pipeline_list", "get", LIST),
    Row("pipeline_create", "get", LIST),
    Row(
        "pipeline_create",
        "post",
        Expect(LOGIN, 200, 403, 302, 302),
        data=lambda w: {"team": w.team.pk, "name": "planted"},
        why="an outsider's form refuses a team not theirs (200 with the error)",
    ),
    Row("pipeline_import", "get", LIST),
    Row(
        "pipeline_import",
        "post",
        Expect(LOGIN, 200, 403, 302, 302),
        data=lambda w: {
            "team": w.team.pk,
            "name": "planted",
            "file": SimpleUploadedFile("p.yml", PIPELINE_YAML.encode()),
        },
        why="an outsider's form refuses a team not theirs (200 with the error)",
    ),
    # ---- one pipeline
    Row("pipeline_detail", "get", PAGE, pipeline),
    Row("pipeline_settings", "get", POST_ONLY, pipeline),
    Row(
        "pipeline_settings",
        "post",
        Expect(LOGIN, 404, 403, 302, 302),
        pipeline,
        data=lambda w: {**base(w), "name": SECRET, "description": "new words"},
    ),
    Row("pipeline_interface", "post", Expect(LOGIN, 404, 403, 400, 400), pipeline, base, why="no formset data"),
    Row("step_create", "get", Expect(LOGIN, 404, 403, 200, 200), pipeline),
    Row("step_create", "post", Expect(LOGIN, 404, 403, 400, 400), pipeline, base, why="an empty step form"),
    Row("step_edit", "get", PAGE, step, why="a viewer reads the step, the form disabled"),
    Row("step_edit", "post", Expect(LOGIN, 404, 403, 400, 400), step, base, why="an empty step form"),
    Row(
        "step_preview",
        "post",
        Expect(LOGIN, 404, 403, 200, 200),
        pipeline,
        query="step=prep",
        why="the graph of an unsaved step form, as JSON; nothing saved",
        unchanged=frozenset(PERSONAS),
    ),
    Row("step_preview", "get", POST_ONLY, pipeline),
    Row("step_delete", "post", Expect(LOGIN, 404, 403, 400, 400), step, why="no base version: nothing removed"),
    Row("step_delete", "post", Expect(LOGIN, 404, 403, 302, 302), step, base, variant="with-base"),
    Row("pipeline_versions", "get", PAGE, pipeline),
    Row("version_detail", "get", PAGE, version),
    Row("version_diff", "get", PAGE, version),
    Row("version_restore", "post", Expect(LOGIN, 404, 403, 302, 302), version, base),
    Row("pipeline_export", "get", PAGE, pipeline),
    Row("pipeline_delete", "get", Expect(LOGIN, 404, 403, 403, 200), pipeline),
    Row("pipeline_delete", "post", ADMIN, pipeline),
    # ---- runs
    Row("run_create", "get", Expect(LOGIN, 404, 403, 200, 200), lambda w: [w.pipeline.pk]),
    Row("run_create", "post", EDIT, lambda w: [w.pipeline.pk], data=lambda w: {FIELD_PREFIX + "mode": "fast"}),
    Row("run_list", "get", LIST),
    Row("run_detail", "get", PAGE, run),
    Row("run_parts", "get", PAGE, run),
    Row("run_metrics", "get", PAGE, run),
    Row("run_compare", "get", PAGE, query=lambda w: f"ids={w.run.pk},{w.run2.pk}", variant="two-runs"),
    Row("run_compare", "get", LIST, query="ids=1", why="one run is no comparison: a message naming what to pick"),
    Row(
        "run_cancel",
        "post",
        EDIT,
        run,
        why="the run has finished: a message, nothing changes",
        unchanged=frozenset(PERSONAS),
    ),
    Row("run_rerun", "post", EDIT, run, data=lambda w: {"mode": "all"}),
    Row("run_step", "get", PAGE, run_step),
    Row("step_log", "get", PAGE, run_step),
    Row("step_log", "get", PAGE, run_step, query="download=1"),
    Row("step_output", "get", PAGE, lambda w: [w.run.pk, "prep", "data"]),
    Row("step_output_files", "get", PAGE, lambda w: [w.run.pk, "prep", "data"]),
    Row("step_output_files", "get", PAGE, lambda w: [w.run.pk, "prep", "data"], query="path=rows.csv", variant="file"),
    Row("step_output_file", "get", PAGE, lambda w: [w.run.pk, "prep", "data"], query="path=rows.csv"),
    Row(
        "step_output_file",
        "get",
        Expect(LOGIN, 404, 404, 404, 404),
        lambda w: [w.run.pk, "prep", "data"],
        query="path=../../../etc/passwd",
        variant="outside",
        why="only a file the output's stored list names is served",
    ),
    # ---- workers: the install's, seen by staff and the admins of any team
    Row("worker_list", "get", Expect(LOGIN, 200, 403, 403, 200)),
    # Draining stops steps of every team: staff only.
    Row("worker_drain", "post", Expect(LOGIN, 403, 403, 403, 403), lambda w: [w.worker.pk]),
    Row("worker_undrain", "post", Expect(LOGIN, 403, 403, 403, 403), lambda w: [w.worker.pk]),
    # ---- teams
    Row("team_list", "get", LIST),
    Row("team_create", "get", LIST),
    Row("team_create", "post", Expect(LOGIN, 302, 302, 302, 302), data=lambda w: {"name": "A new team"}),
    Row("team_detail", "get", PAGE, team),
    Row("team_member_add", "get", POST_ONLY, team),
    Row(
        "team_member_add",
        "post",
        ADMIN,
        team,
        data=lambda w: {"identifier": "dora", "role": Role.EDITOR},
    ),
    Row(
        "team_member_add",
        "post",
        Expect(LOGIN, 404, 403, 403, 200),
        team,
        data=lambda w: {"identifier": "new@example.com", "role": Role.VIEWER},
        variant="invite",
        why="the invitation link is shown in this response, not after a redirect",
    ),
    Row("team_member_role", "post", ADMIN, member, data=lambda w: {"role": Role.EDITOR}),
    Row("team_member_remove", "post", ADMIN, member),
    Row(
        "team_leave",
        "post",
        Expect(LOGIN, 404, 302, 302, 302),
        team,
        why="the last admin's refusal is a message",
        unchanged=frozenset({"admin"}),
    ),
    Row("team_invitation_revoke", "post", ADMIN, lambda w: [w.team.pk, w.invitation.pk]),
    Row("team_secret_set", "get", POST_ONLY, team),
    Row("team_secret_set", "post", ADMIN, team, data=lambda w: {"name": "deploy_key", "value": "planted"}),
    Row("team_secret_delete", "get", POST_ONLY, team_secret),
    Row("team_secret_delete", "post", ADMIN, team_secret),
    Row(
        "invitation_accept",
        "get",
        Expect(200, 200, 200, 200, 200),
        lambda w: [w.token],
        why="the link is its own credential: a sign-up form, or a Join button",
    ),
    Row(
        "invitation_accept",
        "post",
        Expect(302, 302, 302, 302, 302),
        lambda w: [w.token],
        data=lambda w: {"username": "newbie", "password1": "a long passphrase", "password2": "a long passphrase"},
        why="signs up, joins, or (a member) is told so",
    ),
]


# The REST API through the browser session (tokens narrow these further: tests/api).
ROWS += [
    Row("api_schema", "get", Expect(200, 200, 200, 200, 200), why="the OpenAPI schema is public"),
    Row("api_docs", "get", Expect(200, 200, 200, 200, 200)),
    Row("api_teams", "get", Expect(401, 200, 200, 200, 200)),
    Row("api_pipelines", "get", Expect(401, 200, 200, 200, 200)),
    Row(
        "api_pipelines",
        "post",
        Expect(401, 404, 403, 201, 201),
        data=lambda w: {
            "team": w.team.name,
            "name": "planted",
            "file": SimpleUploadedFile("p.yml", PIPELINE_YAML.encode()),
        },
    ),
    Row(
        "api_pipeline_validate",
        "post",
        Expect(401, 404, 200, 200, 200),
        data=lambda w: {"team": w.team.name, "file": SimpleUploadedFile("p.yml", PIPELINE_YAML.encode())},
        why="checking stores nothing: reading the team is enough",
    ),
    Row("api_pipeline", "get", API_READ, pipeline),
    Row("api_versions", "get", API_READ, pipeline),
    Row("api_version", "get", API_READ, version),
    Row("api_version_export", "get", API_READ, version),
    Row("api_pipeline_runs", "post", API_RUN, pipeline, json=True),
    Row("api_runs", "get", Expect(401, 200, 200, 200, 200)),
    Row("api_run", "get", API_READ, run),
    Row(
        "api_run_cancel",
        "post",
        Expect(401, 404, 403, 409, 409),
        run,
        json=True,
        why="the run has finished",
        unchanged=frozenset(PERSONAS),
    ),
    Row("api_run_rerun", "post", API_RUN, run, json=True),
    Row("api_run_metrics", "get", API_READ, run),
    Row("api_step_log", "get", API_READ, run_step),
    Row("api_step_output", "get", API_READ, lambda w: [w.run.pk, "prep", "data"]),
    # ---- API tokens: the user's own, on their account page
    Row("token_list", "get", LIST),
    Row("token_list", "post", Expect(LOGIN, 302, 302, 302, 302), data=lambda w: {"name": "ci", "scopes": ["read"]}),
    Row(
        "token_revoke",
        "post",
        Expect(LOGIN, 302, 302, 302, 302),
        lambda w: [w.api_token.pk],
        why="alice's token: anyone else is told there is no such token",
        unchanged=frozenset({"anonymous", "outsider", "viewer", "editor"}),
    ),
]


# Registered components (the library) and published endpoints' pages.
ROWS += [
    Row("component_list", "get", LIST),
    Row("component_register", "get", LIST),
    Row(
        "component_register",
        "post",
        Expect(LOGIN, 400, 403, 400, 400),
        data=lambda w: {"team": w.team.pk, "name": "planted"},
        why="no file: the form again; an outsider's form refuses a team not theirs",
    ),
    Row("component_detail", "get", PAGE, lambda w: [w.component.pk], why="a team-visible component"),
    Row("component_register_step", "get", Expect(LOGIN, 404, 403, 200, 200), step),
    Row(
        "component_register_step",
        "post",
        Expect(LOGIN, 404, 403, 302, 302),
        step,
        data=lambda w: {"name": "prep-again", "version": "", "visibility": "team"},
    ),
    Row("endpoint_list", "get", LIST),
    Row("endpoint_detail", "get", PAGE, lambda w: [w.endpoint.pk]),
    Row("endpoint_create", "get", Expect(LOGIN, 404, 403, 403, 200), pipeline),
    Row("endpoint_create", "post", ADMIN, pipeline, data=lambda w: {"name": "second", "version": 1}),
    Row(
        "endpoint_add_version",
        "post",
        ADMIN,
        lambda w: [w.endpoint.pk],
        data=lambda w: {"version": 1},
        why="v1 is already there: a message",
    ),
    Row("endpoint_set_default", "post", ADMIN, lambda w: [w.endpoint.pk], data=lambda w: {"version": 1}),
    # The API's endpoints (team by name) and its JSON 404 for any other /api/v1/ path.
    Row("api_endpoints", "get", Expect(401, 200, 200, 200, 200)),
    Row(
        "api_endpoints",
        "post",
        Expect(401, 404, 403, 403, 201),
        json=True,
        data=lambda w: {"team": w.team.name, "name": "second", "pipeline": w.pipeline.pk},
    ),
    Row("api_endpoint", "get", API_READ, lambda w: [w.team.name, w.endpoint.name]),
    Row("api_endpoint_runs", "post", API_RUN, lambda w: [w.team.name, w.endpoint.name], json=True),
    Row(r"api/v1/^[\s\S]*$", "get", Expect(404, 404, 404, 404, 404), path="/api/v1/no-such-thing/"),
]


def data_trigger(w) -> list:
    return [w.data_trigger.pk]


def _trigger_form(w) -> dict:
    return {
        "name": "planted",
        "pipeline": w.reader.pk,
        "input_name": "raw",
        "source": "asset",
        "asset": w.data_version.asset_id,
        "enabled": "on",
    }


# Data triggers: members see them, team editors create, pause, resume and delete them.
ROWS += [
    Row("pipeline_data_triggers", "get", PAGE, pipeline),
    Row("pipeline_data_triggers", "post", EDIT, lambda w: [w.reader.pk], data=_trigger_form),
    Row("asset_data_triggers", "get", PAGE, lambda w: [w.data_version.asset_id]),
    Row("asset_data_triggers", "post", EDIT, lambda w: [w.data_version.asset_id], data=_trigger_form),
    Row("data_trigger_enabled", "get", POST_ONLY, data_trigger),
    Row("data_trigger_enabled", "post", EDIT, data_trigger, data=lambda w: {"enabled": "0"}),
    Row("data_trigger_delete", "get", POST_ONLY, data_trigger),
    Row("data_trigger_delete", "post", EDIT, data_trigger),
    Row("api_data_triggers", "get", Expect(401, 200, 200, 200, 200)),
    Row(
        "api_data_triggers",
        "post",
        API_RUN,
        json=True,
        data=lambda w: {
            "team": w.team.name,
            "name": "planted",
            "pipeline": w.reader.pk,
            "input_name": "raw",
            "asset": "rows",
        },
    ),
    Row("api_data_trigger", "get", API_READ, data_trigger),
    Row(
        "api_data_trigger",
        "patch",
        Expect(401, 404, 403, 200, 200),
        data_trigger,
        json=True,
        data=lambda w: {"enabled": False},
    ),
    Row("api_data_trigger", "delete", Expect(401, 404, 403, 204, 204), data_trigger, json=True),
]


def schedule(w) -> list:
    return [w.schedule.pk]


ADMIN_API = Expect(401, 404, 403, 403, 200)
# Schedules: members see them, team admins create, pause, resume and delete them.
ROWS += [
    Row("schedule_list", "get", LIST),
    Row("pipeline_schedules", "get", PAGE, pipeline),
    Row(
        "pipeline_schedules",
        "post",
        ADMIN,
        pipeline,
        data=lambda w: {
            "name": "planted",
            "target": "pipeline",
            "kind": "interval",
            "interval_seconds": 60,
            "timezone": "UTC",
            "catchup": "latest",
            "enabled": "on",
        },
    ),
    Row("schedule_detail", "get", PAGE, schedule),
    Row("schedule_enabled", "get", POST_ONLY, schedule),
    Row("schedule_enabled", "post", ADMIN, schedule, data=lambda w: {"enabled": "0"}),
    Row("schedule_delete", "get", POST_ONLY, schedule),
    Row("schedule_delete", "post", ADMIN, schedule),
    Row("api_components", "get", Expect(401, 200, 200, 200, 200)),
    # JSON where a multipart upload is due is refused before any team is looked at; roles and
    # scopes of a real upload: tests/api/test_token_matrix.py.
    Row("api_components", "post", Expect(401, 415, 415, 415, 415), json=True, data=lambda w: {}),
    Row("api_schedules", "get", Expect(401, 200, 200, 200, 200)),
    Row(
        "api_schedules",
        "post",
        Expect(401, 404, 403, 403, 201),
        json=True,
        data=lambda w: {"team": w.team.name, "name": "planted", "pipeline": w.pipeline.pk, "interval_seconds": 60},
    ),
    Row("api_schedule", "get", API_READ, schedule),
    Row("api_schedule", "patch", ADMIN_API, schedule, json=True, data=lambda w: {"enabled": False}),
    Row("api_schedule", "delete", Expect(401, 404, 403, 403, 204), schedule, json=True),
]


def notification(w) -> list:
    return [w.notification.pk]


# Notifications: members see them and their deliveries; team admins add, pause, delete, send again.
ROWS += [
    Row("pipeline_notifications", "get", PAGE, pipeline),
    Row(
        "pipeline_notifications",
        "post",
        Expect(LOGIN, 404, 403, 403, 200),
        pipeline,
        data=lambda w: {"kind": "webhook", "url": "https://hooks.example.com/y", "events": ["run.failed"]},
        why="the new webhook's secret is shown once, on the page the POST answers",
    ),
    Row("notification_enabled", "get", POST_ONLY, notification),
    Row("notification_enabled", "post", ADMIN, notification, data=lambda w: {"enabled": "0"}),
    Row("notification_delete", "get", POST_ONLY, notification),
    Row("notification_delete", "post", ADMIN, notification),
    Row("delivery_send_again", "get", POST_ONLY, lambda w: [w.delivery.pk]),
    Row("delivery_send_again", "post", ADMIN, lambda w: [w.delivery.pk]),
]


# Templates (team-visible here), duplicating, following a template, and a pipeline's Runs tab.
ROWS += [
    Row("template_gallery", "get", LIST),
    Row("template_detail", "get", PAGE, lambda w: [w.template.pk]),
    Row("template_version_diff", "get", PAGE, lambda w: [w.template.pk, 1]),
    Row("template_use", "get", Expect(LOGIN, 404, 403, 200, 200), lambda w: [w.template.pk]),
    Row(
        "template_use",
        "post",
        Expect(LOGIN, 404, 403, 302, 302),
        lambda w: [w.template.pk],
        data=lambda w: {"team": w.team.pk, "name": "from-template", FIELD_PREFIX + "mode": "fast"},
    ),
    Row("template_publish", "get", Expect(LOGIN, 404, 403, 403, 200), pipeline),
    Row(
        "template_publish",
        "post",
        ADMIN,
        pipeline,
        data=lambda w: {"title": "Team A template", "description": "", "tags": "", "visibility": "team", "version": 1},
    ),
    Row("pipeline_duplicate", "get", Expect(LOGIN, 404, 403, 200, 200), pipeline),
    Row(
        "pipeline_duplicate",
        "post",
        Expect(LOGIN, 404, 403, 302, 302),
        pipeline,
        data=lambda w: {"team": w.team.pk, "name": "a copy"},
    ),
    Row("template_update", "get", PAGE, lambda w: [w.clone.pk], why="a viewer sees what changed, read-only"),
    Row(
        "template_update",
        "post",
        EDIT,
        lambda w: [w.clone.pk],
        why="no newer template version: a message",
        unchanged=frozenset(PERSONAS),
    ),
    Row("pipeline_runs", "get", PAGE, lambda w: [w.pipeline.pk]),
]


# Data assets: members see, preview and download; editors upload, archive and register step outputs.
def data_version(w) -> list:
    return [w.data_version.asset_id, w.data_version.version]


ROWS += [
    Row("data_list", "get", LIST),
    Row("data_detail", "get", PAGE, lambda w: [w.data_version.asset_id]),
    Row("data_file", "get", PAGE, data_version, query="path=rows.csv"),
    Row("data_download", "get", PAGE, data_version),
    Row("data_archive", "get", POST_ONLY, data_version),
    Row("data_archive", "post", EDIT, data_version),
    Row("data_upload", "get", Expect(LOGIN, 200, 403, 200, 200), why="the outsider edits in a team of their own"),
    Row(
        "data_upload",
        "post",
        Expect(LOGIN, 200, 403, 200, 200),
        data=lambda w: {"team": w.team.pk, "name": "planted", "type": "uri_file"},
        why="no finished upload (and for the outsider, not their team): the form again with the error",
    ),
    Row(
        "data_upload_start",
        "post",
        Expect(LOGIN, 201, 403, 201, 201),
        data=lambda w: {"filename": "x.csv", "size": 3},
        why="an upload folder, no row; the outsider uploads for a team of their own",
    ),
    Row("data_upload_start", "get", POST_ONLY),
    Row(
        "data_upload_chunk",
        "get",
        Expect(LOGIN, 404, 404, 404, 200),
        lambda w: [w.upload_id],
        why="an upload belongs to the user who started it (alice)",
    ),
    Row(
        "data_upload_chunk",
        "post",
        Expect(LOGIN, 404, 404, 404, 200),
        lambda w: [w.upload_id],
        query="offset=0",
        why="an upload belongs to the user who started it (alice)",
    ),
    Row("datastore_list", "get", LIST),
    Row(
        "datastore_create", "get", Expect(LOGIN, 200, 403, 403, 200), why="the outsider administers a team of their own"
    ),
    Row(
        "datastore_create",
        "post",
        Expect(LOGIN, 200, 403, 403, 200),
        data=lambda w: {"team": w.team.pk, "name": "planted", "kind": "local", "root": "/etc"},
        why="a root outside STEPWISE_DATASTORE_ROOTS (and for the outsider, not their team): the form again",
    ),
    Row("datastore_detail", "get", PAGE, lambda w: [w.datastore.pk]),
    Row("datastore_register", "get", POST_ONLY, lambda w: [w.datastore.pk]),
    Row(
        "datastore_register",
        "post",
        EDIT,
        lambda w: [w.datastore.pk],
        data=lambda w: {"path": "raw", "type": "uri_folder", "name": "from-lake"},
    ),
    Row("step_output_register", "get", POST_ONLY, lambda w: [w.run.pk, "prep", "data"]),
    Row("step_output_register", "post", EDIT, lambda w: [w.run.pk, "prep", "data"], data=lambda w: {"name": "reg"}),
]


# Models: members see, download and follow lineage; editors register, upload and archive.
def model_version(w) -> list:
    return [w.model_version.model_id, w.model_version.version]


ROWS += [
    Row("model_list", "get", LIST),
    Row("model_detail", "get", PAGE, lambda w: [w.model_version.model_id]),
    Row("model_download", "get", PAGE, model_version),
    Row("model_archive", "get", POST_ONLY, model_version),
    Row("model_archive", "post", EDIT, model_version),
    Row("model_upload", "get", Expect(LOGIN, 200, 403, 200, 200), why="the outsider edits in a team of their own"),
    Row(
        "model_upload",
        "post",
        Expect(LOGIN, 200, 403, 200, 200),
        data=lambda w: {"team": w.team.pk, "name": "planted", "flavour": "custom_model"},
        why="no file (and for the outsider, not their team): the form again with the error",
    ),
    Row("step_output_register_model", "get", POST_ONLY, lambda w: [w.run.pk, "prep", "data"]),
    Row("step_output_register_model", "post", EDIT, lambda w: [w.run.pk, "prep", "data"], data=lambda w: {"name": "m"}),
    Row("lineage_data", "get", PAGE, lambda w: [w.data_version.pk]),
    Row("lineage_model", "get", PAGE, lambda w: [w.model_version.pk]),
    Row("lineage_run", "get", PAGE, run),
]


# Deployments: members see; editors create, swap, roll back and test; the API needs the run scope.
def deployment(w) -> list:
    return [w.deployment.pk]


ROWS += [
    Row("deployment_list", "get", LIST),
    Row("deployment_create", "get", Expect(LOGIN, 200, 403, 200, 200), why="the outsider edits in a team of their own"),
    Row(
        "deployment_create",
        "post",
        Expect(LOGIN, 200, 403, 200, 200),
        data=lambda w: {"name": "bad name!", "model_version": w.model_version.pk},
        why="a bad name (and for the outsider, another team's model): the form again with the error",
    ),
    Row("deployment_detail", "get", PAGE, deployment),
    Row("deployment_swap", "get", POST_ONLY, deployment),
    Row(
        "deployment_swap",
        "post",
        EDIT,
        deployment,
        data=lambda w: {"version": w.model_version.pk},
        unchanged=frozenset({"editor", "admin"}),
        why="the version it already serves: a message, nothing changed",
    ),
    Row("deployment_rollback", "get", POST_ONLY, deployment),
    Row(
        "deployment_rollback",
        "post",
        EDIT,
        deployment,
        unchanged=frozenset({"editor", "admin"}),
        why="no earlier version: a message, nothing changed",
    ),
    Row("deployment_test", "get", POST_ONLY, deployment),
    Row(
        "deployment_test",
        "post",
        Expect(LOGIN, 404, 403, 200, 200),
        deployment,
        data=lambda w: {"body": '{"inputs": [[1]]}'},
        why="the page again with the answer (503: no scorer runs in this test)",
    ),
    Row(
        "api_deployment_score",
        "post",
        Expect(401, 404, 403, 503, 503),
        lambda w: [w.team.name, w.deployment.name],
        json=True,
        data=lambda w: {"inputs": [[1]]},
        why="no scorer runs in this test: 503, and the request is logged",
    ),
]


# Team secrets through the API: members list their names; team admins set, replace and delete them.
ROWS += [
    Row("api_team_secrets", "get", API_READ, team),
    Row("api_team_secret", "put", ADMIN_API, team_secret, json=True, data=lambda w: {"value": "planted"}),
    Row("api_team_secret", "delete", Expect(401, 404, 403, 403, 204), team_secret, json=True),
]

# ---- the walk: every URL pattern has a row -------------------------------------------------


def walk(patterns, prefix: str = ""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern


def project_patterns() -> dict[str, str]:
    """URL name -> route, for every pattern outside the excluded prefixes."""
    found = {}
    for route, pattern in walk(get_resolver().url_patterns):
        if route.startswith(EXCLUDED_PREFIXES):
            continue
        found[pattern.name or route] = route
    return found


def test_every_url_pattern_has_a_row():
    patterns = project_patterns()
    assert {"pipeline_detail", "run_detail", "team_detail", "invitation_accept"} <= patterns.keys()
    covered = {row.name for row in ROWS}
    missing = sorted(f"{name} ({route})" for name, route in patterns.items() if name not in covered)
    assert not missing, f"URL patterns with no row in the permission matrix (add rows to ROWS): {missing}"
    stale = sorted(covered - patterns.keys())
    assert not stale, f"rows for URL patterns that no longer exist: {stale}"


def test_row_ids_are_unique():
    ids = [row.id for row in ROWS]
    assert len(ids) == len(set(ids))


# ---- team A's world ---------------------------------------------------------------------


def world_settings(root: Path) -> dict:
    return {
        "STEPWISE_ARTIFACTS": str(root / "artifacts"),
        "STEPWISE_WORKDIR": root / "work",
        "STEPWISE_DATASTORE_ROOTS": [root],
    }


@pytest.fixture(scope="class")
def _team_a_world(django_db_setup, django_db_blocker, tmp_path_factory):
    """Team A's world, built once for a class of tests (tests/conftest.py's built_once): building
    one per test took more than half of these tests' time."""
    root = tmp_path_factory.mktemp("team-a")
    yield from built_once(django_db_blocker, lambda: (root, build_world(root)), **world_settings(root))


@pytest.fixture
def world(db, settings, _team_a_world) -> SimpleNamespace:
    root, world = _team_a_world
    for name, value in world_settings(root).items():
        setattr(settings, name, value)
    return world


def build_world(tmp_path: Path) -> SimpleNamespace:
    team_a = Team.objects.create(name="Team A")
    team_b = Team.objects.create(name="Team B")
    alice = make_user("alice", team_a, Role.ADMIN)
    w = SimpleNamespace(
        team=team_a,
        alice=alice,
        bob=make_user("bob", team_a, Role.EDITOR),
        vera=make_user("vera", team_a, Role.VIEWER),
        erin=make_user("erin", team_a, Role.VIEWER),  # the member whose role an admin changes
        charlie=make_user("charlie", team_b, Role.ADMIN),
    )
    make_user("dora")  # not in a team: added by name
    w.erin_membership = team_a.memberships.get(user=w.erin)
    w.pipeline = make_pipeline(team_a, alice, name=SECRET)
    w.run = make_run(w.pipeline, alice)
    w.run2 = make_run(w.pipeline, alice)  # the compare page needs two
    Run.objects.filter(pk__in=[w.run.pk, w.run2.pk]).update(state=RunState.SUCCEEDED, finished_at=timezone.now())
    step_run = set_step(w.run, "prep", state=StepState.SUCCEEDED, attempt=1)
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n1,2\n")
    StepOutput.objects.create(step_run=step_run, name="data", artifact=artifacts.store_output(data, "uri_folder"))
    now = timezone.now()
    w.worker = Worker.objects.create(
        name="host-a:1", host="host-a", pid=1, targets=["local"], started_at=now, heartbeat_at=now
    )
    invited = teams.invitation_create(
        team=team_a, email="dana@example.com", role=Role.VIEWER, by=alice, accept_url=lambda token: token
    )
    w.invitation, w.token = invited.invitation, invited.link
    w.team_secret, _ = team_secrets.secret_set(team=team_a, name="registry_token", value="s3cr3t", by=alice)
    w.api_token = api_tokens.token_create(user=alice, name="alice's", scopes=["read"]).token
    w.schedule = schedules.schedule_create(
        team=team_a, pipeline=w.pipeline, user=alice, settings=schedules.Settings(name="hourly", cron="0 * * * *")
    )
    w.component = components.component_register_step(
        team=team_a, version=w.pipeline.latest_version, step_name="prep", user=alice, name="prep", component_version="1"
    ).component
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    w.data_version = data_create_from_path(team=team_a, name="rows", path=tmp_path / "rows.csv", type_="uri_file")
    w.model_version = model_create_from_path(team=team_a, name="clf", path=tmp_path / "rows.csv")
    w.deployment = deployment_create(team=team_a, name="scoring", model_version=w.model_version)
    w.upload_id = upload_begin(user=alice, filename="x.csv", size=1_000_000)
    w.reader = make_pipeline(team_a, alice, name=f"{SECRET}-reader", yaml_text=READER_YAML)
    w.data_trigger = data_triggers.data_trigger_create(
        team=team_a,
        settings=data_triggers.TriggerSettings(
            name="on rows", pipeline=w.reader, input_name="raw", asset=w.data_version.asset
        ),
        user=alice,
    )
    (tmp_path / "lake" / "raw").mkdir(parents=True)
    (tmp_path / "lake" / "raw" / "a.csv").write_text("x\n1\n")
    w.datastore = data_assets.datastore_create(team=team_a, name="lake", kind="local", root=str(tmp_path / "lake"))
    w.endpoint = endpoints.endpoint_create(team=team_a, name="demo", pipeline=w.pipeline, user=alice)
    w.notification = notifications.notification_create(
        pipeline=w.pipeline,
        user=alice,
        kind="webhook",
        url="https://hooks.example.com/x",
        events=["run.failed"],
        allow_private=True,
    ).notification
    w.delivery = Delivery.objects.create(
        notification=w.notification, run=w.run, event="run.failed", payload={}, state="failed", next_attempt_at=now
    )
    published = template_services.template_publish(pipeline=w.pipeline, user=alice, title="Team A template")
    w.template = published.template
    w.clone = template_services.template_use(
        template_version=published, team=team_a, name="from the template", values={}, user=alice
    )
    return w


def persona_user(w, persona: str):
    return {"anonymous": None, "outsider": w.charlie, "viewer": w.vera, "editor": w.bob, "admin": w.alice}[persona]


# Rows that sessions and sign-in bookkeeping may write to whatever the answer.
UNTRACKED = {"sessions.Session", "axes.AccessAttempt", "axes.AccessLog", "axes.AccessFailureLog"}


def database_snapshot() -> dict[str, list]:
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values_list())
        for model in apps.get_models()
        if model._meta.managed and model._meta.label not in UNTRACKED
    }


def status_of(response) -> int | str:
    if response.status_code == 302 and response["Location"].startswith(reverse("login") + "?"):
        return LOGIN
    return response.status_code


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


class TestMatrix:
    """Every row, for every persona, in team A's world (one per class: see _team_a_world)."""

    @pytest.mark.parametrize("persona", PERSONAS)
    @pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
    def test_permission_matrix(self, world, row: Row, persona: str):
        client = Client()
        user = persona_user(world, persona)
        if user is not None:
            client.force_login(user)
        url = row.path or reverse(row.name, args=row.args(world))
        if row.query_for(world):
            url += "?" + row.query_for(world)
        expected = row.expect.for_(persona)
        must_not_change = expected in REFUSED or persona in row.unchanged
        before = database_snapshot() if must_not_change else None
        if row.json:
            response = getattr(client, row.method)(url, row.data(world), content_type="application/json")
        else:
            response = getattr(client, row.method)(url, row.data(world))
        got = status_of(response)
        assert got == expected, f"{row.method.upper()} {url} as {persona}: {got}, expected {expected}"
        if must_not_change:
            assert database_snapshot() == before, f"a refused {row.method.upper()} {url} as {persona} changed data"
        if persona == "outsider":
            assert SECRET.encode() not in body_of(response), f"{url} shows team A's pipeline to an outsider"


# ---- the run page's websocket -------------------------------------------------------------

ORIGIN = (b"origin", b"http://testserver")
WEBSOCKET = {"anonymous": False, "outsider": False, "viewer": True, "editor": True, "admin": True}


def websocket_routes() -> list[str]:
    from runs.routing import websocket_urlpatterns

    return [route for route, _pattern in walk(websocket_urlpatterns)]


def test_every_websocket_route_is_in_the_matrix():
    assert websocket_routes() == ["ws/runs/<int:run_id>/"], "add the new websocket route to the matrix"


async def _connects(path: str, headers) -> bool:
    from pipelines_ui.asgi import application

    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, _code = await comm.connect(timeout=5)
    await comm.disconnect()
    return connected


def _run_async(fn, *args):
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, fn(*args)).result(timeout=60)


@pytest.mark.django_db(transaction=True)
def test_the_run_websocket_follows_the_matrix(tmp_path, settings, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    team_a = Team.objects.create(name="Team A")
    team_b = Team.objects.create(name="Team B")
    users = {
        "anonymous": None,
        "outsider": make_user("charlie", team_b, Role.ADMIN),
        "viewer": make_user("vera", team_a, Role.VIEWER),
        "editor": make_user("bob", team_a, Role.EDITOR),
        "admin": make_user("alice", team_a, Role.ADMIN),
    }
    with mock.patch("runs.orchestrator.run_advance"):
        the_run = make_run(make_pipeline(team_a, users["admin"], name=SECRET), users["admin"])
    got = {}
    for persona, user in users.items():
        headers = [ORIGIN]
        if user is not None:
            client = Client()
            client.force_login(user)
            headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
        got[persona] = _run_async(_connects, f"/ws/runs/{the_run.pk}/", headers)
    assert got == WEBSOCKET


def test_rows_cover_both_methods_of_views_that_take_both(db):
    """A view that answers GET and POST has a row for each (checked on the rows' own names)."""
    both = {"pipeline_create", "pipeline_import", "step_create", "step_edit", "run_create", "team_create"}
    both |= {"invitation_accept", "pipeline_delete", "login"}
    methods: dict[str, set[str]] = {}
    for row in ROWS:
        methods.setdefault(row.name, set()).add(row.method)
    assert all(methods[name] == {"get", "post"} for name in both), {n: methods[n] for n in both}


# ---- what a viewer's pages offer -------------------------------------------------------------


class _Targets(HTMLParser):
    """Every link's href and every POST form's action on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.posts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
        elif tag == "form" and (attributes.get("method") or "").lower() == "post" and attributes.get("action"):
            self.posts.append(attributes["action"])


def _url_name(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.netloc and parts.netloc != "testserver" or not parts.path.startswith("/"):
        return None
    try:
        return resolve(parts.path).url_name
    except Resolver404:
        return None


MEMBER_PAGES = [
    (row, persona)
    for persona in ("viewer", "editor")
    for row in ROWS
    if row.method == "get" and row.expect.for_(persona) == 200
]


class TestMembersPages:
    """What a member's pages offer, in team A's world (one per class: see _team_a_world)."""

    @pytest.mark.parametrize(("row", "persona"), MEMBER_PAGES, ids=[f"{row.id}-{p}" for row, p in MEMBER_PAGES])
    def test_a_members_pages_offer_nothing_their_role_may_not_do(self, world, row: Row, persona: str):
        """No link or form on a page a viewer (or editor) sees leads to what the matrix refuses them (403)."""
        refused = {(r.name, r.method) for r in ROWS if r.expect.for_(persona) == 403}
        client = Client()
        client.force_login(persona_user(world, persona))
        url = row.path or reverse(row.name, args=row.args(world))
        response = client.get(url + (f"?{row.query_for(world)}" if row.query_for(world) else ""))
        if "text/html" not in response.get("Content-Type", "") or response.streaming:
            return
        targets = _Targets()
        targets.feed(response.content.decode())
        offered = {(_url_name(href), "get") for href in targets.links}
        offered |= {(_url_name(action), "post") for action in targets.posts}
        assert not offered & refused, f"{url} offers the {persona} {sorted(offered & refused)}"
