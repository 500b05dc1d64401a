"""Data triggers: a new data version starts exactly one run bound to it, however the signal races;
a paused trigger starts nothing; a datastore path is polled and each change starts one run."""

from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from pipelines_ui.api import data_triggers
from pipelines_ui.api.data_triggers import TriggerError, TriggerSettings
from pipelines_ui.api.models import DataTrigger, DataTriggerFire
from pipelines_ui.models import Membership, Role
from runs import artifacts, data_assets
from runs.data_assets import data_create_from_path
from runs.models import RunDataInput, RunRemoteInput, StepOutput, StepRun
from tests.api.conftest import bearer, token_for
from tests.runs.conftest import make_pipeline

READER = """
type: pipeline
inputs:
  raw: {type: uri_folder, path: "azureml:digits@latest"}
  n: {type: integer, default: 1}
jobs:
  read:
    command: ls ${{inputs.d}}
    inputs: {d: "${{parent.inputs.raw}}"}
"""


def folder(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).mkdir()
    (tmp_path / name / "value.txt").write_text(text)
    return tmp_path / name


@pytest.fixture
def digits(team, alice, tmp_path):
    return data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v1", "one"), user=alice)


@pytest.fixture
def reader(team, alice, digits):
    return make_pipeline(team, alice, name="reader", yaml_text=READER)


def asset_trigger(team, alice, reader, digits, **fields) -> DataTrigger:
    settings = TriggerSettings(name="on digits", pipeline=reader, input_name="raw", asset=digits.asset, **fields)
    return data_triggers.data_trigger_create(team=team, settings=settings, user=alice)


def bound_versions(trigger) -> list[str]:
    return [
        RunDataInput.objects.get(run_id=f.run_id, name="raw").data_version.version
        for f in trigger.fires.order_by("pk")
        if f.run_id
    ]


@pytest.mark.django_db
def test_registering_version_2_starts_exactly_one_run_bound_to_it(
    team, alice, reader, digits, tmp_path, django_capture_on_commit_callbacks
):
    trigger = asset_trigger(team, alice, reader, digits)
    assert not trigger.fires.exists()  # the versions before it start nothing
    with django_capture_on_commit_callbacks(execute=True):
        v2 = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v2", "two"), user=alice)
    fire = trigger.fires.get()
    assert fire.data_version == v2 and fire.reference == "azureml:digits:2" and not fire.error
    assert fire.run.pipeline == reader and fire.run.created_by == alice
    row = RunDataInput.objects.get(run=fire.run, name="raw")
    assert row.data_version == v2 and row.reference == "azureml:digits:2"
    assert reader.runs.count() == 1


@pytest.mark.django_db
def test_a_second_delivery_or_a_sweep_for_the_same_version_starts_nothing(
    team, alice, reader, digits, tmp_path, django_capture_on_commit_callbacks
):
    trigger = asset_trigger(team, alice, reader, digits)
    with django_capture_on_commit_callbacks(execute=True):
        v2 = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v2", "two"), user=alice)
    assert data_triggers.version_added(version_id=v2.pk) == []
    assert data_triggers.fire_for_version(trigger, v2) is None
    assert data_triggers.sweep_versions(timezone.now()) == []
    assert trigger.fires.count() == 1 and reader.runs.count() == 1


@pytest.mark.django_db
def test_the_sweep_fires_a_version_whose_hook_never_ran(team, alice, reader, digits, tmp_path):
    trigger = asset_trigger(team, alice, reader, digits)
    # No on-commit callbacks run here: as if the process died after the commit.
    v2 = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v2", "two"), user=alice)
    assert not trigger.fires.exists()
    fired = data_triggers.sweep_versions(timezone.now())
    assert [f.data_version for f in fired] == [v2] and bound_versions(trigger) == ["2"]
    assert data_triggers.sweep_versions(timezone.now() + timedelta(hours=2)) == []


@pytest.mark.django_db(transaction=True)
def test_racing_deliveries_of_one_version_start_one_run(team, alice, tmp_path):
    """Four processes told about the same version at once: the unique key lets one start a run."""
    digits = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v1", "one"), user=alice)
    reader = make_pipeline(team, alice, name="reader", yaml_text=READER)
    trigger = asset_trigger(team, alice, reader, digits)
    v2 = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v2", "two"), user=alice)
    assert trigger.fires.count() == 1  # the on-commit hook (transaction=True runs it)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def deliver():
        try:
            barrier.wait()
            data_triggers.version_added(version_id=v2.pk)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert trigger.fires.count() == 1 and reader.runs.count() == 1 and bound_versions(trigger) == ["2"]


