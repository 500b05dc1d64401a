"""Error pages keep the site's navigation and say what to do next; the site has an icon."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import path

from pipelines_ui import urls as site_urls
from tests.runs.conftest import make_pipeline

pytestmark = pytest.mark.django_db


def boom(request):
    raise RuntimeError("a bug")


def refuse(request):
    raise PermissionDenied("Viewers cannot start runs")


# The site's own routes too: the error pages' navigation links to them.
urlpatterns = [path("boom/", boom), path("refuse/", refuse), *site_urls.urlpatterns]


def test_a_404_has_the_navigation_and_a_way_on(client, alice):
    client.force_login(alice)
    response = client.get("/no/such/page/")
    html = response.content.decode()
    assert response.status_code == 404
    assert 'class="navbar' in html and 'href="/runs/"' in html and "Nothing here" in html


def test_another_teams_run_is_a_404_page_with_navigation(client, charlie, team, alice):
    run_of_alice = make_pipeline(team, alice)
    client.force_login(charlie)
    html = client.get(f"/pipelines/{run_of_alice.pk}/").content.decode()
    assert 'class="navbar' in html and "belongs to a team you are not in" in html


def test_a_403_names_the_reason(client, alice, settings):
    settings.ROOT_URLCONF = __name__
    client.force_login(alice)
    response = client.get("/refuse/")
    assert response.status_code == 403
    html = response.content.decode()
    assert 'class="navbar' in html and "Viewers cannot start runs" in html


def test_a_500_is_our_page(alice, settings):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    response = client.get("/boom/")
    assert response.status_code == 500
    html = response.content.decode()
    assert 'class="navbar' in html and "Something went wrong on our side" in html and "a bug" not in html


def test_every_page_names_an_icon(client):
    html = client.get("/accounts/login/").content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in html
    assert client.get("/static/favicon.svg").status_code == 200
