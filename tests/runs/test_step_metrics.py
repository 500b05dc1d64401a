"""The run page's metrics table: summaries and sparkline points read in SQL, bounded in rows
and in names however much a step logs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from runs import metric_reads, selectors
from runs.models import Metric, StepRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def train(run) -> StepRun:
    return run.steps.get(name="train")


def log_many(step_run: StepRun, name: str, values: list[float]) -> None:
    Metric.objects.bulk_create(Metric(step_run=step_run, name=name, value=v, step=i) for i, v in enumerate(values))


def test_summaries_are_count_min_max_and_the_last_logged(train):
    # The last value is the last logged (highest id), not the highest step index.
    for step, value in [(0, 3.0), (5, -1.0), (2, 7.5), (1, 2.0)]:
        Metric.objects.create(step_run=train, name="loss", value=value, step=step)
    Metric.objects.create(step_run=train, name="acc", value=0.8)
    series = {s.name: s for s in selectors.step_metrics(train)}
    loss = series["loss"]
    assert (loss.count, loss.minimum, loss.maximum, loss.last) == (4, -1.0, 7.5, 2.0)
    assert loss.points == [(0, 3.0), (5, -1.0), (2, 7.5), (1, 2.0)]
    acc = series["acc"]
    assert (acc.count, acc.minimum, acc.maximum, acc.last, acc.points) == (1, 0.8, 0.8, 0.8, [(0, 0.8)])
    assert list(series) == ["acc", "loss"]


def test_other_steps_metrics_are_not_counted(run, train):
    log_many(train, "loss", [1.0, 2.0])
    log_many(run.steps.get(name="prep"), "loss", [9.0] * 5)
    (loss,) = selectors.step_metrics(train)
    assert (loss.count, loss.maximum, loss.points) == (2, 2.0, [(0, 1.0), (1, 2.0)])


@pytest.mark.parametrize("count", [selectors.SPARK_POINTS + 1, 2 * selectors.SPARK_POINTS - 1, 20_000])
def test_long_series_are_thinned_to_the_cap_keeping_first_and_last(train, count):
    log_many(train, "loss", [float(i) for i in range(count)])
    (loss,) = selectors.step_metrics(train)
    assert (loss.count, loss.minimum, loss.maximum, loss.last) == (count, 0.0, count - 1.0, count - 1.0)
    assert len(loss.points) <= selectors.SPARK_POINTS
    assert len(loss.points) > selectors.SPARK_POINTS // 2
    assert loss.points[0] == (0, 0.0) and loss.points[-1] == (count - 1, count - 1.0)
    steps = [s for s, _v in loss.points]
    assert steps == sorted(steps)
    # Evenly spaced: one stride between all points but the last.
    assert len({b - a for a, b in zip(steps[:-1], steps[1:-1], strict=False)}) == 1


def test_rows_read_do_not_grow_with_the_points_logged(train):
    log_many(train, "loss", [float(i) for i in range(20_000)])
    log_many(train, "acc", [0.5] * 3)
    with CaptureQueriesContext(connection) as queries:
        series = selectors.step_metrics(train)
    # Two for the summaries, one for the points, whatever the count.
    assert len(queries) == 3
    assert sum(len(s.points) for s in series) <= 3 + selectors.SPARK_POINTS


def test_the_names_are_capped_and_the_rest_counted(train, monkeypatch):
    monkeypatch.setattr(selectors, "SPARK_NAMES", 5)
    Metric.objects.bulk_create(
        Metric(step_run=train, name=f"class_{i:02d}", value=float(i), step=s) for i in range(12) for s in range(3)
    )
    series = selectors.step_metrics(train)
    assert [s.name for s in series] == [f"class_{i:02d}" for i in range(5)]
    assert all(s.count == 3 for s in series)
    assert selectors.step_metrics_hidden(train, series) == 7


def test_no_hidden_count_below_the_cap(train):
    log_many(train, "loss", [1.0])
    assert selectors.step_metrics_hidden(train, selectors.step_metrics(train)) == 0


def test_the_page_says_how_many_names_are_not_shown(run, train, client, alice, monkeypatch):
    monkeypatch.setattr(selectors, "SPARK_NAMES", 2)
    for name in ("a", "b", "c", "d"):
        log_many(train, name, [1.0, 2.0])
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[run.pk, "train"])).content.decode()
    assert 'data-metric="b"' in html and 'data-metric="c"' not in html
    assert "2 more metrics not shown" in html
    assert reverse("api_run_metrics", args=[run.pk]) in html


def test_thinning_needs_room_for_first_and_last():
    with pytest.raises(ValueError):
        metric_reads.thinned(Metric.objects.all(), partition=["name"], order="id", cap=1)
