"""The run page says what happened: progress counts only done steps, actions fit the run's state."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import Run, RunState, StepState
from tests.runs.conftest import set_step

pytestmark = pytest.mark.django_db


def end_run(run: Run, state: str, **steps: str) -> None:
    now = timezone.now()
    for name, step_state in steps.items():
        ran = step_state in (StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELED)
        set_step(
            run,
            name,
            state=step_state,
            attempt=1 if ran else 0,
            started_at=now - timedelta(seconds=5) if ran else None,
            finished_at=now,
            exit_code={StepState.SUCCEEDED: 0, StepState.FAILED: 1}.get(step_state),
        )
    Run.objects.filter(pk=run.pk).update(state=state, started_at=now - timedelta(seconds=6), finished_at=now)


def progress_text(html: str) -> str:
    text = re.search(r'<span[^>]*id="progress-text"[^>]*>([^<]*)</span>', html).group(1)
    others = re.findall(r'class="[^"]*progress-other[^"]*" data-state="(\w+)">· (\d+)', html)
    return " ".join([text, *(f"{n} {state}" for state, n in others)])


def test_a_canceled_run_where_one_step_ran_is_not_three_of_three(run, client, alice):
    end_run(run, RunState.CANCELED, prep=StepState.SUCCEEDED, train=StepState.CANCELED, report=StepState.SKIPPED)
    client.force_login(alice)
    html = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert progress_text(html) == "1 / 3 steps 1 canceled 1 skipped"
    assert "Retry failed steps" not in html
    assert ">Rerun<" in html


def test_a_failed_run_counts_its_failure_apart_and_offers_a_retry(run, client, alice):
    end_run(run, RunState.FAILED, prep=StepState.SUCCEEDED, train=StepState.FAILED, report=StepState.SKIPPED)
    client.force_login(alice)
    html = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert progress_text(html) == "1 / 3 steps 1 failed 1 skipped"
    assert "Retry failed steps" in html


def test_the_runs_list_counts_done_steps(run, client, alice):
    end_run(run, RunState.CANCELED, prep=StepState.SUCCEEDED, train=StepState.CANCELED, report=StepState.SKIPPED)
    client.force_login(alice)
    html = client.get(reverse("run_list")).content.decode()
    assert ">1/3<" in html


def test_a_running_step_duration_is_rendered_to_tick(run, client, alice):
    started = timezone.now() - timedelta(minutes=5)
    set_step(run, "prep", state=StepState.RUNNING, attempt=1, started_at=started)
    Run.objects.filter(pk=run.pk).update(state=RunState.RUNNING, started_at=started)
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[run.pk, "prep"])).content.decode()
    # The row, the step panel and the header each carry the start for the page's script.
    assert html.count(f'data-since="{started.isoformat()}"') == 3
    config = client.get(reverse("run_parts", args=[run.pk]) + "?step=prep").json()
    assert config["states"]["prep"] == ["running", 1]


# ---- messages in words -----------------------------------------------------------------------


def test_a_wrong_literal_is_named_in_words_not_pythons(pipeline, client, alice):
    client.force_login(alice)
    response = client.post(reverse("run_create", args=[pipeline.pk]), {"in_epochs": "three", "in_rate": "fast"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "invalid literal" not in html and "could not convert" not in html
    assert "&#x27;three&#x27; is not a whole number" in html
    assert "&#x27;fast&#x27; is not a number" in html


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Train", "'Train' has upper-case letters: try 'train'."),
        ("1st", "'1st' starts with a digit."),
        ("pre-process data", "'pre-process data' has characters a step name cannot hold: space '-'."),
    ],
)
def test_a_step_name_error_says_what_is_wrong_once(name, message):
    from django.core.exceptions import ValidationError

    from pipelines_ui.forms import STEP_NAME_HELP, validate_step_name

    with pytest.raises(ValidationError) as caught:
        validate_step_name(name)
    assert caught.value.messages == [message]
    assert STEP_NAME_HELP not in message


# ---- where runs are found -------------------------------------------------------------------


def test_the_pipelines_list_shows_each_pipelines_last_run(pipeline, run, client, alice, team):
    from tests.runs.conftest import make_pipeline, make_run

    newer = make_run(pipeline, alice)
    Run.objects.filter(pk=newer.pk).update(state=RunState.FAILED)
    make_pipeline(team, alice, name="never")
    client.force_login(alice)
    html = client.get(reverse("pipeline_list")).content.decode()
    assert "<th>Last run</th>" in html
    cells = re.findall(r'<td class="last-run">(.*?)</td>', html, re.S)
    assert len(cells) == 2
    assert any(f'href="/runs/{newer.pk}/">#{newer.pk}</a>' in c and 'data-state="failed"' in c for c in cells)
    assert any("never run" in c for c in cells)


def test_a_pipeline_has_a_runs_tab(pipeline, run, client, alice, charlie):
    client.force_login(alice)
    detail = client.get(reverse("pipeline_detail", args=[pipeline.pk])).content.decode()
    assert f'href="{reverse("pipeline_runs", args=[pipeline.pk])}" id="runs-tab">Runs</a>' in detail
    html = client.get(reverse("pipeline_runs", args=[pipeline.pk])).content.decode()
    assert f'data-run="{run.pk}"' in html and 'nav-link active" href="/pipelines/' in html
    client.force_login(charlie)
    assert client.get(reverse("pipeline_runs", args=[pipeline.pk])).status_code == 404


def test_a_pipelines_runs_tab_names_no_pipeline_per_row(pipeline, run, client, alice):
    """Every row of the tab is this pipeline's: a Pipeline column would repeat its name."""
    client.force_login(alice)
    by_pipeline = f'href="{reverse("run_list")}?pipeline={pipeline.pk}"'
    tab = client.get(reverse("pipeline_runs", args=[pipeline.pk])).content.decode()
    head = tab.split('id="runs-table"')[1].split("</thead>")[0]
    assert "<th>Pipeline</th>" not in head and "<th>Version</th>" in head
    assert by_pipeline not in tab
    assert f"v{run.version.number}</span>" in tab.split(f'data-run="{run.pk}"')[1]
    listing = client.get(reverse("run_list")).content.decode()
    assert "<th>Pipeline</th>" in listing and by_pipeline in listing


def test_a_pipeline_without_runs_says_how_to_start_one(pipeline, client, alice):
    client.force_login(alice)
    html = client.get(reverse("pipeline_runs", args=[pipeline.pk])).content.decode()
    assert "No runs of this pipeline yet. Start one with the Run button above." in html
