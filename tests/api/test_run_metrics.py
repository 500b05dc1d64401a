"""GET /api/v1/runs/{id}/metrics/: every point of a run, streamed as it is read."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.db import DatabaseError
from django.db.models import QuerySet
from django.db.models.sql import compiler
from rest_framework.renderers import JSONRenderer

from pipelines_ui.api import serializers as s
from pipelines_ui.api import streaming
from runs.downloads import StreamedResponse
from runs.models import Metric, StepRun
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


def body(response) -> bytes:
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def points_of(response) -> list[dict]:
    return json.loads(body(response))["metrics"]


def unstreamed(rows) -> bytes:
    """What the endpoint rendered before it streamed: every row in a list, through DRF."""
    metrics = [
        {"step_name": m.step_run.name, "name": m.name, "step": m.step, "value": m.value, "created_at": m.created_at}
        for m in rows.select_related("step_run").order_by("id")
    ]
    return JSONRenderer().render(s.MetricsSerializer({"metrics": metrics}).data)


def test_the_streamed_body_is_the_bytes_the_unstreamed_response_rendered(run, alice):
    response = bearer(token_for(alice, "read")).get(f"/api/v1/runs/{run.pk}/metrics/")
    assert isinstance(response, StreamedResponse) and response["Content-Type"] == "application/json"
    assert body(response) == unstreamed(Metric.objects.filter(step_run__run=run))


def test_a_run_without_metrics_is_an_empty_list(pipeline, alice):
    run = make_run(pipeline, alice)
    assert body(bearer(token_for(alice, "read")).get(f"/api/v1/runs/{run.pk}/metrics/")) == b'{"metrics":[]}'


def test_a_list_longer_than_one_part_joins_into_one_list(run, alice):
    train = StepRun.objects.get(run=run, name="train")
    Metric.objects.bulk_create(Metric(step_run=train, name="lr", value=i / 7, step=i) for i in range(5))
    with mock.patch.object(streaming, "ROWS_PER_PART", 2):
        response = bearer(token_for(alice, "read")).get(f"/api/v1/runs/{run.pk}/metrics/")
        parts = list(response.streaming_content)
    assert len(parts) == 2 + 5  # the head, 9 rows in parts of 2, the tail
    assert b"".join(parts) == unstreamed(Metric.objects.filter(step_run__run=run))


def test_rows_are_read_a_part_at_a_time(run, alice):
    train = StepRun.objects.get(run=run, name="train")
    Metric.objects.bulk_create(Metric(step_run=train, name="lr", value=0.1, step=i) for i in range(100))
    fetched: list[int] = []
    real_cursor_iter = compiler.cursor_iter

    def counted(cursor, sentinel, col_count, itersize):
        for rows in real_cursor_iter(cursor, sentinel, col_count, itersize):
            if itersize == 10:  # the metric rows, not the token's or the run's
                fetched.append(len(rows))
            yield rows

    with mock.patch.object(streaming, "ROWS_PER_PART", 10), mock.patch.object(compiler, "cursor_iter", counted):
        response = bearer(token_for(alice, "read")).get(f"/api/v1/runs/{run.pk}/metrics/")
        assert isinstance(response, StreamedResponse)
        # The first part is read before the response is answered, and only it: a chunk of 10 of the
        # run's 104 rows, not all of them.
        assert fetched == [10]
        parts = iter(response.streaming_content)
        assert next(parts) == b'{"metrics":['
        assert next(parts).count(b'"step_name"') == 10
        assert fetched == [10]
        assert next(parts).count(b'"step_name"') == 10
        assert fetched == [10, 10]
        rest = b"".join(parts)
    assert rest.count(b'"step_name"') == 84 and sum(fetched) == 104


def failing_after(count: int):
    """QuerySet.iterator as the database would answer it if the connection broke after `count` rows."""
    real_iterator = QuerySet.iterator

    def iterator(self, *args, **kwargs):
        for index, row in enumerate(real_iterator(self, *args, **kwargs)):
            if index == count:
                raise DatabaseError("server closed the connection unexpectedly")
            yield row
        if count == 0:
            raise DatabaseError("server closed the connection unexpectedly")

    return mock.patch.object(QuerySet, "iterator", iterator)


INTERNAL_ERROR = "internal error: the server could not answer this request; the failure is in its log"


def test_a_query_that_fails_before_its_first_part_is_the_api_s_500_not_a_short_200(run, alice):
    client = bearer(token_for(alice, "read"))
    client.raise_request_exception = False
    with failing_after(0), mock.patch.object(streaming, "ROWS_PER_PART", 2):
        response = client.get(f"/api/v1/runs/{run.pk}/metrics/")
    assert response.status_code == 500 and not response.streaming
    assert response.json() == {"detail": INTERNAL_ERROR, "errors": []}
    # As any other API view's uncaught error: raised through DRF (and its exception handler).
    with failing_after(0), pytest.raises(DatabaseError):
        bearer(token_for(alice, "read")).get(f"/api/v1/runs/{run.pk}/metrics/")


def test_a_query_that_fails_after_its_first_part_leaves_the_json_unclosed(run, alice):
    with failing_after(3), mock.patch.object(streaming, "ROWS_PER_PART", 2):
        response = bearer(token_for(alice, "read")).get(f"/api/v1/runs/{run.pk}/metrics/")
        assert response.status_code == 200  # sent before the failure: it cannot change
        parts = iter(response.streaming_content)
        sent = [next(parts), next(parts)]
        with pytest.raises(DatabaseError):
            next(parts)  # the second part's second row
    sent_body = b"".join(sent)
    assert sent_body.startswith(b'{"metrics":[') and sent_body.count(b'"step_name"') == 2
    # Never `]}`: a client sees a body cut short, not a complete list of two points.
    with pytest.raises(json.JSONDecodeError):
        json.loads(sent_body)


def test_filters_by_step_and_name_and_empty_means_no_filter(run, alice):
    client = bearer(token_for(alice, "read"))
    url = f"/api/v1/runs/{run.pk}/metrics/"

    def points(query: str) -> list[tuple[str, str, int]]:
        return [(m["step_name"], m["name"], m["step"]) for m in points_of(client.get(url + query))]

    everything = points("")
    assert len(everything) == 4
    assert points("?step=&name=") == everything
    assert points("?step=train") == [("train", "loss", 1), ("train", "loss", 2), ("train", "acc", -3)]
    assert points("?step=train&name=loss") == [("train", "loss", 1), ("train", "loss", 2)]
    assert points("?name=loss&step=prep") == []
    assert points("?step=nope") == [] and points("?name=%00") == []
    response = client.get(url + "?name=a&name=b")
    assert response.status_code == 400 and "name" in response.json()["detail"] + str(response.json()["errors"])


def test_another_team_s_run_is_404_a_missing_scope_403_a_wrong_token_401(run, alice, charlie):
    response = bearer(token_for(charlie, "read")).get(f"/api/v1/runs/{run.pk}/metrics/")
    assert response.status_code == 404 and set(response.json()) == {"detail", "errors"}
    assert bearer("swt_nope").get(f"/api/v1/runs/{run.pk}/metrics/").status_code == 401
    response = bearer(token_for(alice, "run")).get(f"/api/v1/runs/{run.pk}/metrics/")
    assert response.status_code == 403 and "'read' scope" in response.json()["detail"]


def test_the_metrics_stream_whole_through_the_asgi_app(run, alice, transactional_db):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    secret = token_for(alice, "read")
    expected = body(bearer(secret).get(f"/api/v1/runs/{run.pk}/metrics/"))

    async def fetch():
        response = await AsyncClient().get(
            f"/api/v1/runs/{run.pk}/metrics/", headers={"Authorization": f"Bearer {secret}"}
        )
        return response.status_code, b"".join([part async for part in response])

    with mock.patch.object(streaming, "ROWS_PER_PART", 2):
        assert async_to_sync(fetch)() == (200, expected)


def test_a_failing_query_is_the_api_s_500_through_the_asgi_app_too(run, alice, transactional_db):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    secret = token_for(alice, "read")

    async def fetch():
        client = AsyncClient(raise_request_exception=False)
        response = await client.get(f"/api/v1/runs/{run.pk}/metrics/", headers={"Authorization": f"Bearer {secret}"})
        return response.status_code, response.streaming, response.json()

    with failing_after(0), mock.patch.object(streaming, "ROWS_PER_PART", 2):
        assert async_to_sync(fetch)() == (500, False, {"detail": INTERNAL_ERROR, "errors": []})