@pytest.mark.django_db(transaction=True)
def test_two_registrations_racing_for_version_2_start_one_run(team, alice, tmp_path):
    digits = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v1", "one"), user=alice)
    reader = make_pipeline(team, alice, name="reader", yaml_text=READER)
    trigger = asset_trigger(team, alice, reader, digits)
    paths = [folder(tmp_path, f"n{i}", str(i)) for i in range(2)]
    barrier = threading.Barrier(2)
    refused: list[BaseException] = []

    def register(path):
        try:
            barrier.wait()
            data_create_from_path(team=team, name="digits", path=path, version="2", user=alice)
        except data_assets.DataError as exc:
            refused.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=register, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refused) == 1 and "already has a version 2" in str(refused[0])
    assert bound_versions(trigger) == ["2"] and reader.runs.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_of_two_versions_start_one_run_each(team, alice, tmp_path):
    digits = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v1", "one"), user=alice)
    reader = make_pipeline(team, alice, name="reader", yaml_text=READER)
    trigger = asset_trigger(team, alice, reader, digits)
    paths = [folder(tmp_path, f"n{i}", str(i)) for i in range(3)]
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def register(path):
        try:
            barrier.wait()
            data_create_from_path(team=team, name="digits", path=path, user=alice)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=register, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(bound_versions(trigger)) == ["2", "3", "4"] and reader.runs.count() == 3


@pytest.mark.django_db
def test_a_paused_trigger_starts_nothing_and_resuming_skips_what_came_meanwhile(
    team, alice, reader, digits, tmp_path, django_capture_on_commit_callbacks
):
    trigger = asset_trigger(team, alice, reader, digits)
    data_triggers.data_trigger_set_enabled(trigger=trigger, enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v2", "two"), user=alice)
    assert data_triggers.sweep_versions(timezone.now()) == []
    assert not trigger.fires.exists() and not reader.runs.exists()
    data_triggers.data_trigger_set_enabled(trigger=trigger, enabled=True)
    assert data_triggers.sweep_versions(timezone.now()) == []
    with django_capture_on_commit_callbacks(execute=True):
        data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v3", "three"), user=alice)
    assert bound_versions(trigger) == ["3"]


@pytest.mark.django_db
def test_a_demoted_creator_s_trigger_records_why_it_did_not_run(
    team, alice, reader, digits, tmp_path, django_capture_on_commit_callbacks
):
    trigger = asset_trigger(team, alice, reader, digits)
    Membership.objects.filter(team=team, user=alice).update(role=Role.VIEWER)
    with django_capture_on_commit_callbacks(execute=True):
        data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v2", "two"), user=alice)
    fire = trigger.fires.get()
    assert fire.run is None and "may no longer run" in fire.error


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": ""}, "name", "a name is required"),
        ({"input_name": "n"}, "input_name", "not a data input read by reference"),
        ({"input_name": "nope"}, "input_name", "has no input named 'nope'"),
        ({"asset": None}, "asset", "choose a data asset"),
    ],
)
def test_bad_settings_name_the_field(team, alice, reader, digits, fields, field, message):
    base = {"name": "t", "pipeline": reader, "input_name": "raw", "asset": digits.asset}
    with pytest.raises(TriggerError) as refused:
        data_triggers.data_trigger_create(team=team, settings=TriggerSettings(**{**base, **fields}), user=alice)
    assert message in refused.value.errors[field]
    assert not DataTrigger.objects.exists()


@pytest.mark.django_db
def test_another_teams_asset_or_a_file_asset_for_a_folder_input_is_refused(
    team, other_team, charlie, alice, reader, tmp_path
):
    theirs = data_create_from_path(team=other_team, name="theirs", path=folder(tmp_path, "t", "x"), user=charlie)
    with pytest.raises(TriggerError, match="choose a data asset of team"):
        data_triggers.data_trigger_create(
            team=team,
            settings=TriggerSettings(name="t", pipeline=reader, input_name="raw", asset=theirs.asset),
            user=alice,
        )
    (tmp_path / "one.txt").write_text("1")
    single = data_create_from_path(team=team, name="single", path=tmp_path / "one.txt", type_="uri_file")
    with pytest.raises(TriggerError, match="is uri_folder but the data is uri_file"):
        data_triggers.data_trigger_create(
            team=team,
            settings=TriggerSettings(name="t", pipeline=reader, input_name="raw", asset=single.asset),
            user=alice,
        )


