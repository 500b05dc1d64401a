"""The REST API against design.md: auth, scopes and roles, errors, pagination, runs, logs."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from unittest import mock

import jsonschema
import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from pipelines_ui.api.models import ApiToken
from pipelines_ui.api.tokens import digest
from pipelines_ui.models import Pipeline, Team
from runs.models import LogChunk, Metric, Run, StepRun
from tests.api.conftest import bearer, token_for
from tests.conftest import make_user
from tests.runs.conftest import PIPELINE_YAML, make_pipeline, make_run

pytestmark = pytest.mark.django_db


# ---- authentication -------------------------------------------------------------------


def test_no_token_is_401_with_a_bearer_challenge(pipeline):
    response = APIClient().get("/api/v1/pipelines/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["errors"] == [] and set(response.json()) == {"detail", "errors"}


@pytest.mark.parametrize("header", ["Bearer swt_nope", "Bearer", "Bearer a b", "Bearer \u00e9t\u00e9"])
def test_a_wrong_token_is_401(pipeline, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/pipelines/").status_code == 401


def test_expired_and_revoked_tokens_are_401(alice, pipeline):
    expired = token_for(alice, "read")
    ApiToken.objects.filter(token_sha256=digest(expired)).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked = token_for(alice, "read")
    ApiToken.objects.filter(token_sha256=digest(revoked)).update(revoked_at=timezone.now())
    assert bearer(expired).get("/api/v1/pipelines/").status_code == 401
    assert bearer(revoked).get("/api/v1/pipelines/").status_code == 401


def test_a_token_is_stored_hashed_and_records_its_use(alice, pipeline):
    secret = token_for(alice, "read")
    token = ApiToken.objects.get()
    assert secret not in (token.token_sha256, token.prefix) and token.token_sha256 == digest(secret)
    assert token.last_used_at is None
    assert bearer(secret).get("/api/v1/pipelines/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_a_deactivated_user_s_token_is_401(alice, pipeline):
    secret = token_for(alice, "read")
    alice.is_active = False
    alice.save()
    assert bearer(secret).get("/api/v1/pipelines/").status_code == 401


# ---- scopes, roles, teams ---------------------------------------------------------------


def test_a_token_without_the_read_scope_cannot_list(alice, pipeline):
    response = bearer(token_for(alice, "run")).get("/api/v1/pipelines/")
    assert response.status_code == 403
    assert "'read' scope" in response.json()["detail"]


def test_a_viewer_s_run_scoped_token_cannot_start_a_run(viewer, pipeline):
    client = bearer(token_for(viewer, "read", "run"))
    assert client.get(f"/api/v1/pipelines/{pipeline.pk}/").status_code == 200
    response = client.post(f"/api/v1/pipelines/{pipeline.pk}/runs/", {}, format="json")
    assert response.status_code == 403
    assert "viewer" in response.json()["detail"]
    assert not Run.objects.exists()


def test_another_team_s_objects_are_404(charlie, pipeline, alice):
    run = make_run(pipeline, alice)
    client = bearer(token_for(charlie, "read", "run"))
    for url in (
        f"/api/v1/pipelines/{pipeline.pk}/",
        f"/api/v1/pipelines/{pipeline.pk}/versions/",
        f"/api/v1/runs/{run.pk}/",
        f"/api/v1/runs/{run.pk}/steps/prep/log/",
        f"/api/v1/runs/{run.pk}/metrics/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 404
    assert client.get("/api/v1/pipelines/").json()["count"] == 0
    assert client.get("/api/v1/runs/").json()["count"] == 0


def test_a_token_limited_to_one_team_sees_nothing_of_the_user_s_other_teams(alice, pipeline, other_team):
    from pipelines_ui.models import Membership

    Membership.objects.create(team=other_team, user=alice, role="admin")
    client = bearer(token_for(alice, "read", team=other_team))
    assert client.get(f"/api/v1/pipelines/{pipeline.pk}/").status_code == 404
    assert client.get("/api/v1/pipelines/").json()["count"] == 0
    teams = client.get("/api/v1/teams/").json()
    assert teams["count"] == 1 and [t["name"] for t in teams["results"]] == [other_team.name]


def test_the_browser_session_works_with_csrf(alice, pipeline):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/v1/pipelines/").status_code == 200
    # A state change through the session needs the CSRF token, as a form would.
    assert client.post(f"/api/v1/pipelines/{pipeline.pk}/runs/", {}, format="json").status_code == 403
    assert not Run.objects.exists()


# ---- pipelines ----------------------------------------------------------------------------


def test_pipelines_are_paginated(alice, team):
    from tests.runs.conftest import make_pipeline

    for i in range(3):
        make_pipeline(team, alice, name=f"p{i}")
    body = bearer(token_for(alice, "read")).get("/api/v1/pipelines/?page_size=2").json()
    assert body["count"] == 3 and len(body["results"]) == 2
    assert body["next"].endswith("page=2&page_size=2") and body["previous"] is None
    first = body["results"][0]
    assert first["name"] == "p0" and first["team"] == team.name and first["version"] == 1
    for page in ("abc", "3", "0"):
        response = bearer(token_for(alice, "read")).get(f"/api/v1/pipelines/?page_size=2&page={page}")
        assert response.status_code == 400 and response.json()["errors"][0]["field"] == "page", page
    for size in ("abc", "0", "501"):
        response = bearer(token_for(alice, "read")).get(f"/api/v1/pipelines/?page_size={size}")
        assert response.status_code == 400 and response.json()["errors"][0]["field"] == "page_size", size


def test_import_a_pipeline_by_upload(alice, team):
    client = bearer(token_for(alice, "read", "write"))
    upload = io.BytesIO(PIPELINE_YAML.encode())
    upload.name = "pipeline.yml"
    response = client.post("/api/v1/pipelines/", {"file": upload, "team": team.name}, format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "demo" and body["team"] == team.name and body["version"] == 1
    assert Pipeline.objects.get(pk=body["id"]).team == team


def test_validate_checks_as_an_import_would_and_stores_nothing(alice, team, viewer):
    client = bearer(token_for(viewer, "read"))  # reading is enough: nothing is stored

    def validate(text: str, **extra):
        upload = io.BytesIO(text.encode())
        upload.name = "mine.yml"
        return client.post("/api/v1/pipelines/validate/", {"file": upload, **extra}, format="multipart")

    good = validate(PIPELINE_YAML, team=team.name)
    assert good.status_code == 200, good.json()
    assert good.json()["valid"] is True and good.json()["steps"] == ["prep", "train", "report"]
    # The inputs as a version's spec gives them: what `stepwise run FILE --set` checks before importing.
    inputs = good.json()["inputs"]
    assert list(inputs) == ["epochs", "rate", "verbose", "mode", "note"]
    assert inputs["epochs"]["type"] == "integer" and inputs["epochs"]["default"] == 3
    assert inputs["mode"]["enum"] == ["fast", "full"]
    # What only the server knows: its compute targets (a file alone looks valid).
    unknown = validate(
        PIPELINE_YAML.replace("display_name: demo", "display_name: demo\nsettings: {default_compute: nosuch}")
    )
    assert unknown.status_code == 400
    assert any("nosuch" in e["message"] for e in unknown.json()["errors"])
    assert validate(PIPELINE_YAML, team="Nobody").status_code == 404
    assert not Pipeline.objects.exists()


def test_an_invalid_pipeline_is_400_naming_each_problem_and_saves_nothing(alice, team):
    client = bearer(token_for(alice, "write"))
    bad = yaml.safe_load(PIPELINE_YAML)
    bad["jobs"]["train"]["inputs"]["data"] = "${{parent.jobs.nope.outputs.data}}"
    upload = io.BytesIO(yaml.safe_dump(bad).encode())
    upload.name = "pipeline.yml"
    response = client.post("/api/v1/pipelines/", {"file": upload, "team": team.name}, format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "the pipeline is invalid"
    problem = body["errors"][0]
    assert set(problem) == {"file", "job", "field", "line", "message"}
    assert problem["job"] == "train" and "nope" in problem["message"]
    assert "/tmp" not in str(body)
    assert not Pipeline.objects.exists()


def test_import_needs_the_write_scope_and_an_editor(alice, viewer, team):
    upload = io.BytesIO(PIPELINE_YAML.encode())
    upload.name = "pipeline.yml"
    assert (
        bearer(token_for(alice, "read"))
        .post("/api/v1/pipelines/", {"file": upload, "team": team.name}, format="multipart")
        .status_code
        == 403
    )
    upload.seek(0)
    response = bearer(token_for(viewer, "write")).post(
        "/api/v1/pipelines/", {"file": upload, "team": team.name}, format="multipart"
    )
    assert response.status_code == 403
    upload.seek(0)
    response = bearer(token_for(alice, "write")).post(
        "/api/v1/pipelines/", {"file": upload, "team": "Nobody's"}, format="multipart"
    )
    assert response.status_code == 404
    assert not Pipeline.objects.exists()


def test_import_without_a_file_is_400_naming_the_field(alice, team):
    response = bearer(token_for(alice, "write")).post("/api/v1/pipelines/", {"team": team.name}, format="multipart")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["file"]


def test_versions_and_the_export_zip(alice, pipeline):
    client = bearer(token_for(alice, "read"))
    versions = client.get(f"/api/v1/pipelines/{pipeline.pk}/versions/").json()
    assert versions["count"] == 1 and versions["results"][0]["number"] == 1
    detail = client.get(f"/api/v1/pipelines/{pipeline.pk}/versions/1/").json()
    assert set(detail["spec"]["jobs"]) == {"prep", "train", "report"}
    assert client.get(f"/api/v1/pipelines/{pipeline.pk}/versions/9/").status_code == 404
    response = client.get(f"/api/v1/pipelines/{pipeline.pk}/versions/1/export/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert "pipeline.yml" in names


# ---- runs ---------------------------------------------------------------------------------


def test_start_a_run_with_inputs(alice, pipeline):
    client = bearer(token_for(alice, "read", "run"))
    response = client.post(
        f"/api/v1/pipelines/{pipeline.pk}/runs/", {"inputs": {"epochs": 7, "mode": "full"}}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    run = Run.objects.get(pk=body["id"])
    assert body["run"] == run.pk and body["pipeline"] == pipeline.pk and body["version"] == 1
    assert body["inputs"] == {"epochs": 7, "mode": "full"} and run.inputs == body["inputs"]
    assert body["created_by"] == "alice" and body["state"] == "queued"
    assert set(body["steps"]) == {"prep", "train", "report"}
    assert body["url"].endswith(f"/runs/{run.pk}/")


def test_force_steps_execute_only_the_named_steps_and_a_wrong_name_is_400(alice, pipeline):
    client = bearer(token_for(alice, "run"))
    url = f"/api/v1/pipelines/{pipeline.pk}/runs/"
    response = client.post(url, {"force_steps": ["train", "trian", "x"]}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"file": None, "job": None, "field": "force_steps", "line": None, "message": "no steps named 'trian', 'x'"}
    ]
    assert not Run.objects.exists()

    response = client.post(url, {"force_steps": ["train"]}, format="json")
    assert response.status_code == 201, response.json()
    forced = dict(Run.objects.get().steps.values_list("name", "force"))
    assert forced == {"prep": False, "train": True, "report": False}


def test_a_wrong_input_type_is_400_naming_the_input(alice, pipeline):
    client = bearer(token_for(alice, "run"))
    response = client.post(f"/api/v1/pipelines/{pipeline.pk}/runs/", {"inputs": {"epochs": "many"}}, format="json")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["inputs.epochs"]
    response = client.post(f"/api/v1/pipelines/{pipeline.pk}/runs/", {"inputs": {"nope": 1}}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "inputs.nope"
    # No command line carries NUL (the step failed with an empty log; PostgreSQL's jsonb refuses it).
    response = client.post(f"/api/v1/pipelines/{pipeline.pk}/runs/", {"inputs": {"note": "a\u0000b"}}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "inputs.note"
    assert "NUL" in response.json()["errors"][0]["message"]
    assert not Run.objects.exists()


def test_an_input_outside_its_min_max_is_400_naming_the_input_and_range(alice, team):
    yaml_text = PIPELINE_YAML.replace("{type: integer, default: 3,", "{type: integer, default: 3, min: 1, max: 10,")
    pipeline = make_pipeline(team, alice, name="bounded", yaml_text=yaml_text)
    client = bearer(token_for(alice, "run"))
    response = client.post(f"/api/v1/pipelines/{pipeline.pk}/runs/", {"inputs": {"epochs": 0}}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"file": None, "job": None, "field": "inputs.epochs", "line": None, "message": "0 is below the minimum 1"}
    ]
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        {"inputs": []},
        {"version": "x"},
        {"version": 0},
        {"version": 99999999999999999999},
        {"force_rerun": "x"},
        {"force_steps": "train"},
        {"force_steps": [1, {}]},
    ],
)
def test_malformed_run_requests_are_400(alice, pipeline, body):
    response = bearer(token_for(alice, "run")).post(f"/api/v1/pipelines/{pipeline.pk}/runs/", body, format="json")
    assert response.status_code == 400, response.content
    assert "detail" in response.json()
    assert not Run.objects.exists()


def test_malformed_json_is_400(alice, pipeline):
    client = bearer(token_for(alice, "run"))
    response = client.post(f"/api/v1/pipelines/{pipeline.pk}/runs/", "{nope", content_type="application/json")
    assert response.status_code == 400 and "JSON" in response.json()["detail"]
    assert "JSON" in response.json()["errors"][0]["message"]


def test_json_nested_too_deeply_to_decode_is_400(alice, pipeline):
    # Python's decoder gives up with RecursionError: it was a 500 on every JSON endpoint.
    client = bearer(token_for(alice, "run"))
    deep = '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post(f"/api/v1/pipelines/{pipeline.pk}/runs/", deep, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]
    assert not Run.objects.exists()


def test_an_unknown_version_in_the_body_is_400_naming_it(alice, pipeline):
    response = bearer(token_for(alice, "run")).post(
        f"/api/v1/pipelines/{pipeline.pk}/runs/", {"version": 99}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "version" and "no version 99" in response.json()["detail"]


def test_every_error_body_has_the_errors_list(alice, pipeline):
    client = bearer(token_for(alice, "read"))
    missing = client.get("/api/v1/runs/999999/")
    assert missing.status_code == 404 and missing.json() == {"detail": missing.json()["detail"], "errors": []}
    assert bearer("swt_wrong").get("/api/v1/runs/").json()["errors"] == []


def test_a_secret_input_is_accepted_and_never_echoed(alice, team):
    from tests.runs.conftest import make_pipeline

    text = PIPELINE_YAML.replace(
        "  note: {type: string, optional: true}", "  note: {type: string, optional: true}\n  key: {type: secret}"
    )
    pipeline = make_pipeline(team, alice, name="secretive", yaml_text=text)
    client = bearer(token_for(alice, "read", "run"))
    response = client.post(
        f"/api/v1/pipelines/{pipeline.pk}/runs/", {"inputs": {"key": "hunter2-very-secret"}}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert "hunter2" not in response.content.decode()
    run_id = response.json()["id"]
    assert "hunter2" not in client.get(f"/api/v1/runs/{run_id}/").content.decode()
    assert "hunter2" not in client.get("/api/v1/runs/").content.decode()
    assert "hunter2" not in str(Run.objects.get(pk=run_id).inputs)


def test_runs_list_filters_and_validates(alice, pipeline):
    first = make_run(pipeline, alice)
    second = make_run(pipeline, alice)
    Run.objects.filter(pk=first.pk).update(state="failed")
    client = bearer(token_for(alice, "read"))
    body = client.get(f"/api/v1/runs/?pipeline={pipeline.pk}").json()
    assert [r["id"] for r in body["results"]] == [second.pk, first.pk]
    assert [r["id"] for r in client.get("/api/v1/runs/?state=failed").json()["results"]] == [first.pk]
    assert client.get("/api/v1/runs/?state=bogus").status_code == 400
    assert client.get("/api/v1/runs/?pipeline=x").status_code == 400
    # '²' is a digit to str.isdigit(), not to int().
    response = client.get("/api/v1/runs/?pipeline=%C2%B2")
    assert response.status_code == 400
    assert "pipeline" in response.json()["errors"][0]["field"]


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/runs/?pipeline=&state=",
        "/api/v1/runs/?pipeline=&state=&page=&page_size=",
        "/api/v1/schedules/?pipeline=",
        "/api/v1/data-triggers/?pipeline=",
        "/api/v1/pipelines/?team=",
        "/api/v1/components/?team=&name=",
    ],
)
def test_an_empty_filter_means_no_filter(alice, pipeline, query):
    # An HTML GET form sends every field, blank or not: `?pipeline=&state=` asks for no filter.
    make_run(pipeline, alice)
    client = bearer(token_for(alice, "read"))
    response = client.get(query)
    assert response.status_code == 200, response.content
    assert response.json()["count"] == client.get(query.split("?")[0]).json()["count"]


def test_an_empty_filter_beside_a_bad_one_still_names_the_bad_one(alice, pipeline):
    client = bearer(token_for(alice, "read"))
    response = client.get("/api/v1/runs/?pipeline=&state=bogus")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["state"]
    response = client.get("/api/v1/runs/?pipeline=x&state=")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["pipeline"]
    assert client.get("/api/v1/runs/?pipeline=&pipeline=1").status_code == 400
    assert client.get("/api/v1/runs/?page=0").status_code == 400


def test_the_schema_admits_an_empty_value_for_every_query_parameter_and_no_other_non_digits(client):
    # The schema says what the API reads: an empty value is allowed (and means absence), while a
    # number parameter holds digits only. Declared as such, not as `allowEmptyValue`, which made
    # the schemathesis test flaky (d3589cb).
    paths = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    query = {
        (path, p["name"]): p["schema"]
        for path, operations in paths.items()
        for operation in operations.values()
        for p in operation.get("parameters", [])
        if p["in"] == "query"
    }
    assert query and not [key for key, schema in query.items() if not jsonschema.Draft4Validator(schema).is_valid("")]
    numbers = {key for key, schema in query.items() if schema.get("pattern") == "^[0-9]*$"}
    assert {("/api/v1/runs/", "pipeline"), ("/api/v1/runs/", "page_size")} <= numbers
    assert not any(jsonschema.Draft4Validator(query[key]).is_valid("1a") for key in numbers)
    assert not [key for key, schema in query.items() if schema.get("type") == "integer"]


@pytest.mark.parametrize("path", ["/api/v1/pipelines/?team=", "/api/v1/components/?team=", "/api/v1/components/?name="])
def test_a_name_filter_holding_nul_matches_nothing(alice, pipeline, path):
    # PostgreSQL refuses NUL in a query's text: schemathesis found a 500 here.
    response = bearer(token_for(alice, "read")).get(path + "Data%00Science")
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_cancel_and_rerun(alice, pipeline):
    run = make_run(pipeline, alice)
    client = bearer(token_for(alice, "read", "run"))
    response = client.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 200
    run.refresh_from_db()
    assert run.cancel_requested
    Run.objects.filter(pk=run.pk).update(state="canceled")
    assert client.post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 409
    response = client.post(f"/api/v1/runs/{run.pk}/rerun/", {"from_step": "train"}, format="json")
    assert response.status_code == 201
    new = Run.objects.get(pk=response.json()["id"])
    assert new.rerun_of == run
    assert set(new.steps.filter(force=True).values_list("name", flat=True)) == {"train", "report"}
    response = client.post(f"/api/v1/runs/{run.pk}/rerun/", {"from_step": "nope"}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "from_step"
    bad = client.post(f"/api/v1/runs/{run.pk}/rerun/", {"from_step": "train", "failed_only": True}, format="json")
    assert bad.status_code == 400


def log_of(client, run, after_seq=None) -> dict:
    query = "" if after_seq is None else f"?after_seq={after_seq}"
    response = client.get(f"/api/v1/runs/{run.pk}/steps/prep/log/{query}")
    assert response.status_code == 200, response.json()
    return response.json()


def test_a_step_log_numbers_its_lines_from_1(alice, pipeline):
    run = make_run(pipeline, alice)
    step = StepRun.objects.get(run=run, name="prep")
    LogChunk.objects.create(step_run=step, attempt=1, seq=0, line_count=3, text="one\ntwo\nthree")
    client = bearer(token_for(alice, "read"))
    every_line = {
        "lines": [{"seq": 1, "text": "one"}, {"seq": 2, "text": "two"}, {"seq": 3, "text": "three"}],
        "next_seq": 3,
    }
    assert log_of(client, run) == every_line
    assert log_of(client, run, after_seq=0) == every_line
    assert log_of(client, run, after_seq="") == every_line
    assert client.get(f"/api/v1/runs/{run.pk}/steps/prep/log/?after_seq=-1").status_code == 400
    assert client.get(f"/api/v1/runs/{run.pk}/steps/nope/log/").status_code == 404


def test_after_seq_a_line_s_seq_returns_only_the_later_lines(alice, pipeline):
    run = make_run(pipeline, alice)
    step = StepRun.objects.get(run=run, name="prep")
    LogChunk.objects.create(step_run=step, attempt=1, seq=0, line_count=2, text="one\ntwo")
    LogChunk.objects.create(step_run=step, attempt=2, seq=2, line_count=2, text="three\nfour")
    client = bearer(token_for(alice, "read"))
    assert log_of(client, run, after_seq=1) == {
        "lines": [{"seq": 2, "text": "two"}, {"seq": 3, "text": "three"}, {"seq": 4, "text": "four"}],
        "next_seq": 4,
    }
    assert log_of(client, run, after_seq=3) == {"lines": [{"seq": 4, "text": "four"}], "next_seq": 4}
    assert log_of(client, run, after_seq=4) == {"lines": [], "next_seq": 4}
    assert log_of(client, run, after_seq=9) == {"lines": [], "next_seq": 9}


def test_after_seq_next_seq_returns_nothing_until_new_lines_arrive(alice, pipeline):
    run = make_run(pipeline, alice)
    step = StepRun.objects.get(run=run, name="prep")
    client = bearer(token_for(alice, "read"))
    assert log_of(client, run) == {"lines": [], "next_seq": 0}
    LogChunk.objects.create(step_run=step, attempt=1, seq=0, line_count=2, text="one\ntwo")
    page = log_of(client, run, after_seq=0)
    assert [line["seq"] for line in page["lines"]] == [1, 2] and page["next_seq"] == 2
    # Polling with either what the page said or the last line held: nothing twice, nothing missed.
    assert log_of(client, run, after_seq=page["next_seq"]) == {"lines": [], "next_seq": 2}
    assert log_of(client, run, after_seq=page["lines"][-1]["seq"]) == {"lines": [], "next_seq": 2}
    LogChunk.objects.create(step_run=step, attempt=1, seq=2, line_count=1, text="three")
    assert log_of(client, run, after_seq=page["next_seq"]) == {"lines": [{"seq": 3, "text": "three"}], "next_seq": 3}


def test_paging_a_log_past_omitted_lines_reads_every_kept_line_once(alice, pipeline):
    run = make_run(pipeline, alice)
    step = StepRun.objects.get(run=run, name="prep")
    LogChunk.objects.create(step_run=step, attempt=1, seq=0, line_count=2, text="line 0\nline 1")
    LogChunk.objects.create(step_run=step, attempt=1, seq=2, line_count=5, text="", omitted=True)
    LogChunk.objects.create(step_run=step, attempt=1, seq=7, line_count=2, text="line 7\nline 8")
    client = bearer(token_for(alice, "read"))
    seen: list[tuple[int, str]] = []
    after = 0
    for _ in range(5):
        page = log_of(client, run, after_seq=after)
        seen += [(line["seq"], line["text"]) for line in page["lines"]]
        if page["next_seq"] == after:
            break
        after = page["next_seq"]
    # Each line keeps its number (stored seq + 1) across the gap the store left out.
    assert seen == [(1, "line 0"), (2, "line 1"), (8, "line 7"), (9, "line 8")]
    assert after == 9


def test_metrics(alice, pipeline):
    run = make_run(pipeline, alice)
    step = StepRun.objects.get(run=run, name="train")
    Metric.objects.create(step_run=step, name="loss", value=0.5, step=1)
    body = bearer(token_for(alice, "read")).get(f"/api/v1/runs/{run.pk}/metrics/").json()
    assert body["count"] == 1 and body["next"] is None
    assert [(m["step_name"], m["name"], m["step"], m["value"]) for m in body["results"]] == [("train", "loss", 1, 0.5)]


# ---- throttling -----------------------------------------------------------------------------


def test_a_token_over_its_rate_gets_429_with_retry_after(alice, pipeline, settings):
    settings.STEPWISE_API_RATE = "3/min"
    client = bearer(token_for(alice, "read"))
    other = bearer(token_for(alice, "read"))
    statuses = [client.get("/api/v1/teams/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get("/api/v1/teams/")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    # Counted per token: another token of the same user is not slowed down.
    assert other.get("/api/v1/teams/").status_code == 200


# ---- schema and docs ----------------------------------------------------------------------


def test_the_schema_and_offline_docs_are_served(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/pipelines/{pipeline_id}/runs/" in paths and "/api/v1/runs/{run_id}/steps/{step_name}/log/" in paths
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower() and "<script>" not in html
    script = client.get("/api/v1/docs/?script=").content.decode()
    assert '"validatorUrl": null' in script  # no badge fetched from validator.swagger.io


# ---- the token command ---------------------------------------------------------------------


def test_stepwise_token_create_prints_only_the_token(alice, team):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "stepwise_token",
        "create",
        "alice",
        "--team",
        team.name,
        "--scope",
        "run",
        "--scope",
        "read",
        "--expires-days",
        "7",
        stdout=out,
        stderr=err,
    )
    secret = out.getvalue().strip()
    assert secret.startswith("swt_") and "\n" not in secret
    token = ApiToken.objects.get(token_sha256=digest(secret))
    assert token.team == team and token.scopes == ["read", "run"] and token.expires_at is not None
    assert bearer(secret).get("/api/v1/teams/").status_code == 200
    # `[--scope S ...]`: several after one flag, as design.md writes it.
    call_command("stepwise_token", "create", "alice", "--scope", "read", "write", stdout=out, stderr=err)
    assert ApiToken.objects.get(token_sha256=digest(out.getvalue().split()[-1])).scopes == ["read", "write"]
    call_command("stepwise_token", "create", "--scope", "run", "alice", stdout=out, stderr=err)  # options first
    assert ApiToken.objects.get(token_sha256=digest(out.getvalue().split()[-1])).scopes == ["run"]
    with pytest.raises(CommandError, match="unknown scope 'sudo'"):
        call_command("stepwise_token", "create", "alice", "--scope", "sudo", stdout=out, stderr=err)


def test_stepwise_token_refuses_unknown_users_and_teams(alice):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("stepwise_token", "create", "nobody")
    with pytest.raises(CommandError, match="no team named"):
        call_command("stepwise_token", "create", "alice", "--team", "Nope")
    outsider_team = Team.objects.create(name="Other")
    with pytest.raises(CommandError, match="not a member"):
        call_command("stepwise_token", "create", "alice", "--team", outsider_team.name)
    assert not ApiToken.objects.exists()


# ---- the tokens page -----------------------------------------------------------------------


def test_the_tokens_page_shows_a_new_token_once_then_revokes_it(client, alice, team):
    client.force_login(alice)
    response = client.post(
        "/account/tokens/",
        {"name": "nightly CI", "team": team.pk, "scopes": ["read", "run"], "expires_days": 30},
        follow=True,
    )
    page = response.content.decode()
    token = ApiToken.objects.get()
    secret_start = token.prefix
    assert "shown only this once" in page and secret_start in page
    import re

    secret = re.search(r'value="(swt_[^"]+)"', page).group(1)
    assert digest(secret) == token.token_sha256
    assert response["Cache-Control"] == "no-store"
    # Nowhere in the database: not in a session row waiting for the next page either.
    from django.contrib.sessions.models import Session

    assert not any(secret in str(row.get_decoded()) for row in Session.objects.all())
    again = client.get("/account/tokens/").content.decode()
    assert secret not in again and "nightly CI" in again
    client.post(f"/account/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer(secret).get("/api/v1/teams/").status_code == 401


def test_the_tokens_page_refuses_a_team_the_user_is_not_in(client, alice, other_team):
    client.force_login(alice)
    response = client.post("/account/tokens/", {"name": "x", "team": other_team.pk, "scopes": ["read"]})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_another_user_cannot_revoke_my_token(client, alice, team):
    token_for(alice, "read")
    token = ApiToken.objects.get()
    mallory = make_user("mallory", team)
    client.force_login(mallory)
    client.post(f"/account/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is None


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/api/v1/runs/?pipeline=1&pipeline=2", "pipeline"),
        ("/api/v1/runs/?state=queued&state=running", "state"),
        ("/api/v1/pipelines/?team=a&team=b", "team"),
        ("/api/v1/schedules/?pipeline=1&pipeline=1", "pipeline"),
        ("/api/v1/data-triggers/?pipeline=%5B%5D&pipeline=29795", "pipeline"),
    ],
)
def test_a_query_parameter_given_twice_is_400_naming_it(alice, url, param):
    response = bearer(token_for(alice)).get(url)
    assert response.status_code == 400, response.content
    assert param in str(response.json()) and "give it once" in str(response.json())


def test_a_failure_of_the_server_is_the_api_s_json_500_and_is_logged(alice, pipeline, caplog):
    """Not Django's HTML error page: a client reads every API answer as `{"detail", "errors"}`."""
    client = bearer(token_for(alice, "read"))
    client.raise_request_exception = False
    with mock.patch("pipelines_ui.api.views._pipeline", side_effect=RuntimeError("a bug")):
        response = client.get(f"/api/v1/pipelines/{pipeline.pk}/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith("internal error") and response.json()["errors"] == []
    assert "a bug" not in response.content.decode()
    logged = [r for r in caplog.records if r.name == "django.request" and r.levelname == "ERROR"]
    assert logged and logged[0].exc_info[1].args == ("a bug",)
    # The test client (and whatever listens for Django's signal) still sees the exception.
    with mock.patch("pipelines_ui.api.views._pipeline", side_effect=RuntimeError("a bug")), pytest.raises(RuntimeError):
        bearer(token_for(alice, "read")).get(f"/api/v1/pipelines/{pipeline.pk}/")
