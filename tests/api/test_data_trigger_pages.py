"""Data trigger pages: editors create from the pipeline's page or the data asset's, pause, resume
and delete; viewers see the list only; bad settings are named beside their field."""

from __future__ import annotations

import pytest

from pipelines_ui.api.models import DataTrigger
from runs.data_assets import data_create_from_path, datastore_create
from tests.api.test_data_triggers import READER
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline

pytestmark = pytest.mark.django_db


@pytest.fixture
def digits(team, alice, tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "value.txt").write_text("one")
    return data_create_from_path(team=team, name="digits", path=tmp_path / "v1", user=alice)


@pytest.fixture
def reader(team, alice, digits):
    return make_pipeline(team, alice, name="reader", yaml_text=READER)


def form(reader, digits, **fields) -> dict:
    return {
        "name": "on digits",
        "pipeline": reader.pk,
        "input_name": "raw",
        "source": "asset",
        "asset": digits.asset_id,
        "interval_seconds": "300",
        "enabled": "on",
        **fields,
    }


def test_an_editor_creates_a_trigger_from_the_pipeline_page(client, bob, reader, digits):
    client.force_login(bob)
    page = client.get(f"/pipelines/{reader.pk}/data-triggers/").content.decode()
    assert 'id="data-trigger-form"' in page and '<option value="raw"' in page and 'value="n"' not in page
    response = client.post(f"/pipelines/{reader.pk}/data-triggers/", form(reader, digits))
    assert response.status_code == 302
    trigger = DataTrigger.objects.get()
    assert (trigger.asset, trigger.input_name, trigger.created_by, trigger.enabled) == (digits.asset, "raw", bob, True)
    page = client.get(f"/pipelines/{reader.pk}/data-triggers/").content.decode()
    assert "each new version of digits" in page


def test_an_editor_creates_a_path_trigger_from_the_asset_page(client, bob, reader, digits, team, tmp_path, settings):
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path]
    (tmp_path / "lake" / "raw").mkdir(parents=True)
    lake = datastore_create(team=team, name="lake", kind="local", root=str(tmp_path / "lake"))
    client.force_login(bob)
    detail = client.get(f"/data/{digits.asset_id}/").content.decode()
    assert f'href="/data/{digits.asset_id}/triggers/"' in detail
    data = form(reader, digits, source="datastore_path", datastore=lake.pk, path="raw", interval_seconds="60")
    response = client.post(f"/data/{digits.asset_id}/triggers/", data)
    assert response.status_code == 302
    trigger = DataTrigger.objects.get()
    assert (trigger.kind, trigger.datastore, trigger.path, trigger.interval_seconds) == (
        "datastore_path",
        lake,
        "raw",
        60,
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "This field is required"),
        ({"input_name": "n"}, "not a data input read by reference"),
        ({"source": "datastore_path", "path": "raw"}, "choose a data asset, or a datastore and a path"),
        ({"interval_seconds": "1", "source": "datastore_path"}, "greater than or equal to 10"),
    ],
)
def test_bad_settings_are_named_and_nothing_is_saved(client, bob, reader, digits, fields, message):
    client.force_login(bob)
    response = client.post(f"/data/{digits.asset_id}/triggers/", form(reader, digits, **fields))
    assert response.status_code == 400 and message in response.content.decode()
    assert not DataTrigger.objects.exists()


def test_names_are_escaped(client, bob, reader, digits):
    client.force_login(bob)
    client.post(f"/pipelines/{reader.pk}/data-triggers/", form(reader, digits, name="<script>x</script>"))
    page = client.get(f"/pipelines/{reader.pk}/data-triggers/").content.decode()
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


def test_pause_resume_and_delete(client, bob, reader, digits):
    client.force_login(bob)
    client.post(f"/pipelines/{reader.pk}/data-triggers/", form(reader, digits))
    trigger = DataTrigger.objects.get()
    response = client.post(f"/data-triggers/{trigger.pk}/enabled/", {"enabled": "0", "next": "asset"})
    assert response["Location"] == f"/data/{digits.asset_id}/triggers/"
    trigger.refresh_from_db()
    assert not trigger.enabled
    client.post(f"/data-triggers/{trigger.pk}/enabled/", {"enabled": "1"})
    trigger.refresh_from_db()
    assert trigger.enabled
    response = client.post(f"/data-triggers/{trigger.pk}/delete/", {"next": "https://evil.example/"})
    assert response["Location"] == f"/pipelines/{reader.pk}/data-triggers/"
    assert not DataTrigger.objects.exists()


def test_viewers_see_the_list_but_no_form(client, team, reader, digits):
    vera = make_user("vera", team, "viewer")
    client.force_login(vera)
    page = client.get(f"/pipelines/{reader.pk}/data-triggers/").content.decode()
    assert "data-trigger-form" not in page and "A team editor can add one here" in page
    assert client.post(f"/pipelines/{reader.pk}/data-triggers/", form(reader, digits)).status_code == 403


def test_each_start_shows_its_run_its_error_or_that_it_is_starting(client, bob, reader, digits):
    from pipelines_ui.api.models import DataTriggerFire

    client.force_login(bob)
    client.post(f"/pipelines/{reader.pk}/data-triggers/", form(reader, digits))
    trigger = DataTrigger.objects.get()
    DataTriggerFire.objects.create(trigger=trigger, reference="azureml://datastores/lake/paths/a", pending=True)
    DataTriggerFire.objects.create(trigger=trigger, reference="azureml:digits:9", error="pipeline has <no> version")
    page = client.get(f"/pipelines/{reader.pk}/data-triggers/").content.decode()
    assert ">starting</span>" in page and ">no run</span>" in page
    assert 'title="pipeline has &lt;no&gt; version"' in page
    listed = client.get(f"/api/v1/data-triggers/{trigger.pk}/").json()["fires"]
    assert [(f["pending"], f["error"]) for f in listed] == [(False, "pipeline has <no> version"), (True, "")]


def test_a_pipeline_without_a_data_input_says_so_instead_of_an_empty_form(client, bob, team, alice):
    plain = make_pipeline(team, alice, name="plain")
    client.force_login(bob)
    page = client.get(f"/pipelines/{plain.pk}/data-triggers/").content.decode()
    assert 'id="data-trigger-form"' not in page
    assert 'id="data-trigger-no-input"' in page and "plain has none" in page
    assert "beside this list" in page and "Add one with the form" not in page