# ---- datastore paths ---------------------------------------------------------------------------


@pytest.fixture
def lake(team, tmp_path, settings):
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path]
    (tmp_path / "store" / "raw").mkdir(parents=True)
    (tmp_path / "store" / "raw" / "a.csv").write_text("1")
    return data_assets.datastore_create(team=team, name="lake", kind="local", root=str(tmp_path / "store"))


@pytest.mark.django_db
def test_a_datastore_path_is_polled_and_each_change_starts_one_run(team, alice, reader, lake, tmp_path):
    trigger = data_triggers.data_trigger_create(
        team=team,
        settings=TriggerSettings(
            name="lake raw", pipeline=reader, input_name="raw", datastore=lake, path="raw", interval_seconds=60
        ),
        user=alice,
    )
    t0 = timezone.now()
    assert data_triggers.tick(t0).checked == 1  # the baseline: nothing starts
    assert not trigger.fires.exists()
    (tmp_path / "store" / "raw" / "b.csv").write_text("2")
    assert data_triggers.tick(t0 + timedelta(seconds=30)).checked == 0  # not due yet
    result = data_triggers.tick(t0 + timedelta(seconds=61))
    assert result.checked == 1 and len(result.fired) == 1
    fire = trigger.fires.get()
    assert fire.reference == "azureml://datastores/lake/paths/raw" and not fire.error
    remote = RunRemoteInput.objects.get(run=fire.run, name="raw")
    assert remote.datastore == lake and remote.artifact.file_count == 2
    # Unchanged: no run; a second scheduler polling the same moment loses the compare-and-set.
    assert data_triggers.tick(t0 + timedelta(seconds=122)).fired == []
    trigger.refresh_from_db()
    stale = DataTrigger.objects.get(pk=trigger.pk)
    (tmp_path / "store" / "raw" / "c.csv").write_text("3")
    assert data_triggers.poll_path(trigger, t0 + timedelta(seconds=183)) is not None
    assert data_triggers.poll_path(stale, t0 + timedelta(seconds=183)) is None
    assert trigger.fires.count() == 2 and DataTriggerFire.objects.filter(run__isnull=False).count() == 2


@pytest.mark.django_db
def test_a_paused_path_trigger_is_not_polled(team, alice, reader, lake, tmp_path):
    trigger = data_triggers.data_trigger_create(
        team=team,
        settings=TriggerSettings(
            name="lake raw", pipeline=reader, input_name="raw", datastore=lake, path="raw", interval_seconds=60
        ),
        user=alice,
    )
    data_triggers.tick(timezone.now())
    data_triggers.data_trigger_set_enabled(trigger=trigger, enabled=False)
    (tmp_path / "store" / "raw" / "b.csv").write_text("2")
    assert data_triggers.tick(timezone.now() + timedelta(hours=1)).checked == 0
    assert not trigger.fires.exists()


def path_trigger(team, alice, reader, lake) -> DataTrigger:
    settings = TriggerSettings(
        name="lake raw", pipeline=reader, input_name="raw", datastore=lake, path="raw", interval_seconds=60
    )
    return data_triggers.data_trigger_create(team=team, settings=settings, user=alice)


@pytest.fixture
def orphaned(team, alice, reader, lake, tmp_path, monkeypatch) -> tuple[DataTrigger, datetime, DataTriggerFire]:
    """A path trigger whose poller died (SystemExit) as it started the run of a change it had
    claimed: the trigger, the time of its baseline, and the pending fire."""
    trigger = path_trigger(team, alice, reader, lake)
    t0 = timezone.now()
    data_triggers.tick(t0)  # the baseline
    (tmp_path / "store" / "raw" / "b.csv").write_text("2")

    def dies(*_args):
        raise SystemExit("the scheduler was killed")

    with monkeypatch.context() as patched:
        patched.setattr(data_triggers, "_start_run", dies)
        with pytest.raises(SystemExit):
            data_triggers.poll_path(DataTrigger.objects.get(pk=trigger.pk), t0 + timedelta(seconds=61))
    return trigger, t0, trigger.fires.get()


