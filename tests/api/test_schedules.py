"""Schedules: fire times (cron in a time zone, across DST changes; intervals), the catch-up
policies after a stopped scheduler (explicit `now` values), fires that cannot start a run,
validation messages, and the API's rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from pipelines_ui.api import schedules
from pipelines_ui.api.endpoints import endpoint_create
from pipelines_ui.api.models import Catchup, EndpointCall, Schedule, ScheduleFire
from pipelines_ui.api.schedules import ScheduleError, Settings
from pipelines_ui.models import Membership, Role
from runs.models import Run
from tests.api.conftest import bearer, token_for

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_schedule(pipeline, user, *, created_at=T0, handled_until=None, **fields) -> Schedule:
    fields.setdefault("name", "nightly")
    if not fields.get("cron"):
        fields.setdefault("interval_seconds", 60)
    schedule = Schedule.objects.create(team=pipeline.team, pipeline=pipeline, created_by=user, **fields)
    Schedule.objects.filter(pk=schedule.pk).update(created_at=created_at, handled_until=handled_until or created_at)
    schedule.refresh_from_db()
    return schedule


def fires(schedule) -> list[tuple[datetime, bool, bool]]:
    """(fire time, has a run, skipped), oldest first."""
    return [(f.fire_time, f.run_id is not None, f.skipped) for f in schedule.fires.order_by("fire_time")]


# ---- fire times -------------------------------------------------------------------------


@pytest.mark.django_db
def test_cron_in_a_time_zone_follows_daylight_saving(pipeline, alice):
    # New York moves to daylight time on 2026-03-08: 09:00 local is 14:00 UTC before, 13:00 after.
    schedule = make_schedule(pipeline, alice, cron="0 9 * * *", timezone="America/New_York")
    assert schedules.next_fire_times(schedule, after=utc(2026, 3, 6, 12)) == [
        utc(2026, 3, 6, 14),
        utc(2026, 3, 7, 14),
        utc(2026, 3, 8, 13),
        utc(2026, 3, 9, 13),
        utc(2026, 3, 10, 13),
    ]


@pytest.mark.django_db
def test_cron_wall_times_skipped_or_repeated_by_dst_fire_once(pipeline, alice):
    # 02:30 does not exist on 2026-03-08 in New York: it fires at 03:00 EDT (07:00 UTC).
    spring = make_schedule(pipeline, alice, cron="30 2 * * *", timezone="America/New_York")
    assert schedules.next_fire_times(spring, 2, after=utc(2026, 3, 7, 12)) == [
        utc(2026, 3, 8, 7),
        utc(2026, 3, 9, 6, 30),
    ]
    # 01:30 happens twice on 2026-11-01: a daily schedule fires at the first one only.
    fall = make_schedule(pipeline, alice, name="fall", cron="30 1 * * *", timezone="America/New_York")
    assert schedules.next_fire_times(fall, 2, after=utc(2026, 10, 31, 12)) == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 2, 6, 30),
    ]
    # An every-30-minutes schedule keeps its pace through the repeated hour (04:00-07:00 UTC: 6 fires).
    half = make_schedule(pipeline, alice, name="half", cron="*/30 * * * *", timezone="America/New_York")
    times = schedules.next_fire_times(half, 6, after=utc(2026, 11, 1, 3, 59))
    assert times == [utc(2026, 11, 1, 4) + timedelta(minutes=30 * i) for i in range(6)]


@pytest.mark.django_db
def test_interval_fire_times_count_from_creation(pipeline, alice):
    schedule = make_schedule(pipeline, alice, interval_seconds=90, created_at=T0 + timedelta(microseconds=250))
    assert schedules.next_fire_times(schedule, 3, after=T0) == [T0 + timedelta(seconds=90 * k) for k in (1, 2, 3)]
    # Strictly after: a fire time equal to `after` is not next.
    assert schedules.next_fire_times(schedule, 1, after=T0 + timedelta(seconds=180))[0] == T0 + timedelta(seconds=270)


# ---- catch-up after a stopped scheduler ----------------------------------------------------------


@pytest.fixture
def stopped(pipeline, alice):
    """An every-minute schedule that fired at T0+60, then no scheduler ran for five fire times."""

    def make(catchup: str) -> Schedule:
        return make_schedule(pipeline, alice, catchup=catchup, handled_until=T0 + timedelta(seconds=60))

    return make


MISSED = [T0 + timedelta(seconds=60 * k) for k in range(2, 7)]  # T0+120 ... T0+360


@pytest.mark.django_db
def test_catchup_all_runs_every_missed_fire_time(stopped):
    schedule = stopped(Catchup.ALL)
    result = schedules.tick(MISSED[-1] + timedelta(seconds=10))
    assert len(result.fired) == 5
    assert fires(schedule) == [(t, True, False) for t in MISSED]
    assert Run.objects.count() == 5
    schedule.refresh_from_db()
    assert schedule.handled_until == MISSED[-1]
    # A second pass at the same moment starts nothing more.
    assert not schedules.tick(MISSED[-1] + timedelta(seconds=11)).fired
    assert Run.objects.count() == 5


@pytest.mark.django_db
def test_catchup_latest_runs_the_newest_and_records_the_rest_skipped(stopped):
    schedule = stopped(Catchup.LATEST)
    result = schedules.tick(MISSED[-1] + timedelta(seconds=50))
    assert (len(result.fired), result.skipped) == (1, 4)
    assert fires(schedule) == [(t, False, True) for t in MISSED[:-1]] + [(MISSED[-1], True, False)]
    assert Run.objects.count() == 1


@pytest.mark.django_db
def test_catchup_none_runs_only_a_fire_time_within_the_grace(stopped):
    on_time = stopped(Catchup.NONE)
    schedules.tick(MISSED[-1] + timedelta(seconds=5))
    assert fires(on_time) == [(t, False, True) for t in MISSED[:-1]] + [(MISSED[-1], True, False)]

    Schedule.objects.all().delete()
    Run.objects.all().delete()
    late = stopped(Catchup.NONE)
    result = schedules.tick(MISSED[-1] + schedules.NONE_GRACE + timedelta(seconds=1))
    assert (len(result.fired), result.skipped) == (0, 5)
    assert fires(late) == [(t, False, True) for t in MISSED]
    assert Run.objects.count() == 0
    late.refresh_from_db()
    assert late.handled_until == MISSED[-1]
    # The next fire time after the stop runs as usual.
    schedules.tick(T0 + timedelta(seconds=420, milliseconds=300))
    assert fires(late)[-1] == (T0 + timedelta(seconds=420), True, False)


@pytest.mark.django_db
def test_catchup_all_after_a_long_stop_runs_in_batches(pipeline, alice):
    schedule = make_schedule(pipeline, alice, interval_seconds=1, catchup=Catchup.ALL)
    now = T0 + timedelta(seconds=schedules.MAX_FIRES_PER_TICK + 20)
    assert len(schedules.tick(now).fired) == schedules.MAX_FIRES_PER_TICK
    assert len(schedules.tick(now).fired) == 20
    assert schedule.fires.count() == Run.objects.count() == schedules.MAX_FIRES_PER_TICK + 20


@pytest.mark.django_db
def test_a_paused_schedule_fires_nothing_and_resumes_from_now(pipeline, alice):
    schedule = make_schedule(pipeline, alice, enabled=False)
    assert not schedules.tick(T0 + timedelta(hours=1)).fired
    schedule = schedules.schedule_set_enabled(schedule=schedule, enabled=True)
    assert schedule.handled_until > T0 + timedelta(hours=1)  # now: the pause is not caught up
    assert not schedules.tick(timezone.now()).fired


# ---- one run per fire time ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_fire_time_claimed_twice_starts_one_run(pipeline, alice):
    schedule = make_schedule(pipeline, alice)
    first = schedules.fire(schedule, T0 + timedelta(seconds=60))
    assert first is not None and first.run_id is not None
    assert schedules.fire(schedule, T0 + timedelta(seconds=60)) is None
    assert Run.objects.count() == 1


# ---- fires that cannot start a run ----------------------------------------------------------------


@pytest.mark.django_db
def test_an_owner_who_lost_the_editor_role_gets_errors_not_runs(pipeline, alice, team):
    schedule = make_schedule(pipeline, alice)
    Membership.objects.filter(team=team, user=alice).update(role=Role.VIEWER)
    schedules.tick(T0 + timedelta(seconds=61))
    fire = schedule.fires.get()
    assert fire.run is None and not fire.skipped
    assert "alice may no longer run this team's pipelines (role: viewer)" in fire.error
    # Recorded and passed, not retried at every tick.
    schedules.tick(T0 + timedelta(seconds=62))
    assert schedule.fires.count() == 1 and Run.objects.count() == 0


@pytest.mark.django_db
def test_inputs_that_became_invalid_are_recorded_on_the_fire(pipeline, alice):
    schedule = make_schedule(pipeline, alice)
    Schedule.objects.filter(pk=schedule.pk).update(inputs={"epochs": "many"})
    schedules.tick(T0 + timedelta(seconds=61))
    fire = schedule.fires.get()
    assert fire.run is None
    assert fire.error.startswith("epochs: expected integer")


@pytest.mark.django_db
def test_a_schedule_on_an_endpoint_runs_its_default_version(pipeline, alice, team):
    endpoint = endpoint_create(team=team, name="nightly", pipeline=pipeline, user=alice)
    schedule = schedules.schedule_create(
        team=team,
        endpoint=endpoint,
        user=alice,
        settings=Settings(name="ep", interval_seconds=60, inputs={"epochs": 7}),
    )
    Schedule.objects.filter(pk=schedule.pk).update(created_at=T0, handled_until=T0)
    schedules.tick(T0 + timedelta(seconds=61))
    run = schedule.fires.get().run
    assert run.version == endpoint.default_version and run.inputs["epochs"] == 7
    assert EndpointCall.objects.get().schedule == schedule


# ---- validation ---------------------------------------------------------------------------------------


def clean_errors(version=None, **given) -> dict[str, str]:
    with pytest.raises(ScheduleError) as caught:
        schedules.settings_clean(Settings(name=given.pop("name", "n"), **given), version=version)
    return caught.value.errors


@pytest.mark.django_db
def test_invalid_settings_name_the_field_and_the_fix(pipeline):
    version = pipeline.latest_version
    assert "five fields" in clean_errors(cron="* * * *")["cron"]
    assert "not a valid cron expression" in clean_errors(cron="61 * * * *")["cron"]
    assert "unknown macro" in clean_errors(cron="@sometimes")["cron"]
    assert "never fires" in clean_errors(cron="0 9 31 2 *")["cron"]
    assert "not both" in clean_errors(cron="* * * * *", interval_seconds=60)["cron"]
    assert "give a cron expression" in clean_errors()["cron"]
    assert "between 1 and" in clean_errors(interval_seconds=0)["interval_seconds"]
    assert "unknown time zone 'Mars/Olympus'" in clean_errors(cron="0 * * * *", timezone="Mars/Olympus")["timezone"]
    assert "one of none, latest, all" in clean_errors(interval_seconds=5, catchup="some")["catchup"]
    errors = clean_errors(version, interval_seconds=5, inputs={"epochs": "x", "nope": 1})
    assert errors["inputs.epochs"].startswith("expected integer")
    assert errors["inputs.nope"] == "the pipeline has no such input"
    clean = schedules.settings_clean(
        Settings(name=" n ", cron=" 0  9 * * 1-5 ", timezone="Europe/Berlin", inputs={"epochs": "4"}), version=version
    )
    assert (clean.name, clean.cron, clean.inputs) == ("n", "0 9 * * 1-5", {"epochs": 4})


# ---- the API ---------------------------------------------------------------------------------------------


def body(pipeline, **extra) -> dict:
    return {
        "team": pipeline.team.name,
        "name": "every-minute",
        "pipeline": pipeline.pk,
        "interval_seconds": 60,
        **extra,
    }


@pytest.mark.django_db
def test_api_admin_creates_reads_pauses_and_deletes(pipeline, alice):
    client = bearer(token_for(alice, "read", "admin"))
    created = client.post(
        "/api/v1/schedules/",
        body(pipeline, interval_seconds=None, cron="0 9 * * *", timezone="Europe/Berlin", inputs={"epochs": 2}),
        format="json",
    )
    assert created.status_code == 201, created.json()
    data = created.json()
    assert len(data["next_fire_times"]) == 5 and data["inputs"] == {"epochs": 2}
    assert data["catchup"] == "latest" and data["enabled"] is True and data["fires"] == []
    url = f"/api/v1/schedules/{data['id']}/"
    assert client.get(url).json()["next_fire_times"] == data["next_fire_times"]
    paused = client.patch(url, {"enabled": False}, format="json")
    assert paused.status_code == 200 and paused.json()["enabled"] is False
    assert Schedule.objects.get().enabled is False
    assert client.get("/api/v1/schedules/").json()["count"] == 1
    assert client.delete(url).status_code == 204
    assert not Schedule.objects.exists()


@pytest.mark.django_db
def test_api_bad_settings_are_400_naming_the_field(pipeline, alice):
    client = bearer(token_for(alice, "admin"))
    response = client.post("/api/v1/schedules/", body(pipeline, cron="every day"), format="json")
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"cron"}
    response = client.post("/api/v1/schedules/", body(pipeline, inputs={"epochs": "x"}), format="json")
    assert response.json()["errors"][0]["field"] == "inputs.epochs"
    assert not Schedule.objects.exists()


@pytest.mark.django_db
def test_a_cron_no_date_matches_is_400_and_one_saved_before_the_check_fires_nothing(pipeline, alice):
    client = bearer(token_for(alice, "read", "admin"))
    never = body(pipeline, interval_seconds=None, cron="0 9 31 2 *")
    response = client.post("/api/v1/schedules/", never, format="json")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == "cron" and "never fires" in error["message"]
    assert not Schedule.objects.exists()
    # A row from before the check: listed with no fire times, and the scheduler passes over it.
    schedule = make_schedule(pipeline, alice, cron="0 9 30 2 *", interval_seconds=None)
    listed = client.get("/api/v1/schedules/")
    assert listed.status_code == 200 and listed.json()["results"][0]["next_fire_times"] == []
    assert client.get(f"/api/v1/schedules/{schedule.pk}/").status_code == 200
    assert schedules.due_fire_times(schedule, T0 + timedelta(days=800)) == []


@pytest.mark.django_db
def test_api_pauses_a_schedule_whose_inputs_no_longer_fit_but_will_not_resume_it(pipeline, alice):
    schedule = make_schedule(pipeline, alice, inputs={"gone": 1})
    client = bearer(token_for(alice, "admin"))
    url = f"/api/v1/schedules/{schedule.pk}/"
    assert client.patch(url, {"enabled": False}, format="json").status_code == 200
    response = client.patch(url, {"enabled": True}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "file": None,
        "job": None,
        "field": "inputs.gone",
        "line": None,
        "message": "the pipeline has no such input",
    }
    assert client.patch(url, {"enabled": True, "inputs": {}}, format="json").json()["enabled"] is True


@pytest.mark.django_db
def test_api_roles_and_scopes(pipeline, alice, bob, viewer, charlie):
    schedule = make_schedule(pipeline, alice)
    url = f"/api/v1/schedules/{schedule.pk}/"
    # Members see it; only admins (with the admin scope) create or change it.
    assert bearer(token_for(viewer, "read")).get(url).status_code == 200
    assert (
        bearer(token_for(viewer, "read", "admin")).post("/api/v1/schedules/", body(pipeline), format="json").status_code
        == 403
    )
    assert bearer(token_for(bob, "admin")).patch(url, {"enabled": False}, format="json").status_code == 403
    assert (
        bearer(token_for(alice, "read", "run", "write"))
        .post("/api/v1/schedules/", body(pipeline), format="json")
        .status_code
        == 403
    )
    assert bearer(token_for(alice, "read")).delete(url).status_code == 403
    # Another team's schedule does not exist for the outsider, even to an admin token.
    outsider = bearer(token_for(charlie, "read", "admin"))
    assert outsider.get(url).status_code == 404
    assert outsider.delete(url).status_code == 404
    assert outsider.get("/api/v1/schedules/").json()["count"] == 0
    assert outsider.post("/api/v1/schedules/", body(pipeline), format="json").status_code == 404
    # alice's token limited to her other team sees nothing of this one.
    elsewhere = Membership.objects.get(user=charlie).team
    Membership.objects.create(team=elsewhere, user=alice, role=Role.VIEWER)
    assert bearer(token_for(alice, "read", team=elsewhere)).get(url).status_code == 404
    schedule.refresh_from_db()
    assert schedule.enabled and Schedule.objects.count() == 1


@pytest.mark.django_db
def test_api_a_schedule_needs_only_its_pipeline_and_timing(pipeline, alice):
    client = bearer(token_for(alice, "read", "admin"))
    given = {"pipeline": pipeline.pk, "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}
    first = client.post("/api/v1/schedules/", given, format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["team"] == pipeline.team.name
    assert first.json()["name"] == f"{pipeline.name}: cron 0 9 * * 1-5 (Europe/Berlin)"
    second = client.post("/api/v1/schedules/", given, format="json")
    assert second.status_code == 201, second.json()
    assert second.json()["name"] == f"{pipeline.name}: cron 0 9 * * 1-5 (Europe/Berlin) #2"
    every = client.post("/api/v1/schedules/", {"pipeline": pipeline.pk, "interval_seconds": 3600}, format="json")
    assert every.status_code == 201 and every.json()["name"] == f"{pipeline.name}: every 1 hour"
    assert Schedule.objects.filter(team=pipeline.team).count() == 3
    assert set(Schedule.objects.values_list("created_by", flat=True)) == {alice.pk}


@pytest.mark.django_db
def test_api_an_endpoint_schedule_takes_the_endpoint_s_team(pipeline, alice, team):
    endpoint_create(team=team, name="nightly", pipeline=pipeline, user=alice)
    response = bearer(token_for(alice, "admin")).post(
        "/api/v1/schedules/", {"endpoint": "nightly", "interval_seconds": 60}, format="json"
    )
    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["team"], data["endpoint"], data["name"]) == (team.name, "nightly", "nightly: every 1 minute")


@pytest.mark.django_db
def test_api_a_generated_name_fits_and_skips_the_names_taken(pipeline, alice):
    pipeline.name = "p" * 100
    pipeline.save(update_fields=["name"])
    client = bearer(token_for(alice, "admin"))
    names = []
    for _ in range(3):
        response = client.post("/api/v1/schedules/", {"pipeline": pipeline.pk, "interval_seconds": 60}, format="json")
        assert response.status_code == 201, response.json()
        names.append(response.json()["name"])
    assert [len(n) for n in names] == [100, 100, 100] and len(set(names)) == 3
    assert names[1].endswith(" #2") and names[2].endswith(" #3")


@pytest.mark.django_db
def test_api_a_team_that_is_not_the_pipeline_s_is_400_naming_team(pipeline, alice, other_team):
    Membership.objects.create(team=other_team, user=alice, role=Role.ADMIN)
    client = bearer(token_for(alice, "admin"))
    response = client.post("/api/v1/schedules/", body(pipeline, team=other_team.name), format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"detail", "errors"}
    (error,) = response.json()["errors"]
    assert error["field"] == "team" and f"is in team {pipeline.team.name}" in error["message"]
    assert not Schedule.objects.exists()


@pytest.mark.django_db
def test_api_another_team_s_pipeline_is_404_with_or_without_team(pipeline, alice, team, charlie, other_team):
    endpoint_create(team=team, name="nightly", pipeline=pipeline, user=alice)
    outsider = bearer(token_for(charlie, "read", "admin"))
    timing = {"cron": "0 9 * * *", "timezone": "UTC"}
    response = outsider.post("/api/v1/schedules/", {"pipeline": pipeline.pk, **timing}, format="json")
    assert response.status_code == 404 and set(response.json()) == {"detail", "errors"}
    assert outsider.post("/api/v1/schedules/", body(pipeline), format="json").status_code == 404
    assert outsider.post("/api/v1/schedules/", {"endpoint": "nightly", **timing}, format="json").status_code == 404
    # Named with the outsider's own team: as before, a 400 that does not tell whose it is.
    response = outsider.post("/api/v1/schedules/", body(pipeline, team=other_team.name), format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "pipeline"
    assert pipeline.team.name not in response.json()["detail"]
    assert not Schedule.objects.exists()


@pytest.mark.django_db
def test_api_without_team_the_pipeline_s_team_still_decides_the_role(pipeline, alice, bob, viewer):
    given = {"pipeline": pipeline.pk, "interval_seconds": 60}
    for user, scopes in ((bob, ("admin",)), (viewer, ("admin",)), (alice, ("read", "run", "write"))):
        response = bearer(token_for(user, *scopes)).post("/api/v1/schedules/", given, format="json")
        assert response.status_code == 403, (user, scopes)
    assert not Schedule.objects.exists()


@pytest.mark.django_db
def test_api_an_endpoint_name_several_teams_share_needs_team(pipeline, alice, team, other_team):
    from tests.runs.conftest import make_pipeline

    Membership.objects.create(team=other_team, user=alice, role=Role.ADMIN)
    endpoint_create(team=team, name="nightly", pipeline=pipeline, user=alice)
    endpoint_create(team=other_team, name="nightly", pipeline=make_pipeline(other_team, alice), user=alice)
    client = bearer(token_for(alice, "admin"))
    response = client.post("/api/v1/schedules/", {"endpoint": "nightly", "interval_seconds": 60}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "team"
    response = client.post(
        "/api/v1/schedules/", {"endpoint": "nightly", "interval_seconds": 60, "team": other_team.name}, format="json"
    )
    assert response.status_code == 201 and response.json()["team"] == other_team.name


@pytest.mark.django_db
def test_api_recent_fires_name_their_runs(pipeline, alice):
    schedule = make_schedule(pipeline, alice, catchup=Catchup.LATEST)
    schedules.tick(T0 + timedelta(seconds=130))
    data = bearer(token_for(alice, "read")).get(f"/api/v1/schedules/{schedule.pk}/").json()
    newest, older = data["fires"]
    assert (newest["run"], newest["run_state"], newest["skipped"]) == (
        Run.objects.get().pk,
        Run.objects.get().state,
        False,
    )
    assert older["skipped"] is True and older["run"] is None
    assert ScheduleFire.objects.count() == 2


def test_describe_timing():
    assert schedules.describe_timing(Schedule(interval_seconds=7200)) == "every 2 hours"
    assert schedules.describe_timing(Schedule(interval_seconds=1)) == "every 1 second"
    assert schedules.describe_timing(Schedule(cron="0 9 * * *", timezone="UTC")) == "cron 0 9 * * * (UTC)"
