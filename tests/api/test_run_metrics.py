"""GET /api/v1/runs/{id}/metrics/: a run's points in the order logged, a page at a time, and the
client that reads every page."""

from __future__ import annotations

from unittest import mock

import pytest

from pipelines_ui.api.pagination import MetricPages
from runs.models import Metric, StepRun
from stepwise.client import Client
from tests.api.conftest import bearer, token_for
from tests.runs.conftest import make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(pipeline, alice):
    run = make_run(pipeline, alice)
    prep = StepRun.objects.get(run=run, name="prep")
    train = StepRun.objects.get(run=run, name="train")
    Metric.objects.create(step_run=train, name="loss", value=0.5, step=1)
    Metric.objects.create(step_run=prep, name='rows \u2028 \u00e9t\u00e9 "q"', value=3.0, step=0)
    Metric.objects.create(step_run=train, name="loss", value=1e-20, step=2)
    Metric.objects.create(step_run=train, name="acc", value=1e300, step=-3)
    return run


def page_of(client, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.json()
    return response.json()


def every_page(client, url: str) -> list[dict]:
    pages = [page_of(client, url)]
    while pages[-1]["next"]:
        pages.append(page_of(client, pages[-1]["next"]))
    return pages


def logged(run) -> list[tuple[str, str, int, float]]:
    rows = Metric.objects.filter(step_run__run=run).order_by("id")
    return [(m.step_run.name, m.name, m.step, m.value) for m in rows.select_related("step_run")]


def points(results: list[dict]) -> list[tuple[str, str, int, float]]:
    return [(m["step_name"], m["name"], m["step"], m["value"]) for m in results]


def test_the_points_are_a_page_as_every_list_is(run, alice):
    body = page_of(bearer(token_for(alice, "read")), f"/api/v1/runs/{run.pk}/metrics/")
    assert set(body) == {"count", "next", "previous", "results"}
    assert (body["count"], body["next"], body["previous"]) == (4, None, None)
    assert points(body["results"]) == logged(run)
    first = Metric.objects.filter(step_run__run=run).earliest("id")
    assert body["results"][0] == {
        "step_name": "train",
        "name": "loss",
        "step": 1,
        "value": 0.5,
        "created_at": first.created_at.isoformat().replace("+00:00", "Z"),
    }


def test_a_run_without_metrics_is_an_empty_page(pipeline, alice):
    run = make_run(pipeline, alice)
    body = page_of(bearer(token_for(alice, "read")), f"/api/v1/runs/{run.pk}/metrics/")
    assert body == {"count": 0, "next": None, "previous": None, "results": []}


def test_following_next_gives_every_point_once_in_the_order_logged(run, alice):
    train = StepRun.objects.get(run=run, name="train")
    Metric.objects.bulk_create(Metric(step_run=train, name="lr", value=i / 7, step=i) for i in range(5))
    pages = every_page(bearer(token_for(alice, "read")), f"/api/v1/runs/{run.pk}/metrics/?page_size=2")
    assert [len(p["results"]) for p in pages] == [2, 2, 2, 2, 1]
    assert {p["count"] for p in pages} == {9}
    assert points([m for p in pages for m in p["results"]]) == logged(run)
    assert pages[0]["previous"] is None and pages[-1]["previous"].endswith("page=4&page_size=2")


def test_pages_hold_1000_points_unless_asked_for_up_to_10000(run, alice):
    train = StepRun.objects.get(run=run, name="train")
    Metric.objects.bulk_create(Metric(step_run=train, name="lr", value=0.1, step=i) for i in range(1000))
    client = bearer(token_for(alice, "read"))
    url = f"/api/v1/runs/{run.pk}/metrics/"
    first = page_of(client, url)
    assert len(first["results"]) == 1000 and first["count"] == 1004 and "page=2" in first["next"]
    assert page_of(client, url + "?page_size=10000")["next"] is None
    for query, field in (("page_size=10001", "page_size"), ("page_size=0", "page_size"), ("page=3", "page")):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 400, query
        assert set(response.json()) == {"detail", "errors"} and response.json()["errors"][0]["field"] == field


def test_filters_by_step_and_name_and_empty_means_no_filter(run, alice):
    client = bearer(token_for(alice, "read"))
    url = f"/api/v1/runs/{run.pk}/metrics/"

    def filtered(query: str) -> list[tuple[str, str, int]]:
        return [(m["step_name"], m["name"], m["step"]) for m in page_of(client, url + query)["results"]]

    everything = filtered("")
    assert len(everything) == 4
    assert filtered("?step=&name=") == everything
    assert filtered("?step=train") == [("train", "loss", 1), ("train", "loss", 2), ("train", "acc", -3)]
    assert filtered("?step=train&name=loss") == [("train", "loss", 1), ("train", "loss", 2)]
    assert filtered("?name=loss&step=prep") == []
    assert filtered("?step=nope") == [] and filtered("?name=%00") == []
    response = client.get(url + "?name=a&name=b")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "name"
    # The filters hold on every page `next` leads to.
    pages = every_page(client, url + "?step=train&page_size=1")
    assert [p["count"] for p in pages] == [3, 3, 3]
    assert [(m["step_name"], m["step"]) for p in pages for m in p["results"]] == [
        ("train", 1),
        ("train", 2),
        ("train", -3),
    ]


def test_another_team_s_run_is_404_a_missing_scope_403_a_wrong_token_401(run, alice, charlie):
    response = bearer(token_for(charlie, "read")).get(f"/api/v1/runs/{run.pk}/metrics/")
    assert response.status_code == 404 and set(response.json()) == {"detail", "errors"}
    assert bearer("swt_nope").get(f"/api/v1/runs/{run.pk}/metrics/").status_code == 401
    response = bearer(token_for(alice, "run")).get(f"/api/v1/runs/{run.pk}/metrics/")
    assert response.status_code == 403 and "'read' scope" in response.json()["detail"]


def test_the_schema_declares_a_page_of_points_and_its_bounds(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v1/runs/{run_id}/metrics/"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/MetricPage"}
    page = schema["components"]["schemas"]["MetricPage"]["properties"]
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["results"]["items"] == {"$ref": "#/components/schemas/Metric"}
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert {"step", "name", "page", "page_size"} <= set(parameters)
    assert "from 1 to 10000; absent or empty: 1000" in parameters["page_size"]["description"]
    assert "400" in operation["responses"]


def test_the_client_returns_every_point_across_pages(run, alice, live_server, transactional_db):
    train = StepRun.objects.get(run=run, name="train")
    Metric.objects.bulk_create(Metric(step_run=train, name="lr", value=i / 7, step=i) for i in range(5))
    client = Client(live_server.url, token_for(alice, "read"))
    # Pages of 2 (the server in this process): the 9 points come in 5 pages.
    with mock.patch.object(MetricPages, "get_page_size", lambda self, request: 2):
        got = client.runs.get(run.pk).metrics()
    assert points(got) == logged(run) and len(got) == 9
    assert set(got[0]) == {"step_name", "name", "step", "value", "created_at"}