@pytest.mark.django_db
def test_a_change_claimed_by_a_poller_that_died_is_started_by_the_sweep(reader, orphaned):
    trigger, t0, fire = orphaned
    trigger.refresh_from_db()
    assert fire.pending and fire.run is None and not fire.error
    assert trigger.seen, "the change is claimed: no later poll sees it again"
    # A poller still starting it (a slow copy of the path) is left alone for PENDING_GRACE.
    assert data_triggers.tick(t0 + timedelta(seconds=122)).fired == []
    assert reader.runs.count() == 0
    later = t0 + data_triggers.PENDING_GRACE + timedelta(seconds=61)
    result = data_triggers.tick(later)
    assert [f.pk for f in result.fired] == [fire.pk]
    fire.refresh_from_db()
    assert not fire.pending and fire.run is not None and reader.runs.count() == 1
    assert RunRemoteInput.objects.get(run=fire.run, name="raw").artifact.file_count == 2
    assert data_triggers.tick(later + timedelta(minutes=11)).fired == []
    assert reader.runs.count() == 1


@pytest.mark.django_db
def test_a_late_poller_and_the_sweep_start_one_run_between_them(reader, orphaned):
    trigger, t0, fire = orphaned
    swept = data_triggers.sweep_pending(t0 + data_triggers.PENDING_GRACE + timedelta(minutes=2))
    assert [f.pk for f in swept] == [fire.pk]
    # The poller that claimed it comes back (it was only slow): its run is rolled back.
    assert data_triggers._record(fire, lambda: data_triggers._start_run(trigger, fire.reference)) is None
    assert reader.runs.count() == 1
    fire.refresh_from_db()
    assert fire.run == reader.runs.get()


@pytest.mark.django_db(transaction=True)
def test_a_poller_and_two_sweeps_racing_for_one_pending_change_start_one_run(reader, orphaned):
    trigger, t0, fire = orphaned
    later = t0 + data_triggers.PENDING_GRACE + timedelta(minutes=2)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def late_poller():
        barrier.wait()
        data_triggers._record(fire, lambda: data_triggers._start_run(trigger, fire.reference))

    def sweep():
        barrier.wait()
        data_triggers.sweep_pending(later)

    def guarded(target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guarded, args=(t,)) for t in (late_poller, sweep, sweep)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    fire.refresh_from_db()
    assert reader.runs.count() == 1 and fire.run == reader.runs.get() and not fire.pending


@pytest.mark.django_db
def test_a_pending_change_of_a_paused_trigger_is_dropped_saying_so(reader, orphaned):
    trigger, t0, fire = orphaned
    data_triggers.data_trigger_set_enabled(trigger=trigger, enabled=False)
    assert data_triggers.sweep_pending(t0 + data_triggers.PENDING_GRACE + timedelta(minutes=2)) == []
    fire.refresh_from_db()
    assert not fire.pending and fire.run is None and "paused" in fire.error
    assert reader.runs.count() == 0


@pytest.mark.django_db
def test_a_pending_change_that_fails_again_is_settled_with_its_error_not_retried_forever(reader, orphaned, monkeypatch):
    trigger, t0, fire = orphaned

    def broken(*_args):
        raise OSError("the datastore's disk is gone")

    monkeypatch.setattr(data_triggers, "_start_run", broken)
    later = t0 + data_triggers.PENDING_GRACE + timedelta(minutes=2)
    assert data_triggers.sweep_pending(later) == []
    fire.refresh_from_db()
    assert not fire.pending and fire.error == "could not start its run: the datastore's disk is gone"
    assert data_triggers.sweep_pending(later + timedelta(minutes=1)) == [] and reader.runs.count() == 0


