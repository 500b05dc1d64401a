"""Team secrets in run creation, without workers: a secret input given no value takes the team's
secret of its name (a plain run, the run form, the CLI, a schedule's fire), a rerun takes it again
as it is now, and what the store refuses or cannot read is named."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from pipelines_ui import team_secrets
from pipelines_ui.api import schedules
from pipelines_ui.api.models import Schedule
from pipelines_ui.api.schedules import ScheduleError, Settings
from pipelines_ui.models import TeamSecret
from runs.models import Run
from runs.secrets import secrets_decrypt
from runs.services import RunInputError, run_create, run_rerun
from tests.runs.conftest import make_pipeline
from tests.runs.test_secrets import SECRET_YAML

pytestmark = pytest.mark.django_db

TOKEN = "team-token-0f9e8d7c"


@pytest.fixture
def secret_pipeline(team, alice):
    return make_pipeline(team, alice, name="secretive", yaml_text=SECRET_YAML)


def start(pipeline, user, **inputs) -> Run:
    return run_create(version=pipeline.latest_version, user=user, inputs=inputs)


def test_a_secret_input_given_no_value_takes_the_team_secret_of_its_name(secret_pipeline, team, alice):
    team_secrets.secret_set(team=team, name="api_token", value=TOKEN, by=alice)
    run = start(secret_pipeline, alice)
    run.refresh_from_db()
    assert secrets_decrypt(run.secrets) == {"api_token": TOKEN}
    assert run.team_secrets == ["api_token"]
    assert run.inputs == {}
    assert TOKEN not in str(run.secrets)


def test_a_value_given_wins_over_the_team_secret(secret_pipeline, team, alice):
    team_secrets.secret_set(team=team, name="api_token", value=TOKEN, by=alice)
    team_secrets.secret_set(team=team, name="extra", value="team-extra-value", by=alice)
    run = start(secret_pipeline, alice, api_token="given-by-hand")
    assert secrets_decrypt(run.secrets) == {"api_token": "given-by-hand", "extra": "team-extra-value"}
    assert run.team_secrets == ["extra"]


def test_another_teams_secret_is_never_taken(secret_pipeline, other_team, alice):
    team_secrets.secret_set(team=other_team, name="api_token", value=TOKEN, by=None)
    with pytest.raises(RunInputError) as info:
        start(secret_pipeline, alice)
    assert info.value.errors == {
        "api_token": "a value is required: give it, or have a team admin add a team secret named api_token"
    }
    assert Run.objects.count() == 0


def test_a_rerun_takes_the_team_secret_as_it_is_now_and_repeats_a_given_one(secret_pipeline, team, alice):
    team_secrets.secret_set(team=team, name="api_token", value=TOKEN, by=alice)
    run = start(secret_pipeline, alice, extra="given-extra")
    team_secrets.secret_set(team=team, name="api_token", value="rotated-token", by=alice)
    again = run_rerun(run=run, user=alice)
    assert secrets_decrypt(again.secrets) == {"api_token": "rotated-token", "extra": "given-extra"}
    assert again.team_secrets == ["api_token"]

    team_secrets.secret_delete(team=team, name="api_token")
    with pytest.raises(RunInputError) as info:
        run_rerun(run=run, user=alice)
    assert "team secret named api_token" in info.value.errors["api_token"]


def test_a_team_secret_that_cannot_be_decrypted_is_named_and_starts_nothing(secret_pipeline, team, alice, settings):
    team_secrets.secret_set(team=team, name="api_token", value=TOKEN, by=alice)
    settings.SECRET_KEY = "another-key-entirely"
    with pytest.raises(RunInputError) as info:
        start(secret_pipeline, alice)
    message = info.value.errors["api_token"]
    assert "the team secret 'api_token' cannot be decrypted" in message and "set it again" in message
    assert TOKEN not in message
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("name", "value", "field", "message"),
    [
        ("", "v", "name", "a name is required"),
        ("1token", "v", "name", "letters, digits and underscores"),
        ("api-token", "v", "name", "letters, digits and underscores"),
        ("../x", "v", "name", "letters, digits and underscores"),
        ("x" * 101, "v", "name", "at most 100 characters"),
        ("api_token", "", "value", "a value is required"),
        ("api_token", "a\x00b", "value", "NUL"),
        ("api_token", "x" * (64 * 1024 + 1), "value", "at most 64 KiB"),
        ("api_token", "\ud800", "value", "not valid text"),
    ],
)
def test_the_store_refuses_bad_names_and_values_saying_which(team, alice, name, value, field, message):
    with pytest.raises(team_secrets.TeamSecretError) as info:
        team_secrets.secret_set(team=team, name=name, value=value, by=alice)
    assert info.value.field == field and message in str(info.value)
    assert not TeamSecret.objects.exists()


def test_replacing_a_secret_keeps_one_row_and_records_who(team, alice, bob):
    first, created = team_secrets.secret_set(team=team, name="api_token", value=TOKEN, by=alice)
    assert created
    second, created = team_secrets.secret_set(team=team, name="api_token", value="other", by=bob)
    assert not created and second.pk == first.pk
    assert TeamSecret.objects.get().updated_by == bob
    assert team_secrets.secret_values(team, ["api_token", "missing"]) == {"api_token": "other"}
    assert team_secrets.secret_delete(team=team, name="api_token")
    assert not team_secrets.secret_delete(team=team, name="api_token")


# ---- where runs start -------------------------------------------------------------------------


def test_run_form_may_leave_a_secret_empty_when_the_team_has_it(secret_pipeline, team, alice, client):
    client.force_login(alice)
    url = reverse("run_create", args=[secret_pipeline.pk])
    # As a browser posts it: the secret's field empty.
    response = client.post(url, {"in_api_token": ""})
    assert response.status_code == 200
    assert "team secret named api_token" in response.content.decode()

    team_secrets.secret_set(team=team, name="api_token", value=TOKEN, by=alice)
    assert "empty: the team&#x27;s secret of this name" in client.get(url).content.decode()
    response = client.post(url, {"in_api_token": ""})
    assert response.status_code == 302
    assert secrets_decrypt(Run.objects.get().secrets) == {"api_token": TOKEN}


def test_cli_run_without_secret_flags_takes_the_team_secret(secret_pipeline, team, alice, capsys):
    team_secrets.secret_set(team=team, name="api_token", value=TOKEN, by=alice)
    with pytest.raises(SystemExit) as info:
        call_command("pipelines", "run", "secretive", "--user", "alice")
    assert info.value.code == 0
    assert secrets_decrypt(Run.objects.get().secrets) == {"api_token": TOKEN}
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err


def test_a_schedule_needs_the_team_secret_and_each_fire_takes_it(secret_pipeline, team, alice):
    settings = Settings(name="hourly", interval_seconds=3600)
    with pytest.raises(ScheduleError) as info:
        schedules.schedule_create(team=team, settings=settings, user=alice, pipeline=secret_pipeline)
    assert "team secret named api_token" in info.value.errors["inputs.api_token"]
    # A secret is never stored in the schedule itself.
    with pytest.raises(ScheduleError) as info:
        schedules.schedule_create(
            team=team, settings=Settings(interval_seconds=3600, inputs={"api_token": TOKEN}), user=alice,
            pipeline=secret_pipeline,
        )  # fmt: skip
    assert "adds a team secret of this name" in info.value.errors["inputs.api_token"]

    team_secrets.secret_set(team=team, name="api_token", value=TOKEN, by=alice)
    schedule = schedules.schedule_create(team=team, settings=settings, user=alice, pipeline=secret_pipeline)
    assert "api_token" not in schedule.inputs
    # As if made an hour ago: interval fire times count from the schedule's creation.
    an_hour_ago = timezone.now() - timedelta(hours=1, seconds=1)
    Schedule.objects.filter(pk=schedule.pk).update(created_at=an_hour_ago, handled_until=an_hour_ago)
    result = schedules.tick(timezone.now())
    assert len(result.fired) == 1
    run = Run.objects.get()
    assert secrets_decrypt(run.secrets) == {"api_token": TOKEN}
    assert run.team_secrets == ["api_token"]
