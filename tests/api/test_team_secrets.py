"""Team secrets through the API: members list names, admins set, replace and delete; the value
is write-only (no answer holds it, nor an error report)."""

from __future__ import annotations

import logging
from unittest import mock

import pytest
from django.views.debug import ExceptionReporter

from pipelines_ui import team_secrets
from pipelines_ui.models import Membership, TeamSecret
from tests.api.conftest import bearer, token_for
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

VALUE = "hunter2-registry-token"
ALL_SCOPES = ("read", "run", "write", "admin")


def url(team, name: str | None = None) -> str:
    base = f"/api/v1/teams/{team.pk}/secrets/"
    return base if name is None else f"{base}{name}/"


def admin_client(user, team=None):
    return bearer(token_for(user, "read", "admin", team=team))


def stored(team) -> dict[str, str]:
    names = team_secrets.secret_names(team)
    return team_secrets.secret_values(team, names)


@pytest.fixture
def secret(team, alice):
    return team_secrets.secret_set(team=team, name="REGISTRY_TOKEN", value=VALUE, by=alice)[0]


# ---- listing ------------------------------------------------------------------------------


def test_a_viewer_lists_names_and_who_set_them_never_values(team, alice, viewer, secret):
    team_secrets.secret_set(team=team, name="DEPLOY_KEY", value="-----BEGIN KEY-----\nabc\n", by=None)
    response = bearer(token_for(viewer, "read")).get(url(team))
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2 and body["next"] is None and body["previous"] is None
    assert [row["name"] for row in body["results"]] == ["DEPLOY_KEY", "REGISTRY_TOKEN"]
    assert [row["updated_by"] for row in body["results"]] == [None, "alice"]
    assert all(set(row) == {"name", "updated_at", "updated_by"} for row in body["results"])
    text = response.content.decode()
    assert VALUE not in text and "BEGIN KEY" not in text and '"value"' not in text
    stored_token = TeamSecret.objects.get(name="REGISTRY_TOKEN").value
    assert stored_token not in text  # not even encrypted


def test_the_list_is_paginated(team, viewer):
    for i in range(3):
        team_secrets.secret_set(team=team, name=f"S{i}", value="x", by=None)
    body = bearer(token_for(viewer, "read")).get(url(team) + "?page_size=2").json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"]
    assert bearer(token_for(viewer, "read")).get(url(team) + "?page=9").status_code == 400


def test_another_team_s_secrets_are_404(team, other_team, secret):
    outsider = make_user("outsider", other_team, "admin")
    client = bearer(token_for(outsider, *ALL_SCOPES))
    assert client.get(url(team)).status_code == 404
    assert client.put(url(team, "REGISTRY_TOKEN"), {"value": "planted"}, format="json").status_code == 404
    assert client.delete(url(team, "REGISTRY_TOKEN")).status_code == 404
    assert client.get(url(other_team)).json()["results"] == []
    assert stored(team) == {"REGISTRY_TOKEN": VALUE}


def test_a_team_that_does_not_exist_is_404(alice):
    assert admin_client(alice).get("/api/v1/teams/999999999999999999999/secrets/").status_code == 404


def test_a_token_limited_to_another_team_sees_nothing_of_this_one(team, other_team, alice, secret):
    Membership.objects.create(team=other_team, user=alice, role="admin")
    client = bearer(token_for(alice, *ALL_SCOPES, team=other_team))
    assert client.get(url(team)).status_code == 404
    assert client.put(url(team, "REGISTRY_TOKEN"), {"value": "planted"}, format="json").status_code == 404
    assert client.put(url(team, "NEW"), {"value": "planted"}, format="json").status_code == 404
    assert client.delete(url(team, "REGISTRY_TOKEN")).status_code == 404
    assert stored(team) == {"REGISTRY_TOKEN": VALUE}
    # Limited to this team, the same user's token does it.
    assert admin_client(alice, team=team).delete(url(team, "REGISTRY_TOKEN")).status_code == 204


# ---- setting and replacing -----------------------------------------------------------------


