"""Metric charts' data, the runs list's metric column and filter, and the compare page."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pipelines_ui.services import pipeline_save_version
from runs import compare
from runs.models import Metric, Param, Run, RunState, StepState
from stepwise.spec import parse_text
from tests.runs.conftest import PIPELINE_YAML, make_pipeline, make_run, set_step

pytestmark = pytest.mark.django_db


def log(run: Run, step: str, name: str, *values: float, start: int = 0) -> None:
    step_run = run.steps.get(name=step)
    for i, value in enumerate(values):
        Metric.objects.create(step_run=step_run, name=name, value=value, step=start + i)


def param(run: Run, step: str, name: str, value: str) -> None:
    Param.objects.create(step_run=run.steps.get(name=step), name=name, value=value)


# ---- the filter parser ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accuracy > 0.9", ("accuracy", ">", 0.9)),
        ("accuracy>0.9", ("accuracy", ">", 0.9)),
        ("  val/loss <= 1e-3 ", ("val/loss", "<=", 0.001)),
        ("f1 score >= -2", ("f1 score", ">=", -2.0)),
        ("epochs = 3", ("epochs", "=", 3.0)),
        ("loss < .5", ("loss", "<", 0.5)),
    ],
)
def test_filter_parser_reads_name_operator_number(text, expected):
    parsed = compare.parse_metric_filter(text)
    assert (parsed.name, parsed.op, parsed.value) == expected


def test_an_empty_filter_is_none():
    assert compare.parse_metric_filter("   ") is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("accuracy", "Cannot read the filter"),
        ("accuracy > high", "'high' is not a number"),
        ("> 3", "Cannot read the filter"),
        ("loss > nan", "not a finite number"),
        ("loss > inf", "not a finite number"),
        ("a\x00b > 1", "is not a metric name"),
        ("a < b < 3", "is not a metric name"),
        ("x" * 400 + " > 1", "too long"),
        ("loss ~ 3", "Cannot read the filter"),
    ],
)
def test_filter_parser_names_what_is_wrong(text, says):
    with pytest.raises(compare.FilterError, match=says):
        compare.parse_metric_filter(text)


# ---- selectors ----------------------------------------------------------------------------


@pytest.fixture
def three_runs(pipeline, alice):
    runs = [make_run(pipeline, alice, epochs=e) for e in (3, 3, 5)]
    for run, accuracy in zip(runs, (0.8, 0.9, 0.95), strict=True):
        log(run, "train", "loss", 1.0, 0.5, accuracy / 4)
        log(run, "train", "accuracy", accuracy / 2, accuracy)
        param(run, "train", "lr", "0.1")
    Param.objects.filter(step_run__run=runs[2]).update(value="0.01")
    return runs


def test_final_metrics_are_the_last_logged_values(three_runs):
    finals = compare.final_metrics([r.pk for r in three_runs])
    assert [finals[r.pk]["accuracy"] for r in three_runs] == [0.8, 0.9, 0.95]
    assert finals[three_runs[0].pk]["loss"] == 0.2


def test_filter_runs_keeps_runs_whose_last_value_passes(three_runs, alice):
    visible = Run.objects.for_user(alice)
    chosen = compare.filter_runs(visible, compare.parse_metric_filter("accuracy > 0.85"))
    assert set(chosen.values_list("pk", flat=True)) == {three_runs[1].pk, three_runs[2].pk}
    # The last value counts, not any value: every run logged accuracy/2 first.
    assert not compare.filter_runs(visible, compare.parse_metric_filter("accuracy < 0.5")).exists()
    assert compare.filter_runs(visible, compare.parse_metric_filter("accuracy = 0.9")).get() == three_runs[1]
    # A run that never logged the metric drops out.
    assert not compare.filter_runs(visible, compare.parse_metric_filter("nothing >= 0")).exists()


def test_filter_is_one_query_with_a_subquery(three_runs, alice):
    with CaptureQueriesContext(connection) as queries:
        list(compare.filter_runs(Run.objects.for_user(alice), compare.parse_metric_filter("loss > 0")))
    assert len(queries) == 1


def test_run_charts_one_chart_per_name_one_line_per_step(run):
    log(run, "train", "loss", 3.0, 2.0, 1.0)
    log(run, "prep", "loss", 9.0)
    log(run, "train", "acc", 0.5)
    # A retry logs step 0 again: the later value replaces the point.
    log(run, "train", "acc", 0.7)
    charts = compare.run_charts(run)
    assert [c["name"] for c in charts] == ["acc", "loss"]
    loss = charts[1]
    assert {line["key"]: line["points"] for line in loss["lines"]} == {
        "prep": [(0, 9.0)],
        "train": [(0, 3.0), (1, 2.0), (2, 1.0)],
    }
    assert charts[0]["lines"][0]["points"] == [(0, 0.7)]


def test_long_series_are_thinned_keeping_the_last_point(run):
    step_run = run.steps.get(name="train")
    Metric.objects.bulk_create(
        Metric(step_run=step_run, name="loss", value=float(i), step=i) for i in range(compare.MAX_CHART_POINTS * 3 + 1)
    )
    with CaptureQueriesContext(connection) as queries:
        points = compare.run_charts(run)[0]["lines"][0]["points"]
    assert len(points) <= compare.MAX_CHART_POINTS
    assert points[0] == (0, 0.0)
    assert points[-1] == (compare.MAX_CHART_POINTS * 3, float(compare.MAX_CHART_POINTS * 3))
    # Thinned in SQL: no query brings back more rows than are drawn.
    assert len(queries) == 2


def test_thinning_keeps_the_retried_value_of_an_index(run):
    step_run = run.steps.get(name="train")
    count = compare.MAX_CHART_POINTS * 2
    Metric.objects.bulk_create(Metric(step_run=step_run, name="loss", value=1.0, step=i) for i in range(count))
    # A retry logs every index again, with other values: only those are drawn.
    Metric.objects.bulk_create(Metric(step_run=step_run, name="loss", value=2.0, step=i) for i in range(count))
    points = compare.run_charts(run)[0]["lines"][0]["points"]
    assert len(points) <= compare.MAX_CHART_POINTS
    assert {v for _i, v in points} == {2.0}
    assert points[0][0] == 0 and points[-1][0] == count - 1


def test_charts_are_capped_by_name_and_the_rest_counted(run, client, alice, monkeypatch):
    monkeypatch.setattr(compare, "MAX_CHARTS", 3)
    for i in range(5):
        log(run, "train", f"class_{i}", 1.0, 2.0)
    charts = compare.run_charts(run)
    assert [c["name"] for c in charts] == ["class_0", "class_1", "class_2"]
    client.force_login(alice)
    body = client.get(reverse("run_metrics", args=[run.pk])).json()
    assert len(body["charts"]) == 3 and body["charts_hidden"] == 2


def test_compare_charts_are_capped_by_name(three_runs, alice, monkeypatch):
    monkeypatch.setattr(compare, "MAX_CHARTS", 1)
    cmp = compare.compare(user=alice, ids=[r.pk for r in three_runs])
    assert [c["name"] for c in cmp.charts] == ["accuracy"] and cmp.charts_hidden == 1
    assert len(cmp.charts[0]["lines"]) == 3


def test_the_final_metrics_table_is_capped_by_name_and_the_rest_counted(three_runs, alice, client, monkeypatch):
    monkeypatch.setattr(compare, "MAX_FINAL_METRICS", 2)
    for i in range(3):
        log(three_runs[0], "train", f"class_{i}", 1.0, float(i))
    log(three_runs[1], "train", "zeta", 7.0)
    cmp = compare.compare(user=alice, ids=[r.pk for r in three_runs])
    # The first names by name, their values the last logged, as uncapped.
    assert [row.name for row in cmp.metrics] == ["accuracy", "class_0"] and cmp.metrics_hidden == 4
    assert cmp.metrics[0].cells == [0.8, 0.9, 0.95] and cmp.metrics[1].cells == [0.0, None, None]
    client.force_login(alice)
    html = client.get(compare_url(*three_runs)).content.decode()
    assert html.count('<tr class="') - html.count('id="compare-metrics"') >= 0
    table = html.split('id="compare-metrics"')[1].split("</table>")[0]
    assert table.count("data-name=") == 2 and 'data-name="zeta"' not in table
    assert '<p class="card-body small text-muted mb-0 py-2" id="metrics-hidden">4 more metrics not shown' in html
    # The charts' own line no longer sends the reader to a table that leaves names out.
    monkeypatch.setattr(compare, "MAX_CHARTS", 1)
    html = client.get(compare_url(*three_runs)).content.decode()
    assert "5 more metrics not shown.</p>" in html and "lists every name" not in html


def test_an_uncapped_final_metrics_table_says_nothing_is_hidden(three_runs, alice, client, monkeypatch):
    monkeypatch.setattr(compare, "MAX_CHARTS", 1)
    cmp = compare.compare(user=alice, ids=[r.pk for r in three_runs])
    assert [row.name for row in cmp.metrics] == ["accuracy", "loss"] and cmp.metrics_hidden == 0
    client.force_login(alice)
    html = client.get(compare_url(*three_runs)).content.decode()
    assert 'id="metrics-hidden"' not in html
    assert "1 more metric not shown: the final metrics table below lists every name.</p>" in html


def test_comparison_marks_differences(three_runs, alice):
    cmp = compare.compare(user=alice, ids=[r.pk for r in three_runs])
    inputs = {row.name: row for row in cmp.inputs}
    assert inputs["epochs"].cells == [3, 3, 5] and inputs["epochs"].differs
    assert not inputs["mode"].differs
    params = {row.name: row for row in cmp.params}
    assert params["lr"].cells == ["0.1", "0.1", "0.01"] and params["lr"].differs
    metrics = {row.name: row for row in cmp.metrics}
    assert metrics["accuracy"].differs
    assert metrics["accuracy"].extra["pairs"][0] == (0.8, None)
    assert metrics["accuracy"].extra["pairs"][2][1] == pytest.approx(0.15)
    assert [c["name"] for c in cmp.charts] == ["accuracy", "loss"]
    assert [line["label"] for line in cmp.charts[0]["lines"]] == [f"#{r.pk}" for r in three_runs]


def test_parse_ids():
    assert compare.parse_ids("3, 1,3,2") == [3, 1, 2]
    for bad in ("", "4", "4,4"):
        with pytest.raises(compare.TooFewRuns, match="Pick 2 to 10"):
            compare.parse_ids(bad)
    with pytest.raises(compare.CompareError, match="not a run"):
        compare.parse_ids("1,x")
    with pytest.raises(compare.CompareError, match="At most 10"):
        compare.parse_ids(",".join(str(i) for i in range(1, 12)))


# ---- views --------------------------------------------------------------------------------


def compare_url(*runs) -> str:
    return reverse("run_compare") + "?ids=" + ",".join(str(r.pk) for r in runs)


def test_compare_page_shows_changed_input_param_and_metrics(client, alice, three_runs):
    client.force_login(alice)
    response = client.get(compare_url(*three_runs))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-name="epochs"' in html
    assert "differs" in html
    charts = json.loads(html.split('id="compare-charts" type="application/json">')[1].split("</script>")[0])
    assert {c["name"] for c in charts} == {"accuracy", "loss"}
    rows = response.context["cmp"]
    assert [row.name for row in rows.params if row.differs] == ["lr"]
    assert "(+0.15)" in html  # accuracy of the third run against the first


def test_compare_same_pipeline_links_the_version_diff(client, alice, pipeline):
    first = make_run(pipeline, alice)
    spec, _ = parse_text(PIPELINE_YAML.replace("default: 3", "default: 4"))
    pipeline_save_version(pipeline=pipeline, spec=spec, author=alice, message="more epochs")
    pipeline.refresh_from_db()
    second = make_run(pipeline, alice)
    client.force_login(alice)
    html = client.get(compare_url(first, second)).content.decode()
    diff = reverse("version_diff", args=[pipeline.pk, second.version.number]) + f"?against={first.version.number}"
    assert diff in html
    assert "epochs" in html.split('id="compare-versions"')[1].split("</div>")[1]


def test_compare_refuses_a_bad_pick_with_a_message(client, alice, run):
    client.force_login(alice)
    for query in ("?ids=1,abc", "?ids=" + ",".join(map(str, range(1, 13)))):
        response = client.get(reverse("run_compare") + query)
        assert response.status_code == 200
        assert b'id="compare-error"' in response.content and b'id="compare-empty"' in response.content


def test_compare_without_enough_runs_says_once_what_to_do(client, alice, run):
    """No alert beside the empty state: both said "pick 2 to 10 runs"."""
    client.force_login(alice)
    for query in ("", f"?ids={run.pk}", f"?ids={run.pk},{run.pk}"):
        html = client.get(reverse("run_compare") + query).content.decode()
        assert 'id="compare-error"' not in html
        assert html.count("Pick 2 to 10 runs") == 1 and html.count("Compare selected") == 1
        empty = html.split('id="compare-empty"')[1]
        assert f'href="{reverse("run_list")}"' in empty


def test_compare_with_another_teams_run_is_404(client, alice, charlie, other_team, run):
    theirs = make_run(make_pipeline(other_team, charlie, name="theirs"), charlie)
    client.force_login(alice)
    assert client.get(compare_url(run, theirs)).status_code == 404
    client.force_login(charlie)
    assert client.get(compare_url(run, theirs)).status_code == 404


def test_metric_names_with_markup_are_escaped(client, alice, pipeline):
    runs = [make_run(pipeline, alice) for _ in range(2)]
    evil = '<img src=x onerror="alert(1)">'
    for run in runs:
        log(run, "train", evil, 1.0)
        param(run, "train", evil, "<b>bold</b>")
    set_step(runs[0], "train", state=StepState.RUNNING)
    client.force_login(alice)
    pages = [
        client.get(compare_url(*runs)),
        client.get(reverse("run_list")),
        client.get(reverse("run_list") + "?metric=" + evil.replace(" ", "%20") + "%3E0"),
        client.get(reverse("run_step", args=[runs[0].pk, "train"])),
    ]
    for response in pages:
        assert response.status_code == 200
        assert evil.encode() not in response.content
        assert b"<b>bold</b>" not in response.content
    assert "&lt;img src=x" in pages[0].content.decode()
    data = client.get(reverse("run_metrics", args=[runs[0].pk])).json()
    assert data["charts"][0]["name"] == evil  # JSON; the page's script puts it in text nodes


def test_run_metrics_json(client, alice, bob, charlie, run):
    log(run, "train", "loss", 2.0, 1.0)
    url = reverse("run_metrics", args=[run.pk])
    client.force_login(bob)
    assert client.get(url).json() == {
        "run": run.pk,
        "charts": [{"name": "loss", "lines": [{"key": "train", "label": "train", "points": [[0, 2.0], [1, 1.0]]}]}],
        "charts_hidden": 0,
    }
    client.force_login(charlie)
    assert client.get(url).status_code == 404


def test_runs_list_metric_column_and_filter(client, alice, three_runs):
    client.force_login(alice)
    response = client.get(reverse("run_list"))
    assert response.context["metric_names"] == ["accuracy", "loss"]
    assert b'id="compare-selected"' in response.content
    assert response.content.count(b'class="run-pick"') == 3
    response = client.get(reverse("run_list"), {"metric": "accuracy >= 0.9"})
    assert [r.pk for r in response.context["runs"]] == [three_runs[2].pk, three_runs[1].pk]
    assert response.context["runs"][0].key_metrics[0] == ("accuracy", 0.95)


def test_runs_list_bad_filter_is_a_message_not_a_500(client, alice, three_runs):
    client.force_login(alice)
    response = client.get(reverse("run_list"), {"metric": "accuracy > lots"})
    assert response.status_code == 200
    assert b'id="metric-error"' in response.content
    assert b"&#x27;lots&#x27; is not a number" in response.content
    assert len(response.context["runs"]) == 3


def test_run_page_shows_params_of_the_selected_step(client, alice, run):
    param(run, "train", "lr", "0.01")
    Run.objects.filter(pk=run.pk).update(state=RunState.RUNNING)
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[run.pk, "train"])).content.decode()
    assert 'data-param="lr"' in html and "0.01" in html
    assert 'id="metric-charts"' in html
