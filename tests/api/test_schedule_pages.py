"""Schedule pages: the create form (typed inputs, clear errors), pause and resume, the lists,
who sees and changes what."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from pipelines_ui import team_secrets
from pipelines_ui.api import schedules
from pipelines_ui.api.endpoints import endpoint_create
from pipelines_ui.api.models import Schedule
from runs.forms import FIELD_PREFIX
from runs.models import Run
from tests.runs.conftest import make_pipeline
from tests.runs.test_secrets import SECRET_YAML

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form_data(**extra) -> dict:
    return {
        "name": "weekday mornings",
        "target": "pipeline",
        "kind": "cron",
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Berlin",
        "catchup": "latest",
        "enabled": "on",
        FIELD_PREFIX + "epochs": "5",
        FIELD_PREFIX + "mode": "full",
        **extra,
    }


def make(pipeline, user, name="hourly", **settings) -> Schedule:
    settings.setdefault("cron", "0 * * * *")
    return schedules.schedule_create(
        team=pipeline.team, pipeline=pipeline, user=user, settings=schedules.Settings(name=name, **settings)
    )


def test_an_admin_creates_a_schedule_with_typed_inputs(pipeline, alice):
    client = client_for(alice)
    page = client.get(f"/pipelines/{pipeline.pk}/schedules/")
    assert b'id="schedule-form"' in page.content and b"No schedules for this pipeline yet" in page.content
    assert b"<code>*/15 * * * *</code> every 15 minutes" in page.content  # the cron examples
    response = client.post(f"/pipelines/{pipeline.pk}/schedules/", form_data())
    schedule = Schedule.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/schedules/{schedule.pk}/"
    assert (schedule.cron, schedule.timezone, schedule.interval_seconds) == ("0 9 * * 1-5", "Europe/Berlin", None)
    assert schedule.inputs == {"epochs": 5, "mode": "full", "verbose": False}
    assert schedule.created_by == alice and schedule.enabled
    detail = client.get(response["Location"])
    assert detail.content.count(b"Europe/Berlin</span></span>") == 5  # the next 5 fire times
    assert b"No fires yet" in detail.content


def test_bad_settings_are_shown_on_their_fields_and_nothing_is_saved(pipeline, alice):
    client = client_for(alice)
    url = f"/pipelines/{pipeline.pk}/schedules/"
    response = client.post(url, form_data(cron="61 * * * *"))
    assert response.status_code == 400
    assert "not a valid cron expression" in response.context["form"].errors["cron"][0]
    response = client.post(url, form_data(**{FIELD_PREFIX + "epochs": "lots"}))
    assert response.context["form"].errors[FIELD_PREFIX + "epochs"][0].startswith("expected integer")
    response = client.post(url, form_data(kind="interval", cron=""))
    assert response.context["form"].errors["interval_seconds"] == ["give the interval in seconds"]
    make(pipeline, alice, name="weekday mornings")
    response = client.post(url, form_data())
    assert "already has a schedule named 'weekday mornings'" in response.context["form"].errors["name"][0]
    assert Schedule.objects.count() == 1


def test_an_interval_schedule_from_the_form(pipeline, alice):
    response = client_for(alice).post(
        f"/pipelines/{pipeline.pk}/schedules/", form_data(kind="interval", cron="", interval_seconds="90")
    )
    assert response.status_code == 302
    schedule = Schedule.objects.get()
    assert (schedule.cron, schedule.interval_seconds) == ("", 90)
    assert schedules.describe_timing(schedule) == "every 90 seconds"


def test_members_see_schedules_admins_pause_and_resume(pipeline, alice, bob, viewer):
    schedule = make(pipeline, alice)
    for user in (bob, viewer):
        page = client_for(user).get(f"/pipelines/{pipeline.pk}/schedules/")
        assert page.status_code == 200 and b"hourly" in page.content
        assert b'id="schedule-form"' not in page.content and b">Pause</button>" not in page.content
        assert client_for(user).post(f"/schedules/{schedule.pk}/enabled/", {"enabled": "0"}).status_code == 403
        assert client_for(user).post(f"/pipelines/{pipeline.pk}/schedules/", form_data()).status_code == 403
    schedule.refresh_from_db()
    assert schedule.enabled and Schedule.objects.count() == 1

    admin = client_for(alice)
    response = admin.post(f"/schedules/{schedule.pk}/enabled/", {"enabled": "0", "next": "list"})
    assert response["Location"] == "/schedules/"
    schedule.refresh_from_db()
    assert not schedule.enabled
    assert b"none while paused" in admin.get("/schedules/").content
    before = schedule.handled_until
    admin.post(f"/schedules/{schedule.pk}/enabled/", {"enabled": "1"})
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.handled_until > before


def test_a_schedule_whose_inputs_no_longer_fit_can_pause_but_not_resume(pipeline, alice):
    schedule = make(pipeline, alice)
    Schedule.objects.filter(pk=schedule.pk).update(inputs={"gone": 1})
    client = client_for(alice)
    client.post(f"/schedules/{schedule.pk}/enabled/", {"enabled": "0"})
    schedule.refresh_from_db()
    assert not schedule.enabled
    response = client.post(f"/schedules/{schedule.pk}/enabled/", {"enabled": "1"}, follow=True)
    assert "cannot resume: inputs.gone: the pipeline has no such input" in response.content.decode()
    schedule.refresh_from_db()
    assert not schedule.enabled


def test_the_list_shows_the_user_s_teams_only_and_escapes_names(pipeline, alice, charlie):
    make(pipeline, alice, name="<b>bold</b>")
    page = client_for(alice).get("/schedules/")
    assert b"&lt;b&gt;bold&lt;/b&gt;" in page.content and b"<b>bold</b>" not in page.content
    other = client_for(charlie).get("/schedules/")
    assert b"bold" not in other.content and b"No schedules yet" in other.content
    schedule = Schedule.objects.get()
    assert client_for(charlie).get(f"/schedules/{schedule.pk}/").status_code == 404
    assert client_for(charlie).post(f"/schedules/{schedule.pk}/delete/").status_code == 404


def test_fires_are_listed_with_their_runs(pipeline, alice):
    schedule = make(pipeline, alice, cron="", interval_seconds=60, catchup="latest")
    since = schedule.handled_until
    schedules.tick(since + timedelta(seconds=125))
    Schedule.objects.filter(pk=schedule.pk).update(inputs={"epochs": "x"})
    schedules.tick(since + timedelta(seconds=181))
    page = client_for(alice).get(f"/schedules/{schedule.pk}/").content.decode()
    run = schedule.fires.exclude(run=None).get().run
    assert f'href="/runs/{run.pk}/"' in page
    assert "missed while no scheduler ran" in page
    assert "epochs: expected integer" in page


def test_an_admin_deletes_a_schedule_and_its_runs_stay(pipeline, alice):
    schedule = make(pipeline, alice, cron="", interval_seconds=60)
    schedules.tick(timezone.now() + timedelta(seconds=61))
    run_id = schedule.fires.get().run_id
    response = client_for(alice).post(f"/schedules/{schedule.pk}/delete/")
    assert response["Location"] == f"/pipelines/{pipeline.pk}/schedules/"
    assert not Schedule.objects.exists()
    assert Run.objects.filter(pk=run_id).exists()


def test_the_form_schedules_an_endpoint_of_the_pipeline(pipeline, alice, team):
    endpoint = endpoint_create(team=team, name="nightly", pipeline=pipeline, user=alice)
    page = client_for(alice).get(f"/pipelines/{pipeline.pk}/schedules/")
    assert f'<option value="{endpoint.pk}">endpoint nightly (default v1)</option>' in page.content.decode()
    response = client_for(alice).post(f"/pipelines/{pipeline.pk}/schedules/", form_data(target=str(endpoint.pk)))
    assert response.status_code == 302
    schedule = Schedule.objects.get()
    assert (schedule.endpoint, schedule.pipeline) == (endpoint, None)
    listed = client_for(alice).get(f"/pipelines/{pipeline.pk}/schedules/").content.decode()
    assert "via endpoint nightly" in listed


def test_a_secret_input_is_left_to_the_team_secret_and_the_form_says_so(team, alice):
    pipeline = make_pipeline(team, alice, name="secretive", yaml_text=SECRET_YAML)
    client = client_for(alice)
    url = f"/pipelines/{pipeline.pk}/schedules/"
    page = client.get(url).content.decode()
    assert 'id="secret-inputs"' in page and "api_token, extra" in page
    assert f'name="{FIELD_PREFIX}api_token"' not in page
    data = {k: v for k, v in form_data().items() if k != FIELD_PREFIX + "mode"}
    response = client.post(url, data)
    assert response.status_code == 400
    assert "team secret named api_token" in response.content.decode()
    assert not Schedule.objects.exists()

    team_secrets.secret_set(team=team, name="api_token", value="team-token-value", by=alice)
    assert client.post(url, data).status_code == 302
    assert Schedule.objects.get().inputs == {"epochs": 5}