def test_put_creates_then_replaces_and_never_echoes_the_value(team, alice, bob):
    client = admin_client(alice)
    response = client.put(url(team, "REGISTRY_TOKEN"), {"value": VALUE}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"name", "updated_at", "updated_by"}
    assert body["name"] == "REGISTRY_TOKEN" and body["updated_by"] == "alice"
    assert VALUE not in response.content.decode()
    assert stored(team) == {"REGISTRY_TOKEN": VALUE}
    first = TeamSecret.objects.get()

    # Another admin replaces it: 200, the same row, the new value, who set it last.
    Membership.objects.filter(team=team, user=bob).update(role="admin")
    replaced = " new value\n"  # spaces and newlines are part of a secret
    response = admin_client(bob).put(url(team, "REGISTRY_TOKEN"), {"value": replaced}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["updated_by"] == "bob"
    assert "new value" not in response.content.decode()
    assert stored(team) == {"REGISTRY_TOKEN": replaced}
    second = TeamSecret.objects.get()
    assert second.pk == first.pk and second.value != first.value and second.updated_at >= first.updated_at


def test_the_session_of_a_team_admin_may_set_one(client, team, alice):
    client.force_login(alice)
    response = client.put(url(team, "TOKEN"), {"value": VALUE}, content_type="application/json")
    assert response.status_code == 201
    assert stored(team) == {"TOKEN": VALUE}


def test_unknown_keys_are_ignored_as_elsewhere(team, alice):
    response = admin_client(alice).put(url(team, "TOKEN"), {"value": VALUE, "name": "OTHER"}, format="json")
    assert response.status_code == 201
    assert stored(team) == {"TOKEN": VALUE}


@pytest.mark.parametrize(
    ("name", "body", "fields"),
    [
        ("1st", {"value": VALUE}, ["name"]),
        ("with-dash", {"value": VALUE}, ["name"]),
        ("caf%C3%A9", {"value": VALUE}, ["name"]),
        ("A" * 101, {"value": VALUE}, ["name"]),
        ("TOKEN", {"value": ""}, ["value"]),
        ("TOKEN", {"value": 12}, ["value"]),
        ("TOKEN", {"value": 1.5}, ["value"]),
        ("TOKEN", {"value": True}, ["value"]),
        ("TOKEN", {"value": None}, ["value"]),
        ("TOKEN", {"value": ["a"]}, ["value"]),
        ("TOKEN", {"value": {"a": "b"}}, ["value"]),
        ("TOKEN", {"value": "a\x00b"}, ["value"]),
        ("TOKEN", '{"value": "\\ud800"}', ["value"]),  # a lone surrogate, as JSON may escape one
        ("TOKEN", {"value": "x" * (64 * 1024 + 1)}, ["value"]),
        ("TOKEN", {"value": "\u00e9" * (32 * 1024 + 1)}, ["value"]),  # under 64 Ki characters, over 64 KiB
        ("TOKEN", {}, ["value"]),
        ("TOKEN", ["value"], [None]),
        ("1st", {}, ["name", "value"]),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_a_bad_name_or_value_is_400_naming_it_and_saves_nothing(team, alice, name, body, fields):
    client = admin_client(alice)
    if isinstance(body, str):
        response = client.put(url(team, name), body, content_type="application/json")
    else:
        response = client.put(url(team, name), body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == fields, errors
    assert all(e["message"] for e in errors) and response.json()["detail"]
    assert not TeamSecret.objects.exists()


def test_a_body_that_is_not_json_is_refused(team, alice):
    client = admin_client(alice)
    response = client.put(url(team, "TOKEN"), "value=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    response = client.put(url(team, "TOKEN"), "{not json", content_type="application/json")
    assert response.status_code == 400
    assert not TeamSecret.objects.exists()


# ---- who may ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_viewers_and_editors_may_not_set_or_delete(team, secret, role):
    member = make_user(f"m-{role}", team, role)
    client = bearer(token_for(member, *ALL_SCOPES))
    assert client.get(url(team)).status_code == 200
    for response in (
        client.put(url(team, "REGISTRY_TOKEN"), {"value": "planted"}, format="json"),
        client.put(url(team, "NEW"), {"value": "planted"}, format="json"),
        client.delete(url(team, "REGISTRY_TOKEN")),
    ):
        assert response.status_code == 403, response.content
        assert "this needs admin" in response.json()["detail"]
    assert stored(team) == {"REGISTRY_TOKEN": VALUE}


@pytest.mark.parametrize("scope", ["read", "run", "write"])
def test_an_admin_s_token_without_the_admin_scope_may_not_set_or_delete(team, alice, secret, scope):
    client = bearer(token_for(alice, scope))
    assert client.put(url(team, "REGISTRY_TOKEN"), {"value": "planted"}, format="json").status_code == 403
    assert client.delete(url(team, "REGISTRY_TOKEN")).status_code == 403
    assert stored(team) == {"REGISTRY_TOKEN": VALUE}
    assert client.get(url(team)).status_code == (200 if scope == "read" else 403)


def test_no_token_is_401(team, secret):
    from rest_framework.test import APIClient

    assert APIClient().get(url(team)).status_code == 401
    assert APIClient().put(url(team, "REGISTRY_TOKEN"), {"value": "x"}, format="json").status_code == 401
    assert stored(team) == {"REGISTRY_TOKEN": VALUE}


# ---- deleting --------------------------------------------------------------------------------


def test_delete_then_404(team, alice, secret):
    client = admin_client(alice)
    response = client.delete(url(team, "REGISTRY_TOKEN"))
    assert response.status_code == 204 and not response.content
    assert not TeamSecret.objects.exists()
    response = client.delete(url(team, "REGISTRY_TOKEN"))
    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"}
    assert client.delete(url(team, "not-a-name")).status_code == 404


# ---- the value stays out of error reports ---------------------------------------------------


def test_a_failure_while_setting_leaves_the_value_out_of_the_error_report(team, alice, caplog):
    with (
        mock.patch.object(team_secrets, "secret_set", side_effect=RuntimeError("boom")),
        caplog.at_level(logging.ERROR, logger="django.request"),
    ):
        client = admin_client(alice)
        client.raise_request_exception = False
        response = client.put(url(team, "TOKEN"), {"value": VALUE}, format="json")
    assert response.status_code == 500
    assert VALUE not in response.content.decode()
    record = next(r for r in caplog.records if r.exc_info)
    report = ExceptionReporter(record.request, *record.exc_info)
    text = report.get_traceback_text()
    assert "boom" in text and "********" in text  # the frames' variables, cleansed
    assert VALUE not in text
    assert VALUE not in report.get_traceback_html()
