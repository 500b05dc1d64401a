"""Published endpoints: publishing, versions and the default, calls with Idempotency-Key, pages."""

from __future__ import annotations

import threading
from urllib.parse import quote

import pytest
from django.db import connection

from pipelines_ui.api import endpoints
from pipelines_ui.api.models import Endpoint, EndpointCall
from pipelines_ui.services import pipeline_save_version, version_spec_with_files
from runs.models import Run
from tests.api.conftest import bearer, token_for
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def runs_url(endpoint: Endpoint) -> str:
    return f"/api/v1/endpoints/{quote(endpoint.team.name, safe='')}/{endpoint.name}/runs/"


@pytest.fixture
def endpoint(pipeline, alice):
    return endpoints.endpoint_create(team=pipeline.team, name="score", pipeline=pipeline, user=alice)


def second_version(pipeline, alice):
    spec = version_spec_with_files(pipeline.latest_version)
    spec.description = "second"
    return pipeline_save_version(pipeline=pipeline, spec=spec, author=alice, message="v2")


# ---- publishing ------------------------------------------------------------------------------


def test_an_admin_publishes_an_endpoint_through_the_api(alice, pipeline, team):
    client = bearer(token_for(alice, "read", "admin"))
    response = client.post(
        "/api/v1/endpoints/", {"team": team.name, "name": "nightly-score", "pipeline": pipeline.pk}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "nightly-score" and body["default_version"] == 1 and body["versions"] == [1]
    assert body["runs_url"].endswith(f"/api/v1/endpoints/{quote(team.name, safe='')}/nightly-score/runs/")
    again = client.post(
        "/api/v1/endpoints/", {"team": team.name, "name": "nightly-score", "pipeline": pipeline.pk}, format="json"
    )
    assert again.status_code == 400 and again.json()["errors"][0]["field"] == "name"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "Bad Name"}, "name"),
        ({"name": "ok", "version": 7}, "version"),
        ({"name": "ok", "pipeline": 999999}, "pipeline"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_endpoint_requests_name_the_field(alice, pipeline, team, body, field):
    data = {"team": team.name, "pipeline": pipeline.pk, **body}
    response = bearer(token_for(alice, "admin")).post("/api/v1/endpoints/", data, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field
    assert not Endpoint.objects.exists()


def test_only_team_admins_publish(bob, charlie, pipeline, team):
    data = {"team": team.name, "name": "x", "pipeline": pipeline.pk}
    assert bearer(token_for(bob, "admin")).post("/api/v1/endpoints/", data, format="json").status_code == 403
    assert bearer(token_for(charlie, "admin")).post("/api/v1/endpoints/", data, format="json").status_code == 404
    assert not Endpoint.objects.exists()


# ---- calls --------------------------------------------------------------------------------


def test_a_call_starts_a_run_of_the_default_version_and_is_recorded(bob, endpoint, pipeline, alice):
    second_version(pipeline, alice)
    client = bearer(token_for(bob, "read", "run"))
    response = client.post(runs_url(endpoint), {"inputs": {"epochs": 2}}, format="json")
    assert response.status_code == 201, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert run.version == endpoint.default_version and run.version.number == 1
    assert run.inputs == {"epochs": 2} and run.created_by == bob
    call = EndpointCall.objects.get()
    assert call.run == run and call.token_name == "test" and call.user == bob


def test_a_call_may_name_one_of_the_endpoint_s_versions(bob, endpoint, pipeline, alice):
    second_version(pipeline, alice)
    client = bearer(token_for(bob, "run"))
    response = client.post(runs_url(endpoint), {"version": 2}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "version"
    endpoints.endpoint_add_version(endpoint=endpoint, number=2, user=alice)
    response = client.post(runs_url(endpoint), {"version": 2}, format="json")
    assert response.status_code == 201 and response.json()["version"] == 2


def test_switching_the_default_changes_what_calls_run(bob, endpoint, pipeline, alice):
    second_version(pipeline, alice)
    endpoints.endpoint_add_version(endpoint=endpoint, number=2, user=alice, make_default=True)
    response = bearer(token_for(bob, "run")).post(runs_url(endpoint), {}, format="json")
    assert response.json()["version"] == 2
    endpoints.endpoint_set_default(endpoint=endpoint, number=1)
    response = bearer(token_for(bob, "run")).post(runs_url(endpoint), {}, format="json")
    assert response.json()["version"] == 1
    with pytest.raises(endpoints.EndpointError, match="not one of this endpoint's versions"):
        endpoints.endpoint_set_default(endpoint=endpoint, number=5)


def test_a_wrong_input_type_is_400_naming_the_input_and_records_nothing(bob, endpoint):
    response = bearer(token_for(bob, "run")).post(runs_url(endpoint), {"inputs": {"rate": "fast"}}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "inputs.rate"
    assert not Run.objects.exists() and not EndpointCall.objects.exists()


def test_the_same_idempotency_key_returns_the_same_run(bob, endpoint):
    client = bearer(token_for(bob, "read", "run"))
    first = client.post(runs_url(endpoint), {}, format="json", HTTP_IDEMPOTENCY_KEY="job-42")
    second = client.post(runs_url(endpoint), {}, format="json", HTTP_IDEMPOTENCY_KEY="job-42")
    other = client.post(runs_url(endpoint), {}, format="json", HTTP_IDEMPOTENCY_KEY="job-43")
    assert (first.status_code, second.status_code, other.status_code) == (201, 200, 201)
    assert first.json()["id"] == second.json()["id"] != other.json()["id"]
    assert Run.objects.count() == 2


def test_an_idempotency_key_older_than_24_hours_starts_a_new_run(bob, endpoint):
    from datetime import timedelta

    from django.utils import timezone

    client = bearer(token_for(bob, "run"))
    first = client.post(runs_url(endpoint), {}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    EndpointCall.objects.update(created_at=timezone.now() - timedelta(hours=25))
    again = client.post(runs_url(endpoint), {}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]


@pytest.mark.parametrize("key", ["k" * 256, "job\x0042", "tab\tkey"])
def test_an_overlong_or_unprintable_idempotency_key_is_400(bob, endpoint, key):
    # NUL was a 500 on PostgreSQL.
    response = bearer(token_for(bob, "run")).post(runs_url(endpoint), {}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert not Run.objects.exists()


def test_who_may_call(viewer, charlie, alice, endpoint, team):
    assert bearer(token_for(viewer, "run")).post(runs_url(endpoint), {}, format="json").status_code == 403
    assert bearer(token_for(charlie, "run")).post(runs_url(endpoint), {}, format="json").status_code == 404
    assert bearer(token_for(alice, "read")).post(runs_url(endpoint), {}, format="json").status_code == 403
    assert bearer(token_for(alice, "run")).get(f"/api/v1/endpoints/{quote(team.name)}/nope/").status_code == 404
    assert not Run.objects.exists()


def test_endpoint_detail_and_list(alice, charlie, endpoint, team):
    body = bearer(token_for(alice, "read")).get(f"/api/v1/endpoints/{quote(team.name, safe='')}/score/").json()
    assert body["name"] == "score" and body["team"] == team.name
    assert bearer(token_for(alice, "read")).get("/api/v1/endpoints/").json()["count"] == 1
    assert bearer(token_for(charlie, "read")).get("/api/v1/endpoints/").json()["count"] == 0


@pytest.mark.django_db(transaction=True)
def test_simultaneous_calls_with_one_key_start_one_run(team, alice):
    """On PostgreSQL the second insert waits for the first to commit, then finds its row."""
    from tests.runs.conftest import make_pipeline

    pipeline = make_pipeline(team, alice)
    endpoint = endpoints.endpoint_create(team=team, name="race", pipeline=pipeline, user=alice)
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def call():
        try:
            barrier.wait()
            results.append(endpoints.endpoint_call(endpoint=endpoint, user=alice, idempotency_key="same").run.pk)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if connection.vendor == "sqlite" and errors:
        pytest.fail(f"{errors!r}")
    assert not errors, errors
    assert len(set(results)) == 1 and Run.objects.count() == 1


# ---- pages -------------------------------------------------------------------------------


def test_the_endpoint_page_shows_how_to_call_it(client, bob, endpoint, team):
    client.force_login(bob)
    page = client.get(f"/endpoints/{endpoint.pk}/").content.decode()
    assert f"/api/v1/endpoints/{quote(team.name, safe='')}/score/runs/" in page
    assert "curl -X POST" in page and "requests.post(" in page and "epochs" in page
    assert "Make default" not in page and "Add version" not in page  # bob is an editor


def test_an_admin_publishes_from_the_pipeline_page(client, alice, pipeline):
    client.force_login(alice)
    assert "Publish endpoint" in client.get(f"/pipelines/{pipeline.pk}/").content.decode()
    response = client.post(f"/pipelines/{pipeline.pk}/endpoints/new/", {"name": "score", "version": 1})
    endpoint = Endpoint.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/endpoints/{endpoint.pk}/"
    bad = client.post(f"/pipelines/{pipeline.pk}/endpoints/new/", {"name": "score", "version": 1})
    assert "already has an endpoint named" in bad.content.decode()
    assert Endpoint.objects.count() == 1


def test_editors_cannot_publish_or_change_endpoints(client, bob, pipeline, endpoint, alice):
    second_version(pipeline, alice)
    client.force_login(bob)
    assert "Publish endpoint" not in client.get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert client.get(f"/pipelines/{pipeline.pk}/endpoints/new/").status_code == 403
    assert client.post(f"/endpoints/{endpoint.pk}/versions/", {"version": 2, "make_default": "on"}).status_code == 403
    assert client.post(f"/endpoints/{endpoint.pk}/default/", {"version": 1}).status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.versions.count() == 1 and endpoint.default_version.number == 1


def test_an_admin_adds_a_version_and_switches_the_default(client, alice, pipeline, endpoint):
    second_version(pipeline, alice)
    client.force_login(alice)
    client.post(f"/endpoints/{endpoint.pk}/versions/", {"version": 2, "make_default": "on"})
    endpoint.refresh_from_db()
    assert endpoint.default_version.number == 2 and endpoint.versions.count() == 2
    client.post(f"/endpoints/{endpoint.pk}/default/", {"version": 1})
    endpoint.refresh_from_db()
    assert endpoint.default_version.number == 1
    page = client.get(f"/endpoints/{endpoint.pk}/").content.decode()
    assert page.count("Make default") == 1


def test_outsiders_get_404_on_endpoint_pages(client, charlie, endpoint):
    client.force_login(charlie)
    assert client.get(f"/endpoints/{endpoint.pk}/").status_code == 404
    assert "score" not in client.get("/endpoints/").content.decode()


def test_user_text_is_escaped_on_the_endpoint_page(client, alice, pipeline):
    endpoint = endpoints.endpoint_create(
        team=pipeline.team, name="x", pipeline=pipeline, user=alice, description="<script>alert(1)</script>"
    )
    make_user("eve", pipeline.team, "viewer")
    client.force_login(alice)
    page = client.get(f"/endpoints/{endpoint.pk}/").content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
