"""Datastore pages: admins add them (credentials never shown), members browse, editors register a path."""

from __future__ import annotations

import pytest
from django.urls import reverse

from pipelines_ui.models import Role
from runs import data_assets
from runs.models import Datastore, DataVersion
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def lake(team, tmp_path, settings):
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path]
    root = tmp_path / "lake"
    (root / "raw" / "deep").mkdir(parents=True)
    (root / "raw" / "a.csv").write_text("x\n1\n")
    (root / "raw" / "deep" / "b.csv").write_text("x\n2\n")
    (root / "<b>odd.txt").write_text("t")
    return data_assets.datastore_create(team=team, name="lake", kind="local", root=str(root))


def test_admins_add_a_datastore_and_its_keys_are_never_shown(client, alice, team, tmp_path, settings):
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path]
    client.force_login(alice)
    response = client.post(
        reverse("datastore_create"),
        {
            "team": team.pk,
            "name": "bucket",
            "kind": "s3",
            "root": "s3://bucket/prefix",
            "endpoint_url": "http://127.0.0.1:9",
            "access_key": "AKIA-VISIBLE-NEVER",
            "secret_key": "super-secret-value",
        },
    )
    store = Datastore.objects.get(name="bucket")
    assert response.status_code == 302 and store.options == {"endpoint_url": "http://127.0.0.1:9"}
    assert "super-secret-value" not in str(store.credentials)
    for url in (reverse("datastore_detail", args=[store.pk]), reverse("datastore_list"), reverse("datastore_create")):
        response = client.get(url)
        page = response.content.decode()
        assert response.status_code == 200
        assert "super-secret-value" not in page and "AKIA-VISIBLE-NEVER" not in page


def test_a_local_root_outside_the_allowed_folders_is_refused(client, alice, team, tmp_path, settings):
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path]
    client.force_login(alice)
    page = client.post(
        reverse("datastore_create"), {"team": team.pk, "name": "etc", "kind": "local", "root": "/etc"}
    ).content.decode()
    assert "must be a folder inside" in page and not Datastore.objects.exists()


def test_editors_cannot_add_datastores(client, bob):
    client.force_login(bob)
    assert client.get(reverse("datastore_create")).status_code == 403


def test_members_browse_escaped_and_within_the_root(client, team, lake):
    vera = make_user("vera", team, Role.VIEWER)
    client.force_login(vera)
    page = client.get(reverse("datastore_detail", args=[lake.pk])).content.decode()
    assert "raw/" in page and "&lt;b&gt;odd.txt" in page and "<b>odd" not in page and "Register</button>" not in page
    page = client.get(reverse("datastore_detail", args=[lake.pk]), {"path": "raw"}).content.decode()
    assert "deep/" in page and "a.csv" in page
    page = client.get(reverse("datastore_detail", args=[lake.pk]), {"path": "../.."}).content.decode()
    assert "leaves the datastore" in page


def test_outsiders_get_404(client, charlie, lake):
    client.force_login(charlie)
    assert client.get(reverse("datastore_detail", args=[lake.pk])).status_code == 404
    assert client.post(reverse("datastore_register", args=[lake.pk]), {"path": "raw"}).status_code == 404


def test_editors_register_a_path_as_data(client, bob, lake):
    client.force_login(bob)
    response = client.post(
        reverse("datastore_register", args=[lake.pk]), {"path": "raw", "type": "uri_folder", "name": "raw-data"}
    )
    version = DataVersion.objects.get(asset__name="raw-data")
    assert response.status_code == 302 and version.file_count == 2 and version.datastore == lake
    bad = client.post(reverse("datastore_register", args=[lake.pk]), {"path": "raw/a.csv", "type": "uri_folder"})
    assert bad.status_code == 302 and DataVersion.objects.count() == 1
    assert bad["Location"] == reverse("datastore_detail", args=[lake.pk]) + "?path=raw"
    # The path is the user's text: back to its folder, quoted (a newline was a 500).
    odd = client.post(reverse("datastore_register", args=[lake.pk]), {"path": "r&w\nx/a #b", "type": "uri_folder"})
    assert odd.status_code == 302 and odd["Location"].endswith("?path=r%26w%0Ax")
    assert client.get(odd["Location"]).status_code == 200  # a folder that does not exist, said on the page


def test_viewers_cannot_register(client, team, lake):
    vera = make_user("vera", team, Role.VIEWER)
    client.force_login(vera)
    assert client.post(reverse("datastore_register", args=[lake.pk]), {"path": "raw"}).status_code == 403
    assert not DataVersion.objects.exists()
