"""The list pages' search boxes take any text: NUL (which PostgreSQL refuses in a query) and text
longer than any name (a LIKE pattern SQLite refuses) find nothing, without an error."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.runs.conftest import make_pipeline

pytestmark = pytest.mark.django_db

PAGES = ["pipeline_list", "data_list", "model_list", "template_gallery", "component_list"]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("query", ["q=de%00mo", "q=" + "x" * 100_000, "tag=%00"])
def test_any_search_text_is_answered(client, alice, team, page, query):
    make_pipeline(team, alice, name="demo")
    client.force_login(alice)
    assert client.get(f"{reverse(page)}?{query}").status_code == 200