@pytest.mark.django_db
def test_a_fire_whose_run_was_deleted_is_not_started_again(team, alice, reader, lake, tmp_path):
    trigger = path_trigger(team, alice, reader, lake)
    t0 = timezone.now()
    data_triggers.tick(t0)
    (tmp_path / "store" / "raw" / "b.csv").write_text("2")
    (fire,) = data_triggers.tick(t0 + timedelta(seconds=61)).fired
    fire.run.delete()
    assert data_triggers.sweep_pending(t0 + data_triggers.PENDING_GRACE * 2) == []
    assert reader.runs.count() == 0
    fire = trigger.fires.get()
    assert fire.run is None and not fire.pending, "settled: its run was deleted, not never started"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "interval", "field", "message"),
    [
        ("../etc", 60, "path", "leaves the datastore"),
        ("", 60, "path", "give a path inside the datastore"),
        ("raw", 1, "interval_seconds", "between 10 and"),
        ("raw", None, "interval_seconds", "a whole number of seconds"),
    ],
)
def test_bad_path_trigger_settings_name_the_field(team, alice, reader, lake, path, interval, field, message):
    settings = TriggerSettings(
        name="t", pipeline=reader, input_name="raw", datastore=lake, path=path, interval_seconds=interval
    )
    with pytest.raises(TriggerError) as refused:
        data_triggers.data_trigger_create(team=team, settings=settings, user=alice)
    assert message in refused.value.errors[field]


# ---- REST API ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_creates_lists_pauses_and_deletes(team, alice, reader, digits):
    client = bearer(token_for(alice, "read", "run"))
    body = {"team": team.name, "name": "on digits", "pipeline": reader.pk, "input_name": "raw", "asset": "digits"}
    created = client.post("/api/v1/data-triggers/", body, format="json")
    assert created.status_code == 201, created.json()
    trigger_id = created.json()["id"]
    assert created.json()["kind"] == "asset" and created.json()["asset"] == "digits"
    listed = client.get(f"/api/v1/data-triggers/?pipeline={reader.pk}").json()
    assert [t["id"] for t in listed["results"]] == [trigger_id]
    paused = client.patch(f"/api/v1/data-triggers/{trigger_id}/", {"enabled": False}, format="json")
    assert paused.status_code == 200 and paused.json()["enabled"] is False
    assert client.delete(f"/api/v1/data-triggers/{trigger_id}/").status_code == 204
    assert not DataTrigger.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"asset": "nope"}, "asset", "has no data asset 'nope'"),
        ({"input_name": "n"}, "input_name", "not a data input read by reference"),
        ({"pipeline": 999999}, "pipeline", "has no pipeline 999999"),
    ],
)
def test_the_api_names_what_is_wrong(team, alice, reader, digits, fields, field, message):
    body = {"team": team.name, "name": "t", "pipeline": reader.pk, "input_name": "raw", "asset": "digits", **fields}
    response = bearer(token_for(alice, "run")).post("/api/v1/data-triggers/", body, format="json")
    assert response.status_code == 400
    assert any(e["field"] == field and message in e["message"] for e in response.json()["errors"]), response.json()


@pytest.mark.django_db
def test_a_read_token_cannot_create(team, alice, reader, digits):
    body = {"team": team.name, "name": "t", "pipeline": reader.pk, "input_name": "raw", "asset": "digits"}
    assert bearer(token_for(alice, "read")).post("/api/v1/data-triggers/", body, format="json").status_code == 403
    assert not DataTrigger.objects.exists()


@pytest.mark.django_db
def test_the_scheduler_command_polls_data_triggers(team, alice, reader, lake, tmp_path):
    trigger = data_triggers.data_trigger_create(
        team=team,
        settings=TriggerSettings(
            name="lake raw", pipeline=reader, input_name="raw", datastore=lake, path="raw", interval_seconds=10
        ),
        user=alice,
    )
    out = io.StringIO()
    call_command("stepwise_scheduler", "--once", stdout=out)
    assert "data triggers: 1 path(s) checked, 0 run(s) started" in out.getvalue()
    trigger.refresh_from_db()
    assert trigger.checked_at is not None and trigger.seen


@pytest.mark.django_db
def test_a_version_made_by_the_trigger_s_own_run_does_not_start_it_again(
    team, alice, reader, digits, tmp_path, django_capture_on_commit_callbacks
):
    trigger = asset_trigger(team, alice, reader, digits)
    with django_capture_on_commit_callbacks(execute=True):
        data_create_from_path(team=team, name="digits", path=folder(tmp_path, "v2", "two"), user=alice)
    run = trigger.fires.get().run
    output = StepOutput.objects.create(
        step_run=StepRun.objects.get(run=run, name="read"),
        name="out",
        artifact=artifacts.store_output(folder(tmp_path, "out", "three"), "uri_folder"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        data_assets.data_create_from_step_output(step_output=output, name="digits")
    assert trigger.fires.count() == 1 and reader.runs.count() == 1
    assert data_triggers.sweep_versions(timezone.now()) == []
