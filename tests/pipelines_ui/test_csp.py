"""A strict Content-Security-Policy on every response, and no inline code for it to block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from tests.runs.conftest import make_pipeline, make_run

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

EXPECTED = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "connect-src": {"'self'", "ws://testserver", "wss://testserver"},
    "frame-ancestors": {"'none'"},
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
    "form-action": {"'self'"},
}


def policy(response) -> dict[str, set[str]]:
    header = response["Content-Security-Policy"]
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: set(values) for name, *values in directives}


@pytest.fixture
def pages(db, alice, team) -> list[str]:
    pipeline = make_pipeline(team, alice)
    run = make_run(pipeline, alice)
    return [
        reverse("pipeline_list"),
        reverse("pipeline_create"),
        reverse("pipeline_import"),
        reverse("pipeline_detail", args=[pipeline.pk]),
        reverse("step_create", args=[pipeline.pk]),
        reverse("step_edit", args=[pipeline.pk, "train"]),
        reverse("pipeline_versions", args=[pipeline.pk]),
        reverse("version_detail", args=[pipeline.pk, 1]),
        reverse("run_create", args=[pipeline.pk]),
        reverse("run_list"),
        reverse("run_detail", args=[run.pk]),
        reverse("run_step", args=[run.pk, "prep"]),
        reverse("run_parts", args=[run.pk]),
        reverse("step_log", args=[run.pk, "prep"]),
        reverse("run_detail", args=[987654]),  # a 404
    ]


def test_every_page_carries_the_strict_policy(client, alice, pages):
    client.force_login(alice)
    for url in pages:
        response = client.get(url)
        assert response.status_code in (200, 404), url
        assert policy(response) == EXPECTED, url


def test_the_sign_in_page_a_redirect_and_a_static_file_carry_it_too(client):
    assert policy(client.get(reverse("login"))) == EXPECTED
    assert policy(client.get(reverse("pipeline_list"))) == EXPECTED  # the redirect to sign in
    assert policy(client.get("/static/js/run.js")) == EXPECTED


def test_the_websocket_origin_is_the_requests_own_host(client, alice, settings):
    settings.ALLOWED_HOSTS = ["stepwise.example.org"]
    client.force_login(alice)
    response = client.get(reverse("pipeline_list"), HTTP_HOST="stepwise.example.org")
    assert policy(response)["connect-src"] == {"'self'", "ws://stepwise.example.org", "wss://stepwise.example.org"}


def test_only_the_rq_dashboard_gets_inline_code(client, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    dashboard = policy(client.get("/admin/django_rq/"))
    assert "'unsafe-inline'" in dashboard["script-src"] and "'unsafe-inline'" in dashboard["style-src"]
    assert policy(client.get("/admin/")) == EXPECTED


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "a <style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an inline event handler"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_template_holds_code_the_policy_would_block(template):
    text = template.read_text()
    found = [what for pattern, what in INLINE if pattern.search(text)]
    assert not found, f"{template.relative_to(TEMPLATES)} has {', '.join(found)}: move it to static/"
