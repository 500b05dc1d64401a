"""The settings module as an operator meets it: environment variables in, a fresh process each time."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "DEBUG": "false",
    "ALLOWED_HOSTS": "stepwise.example.com",
    "STEPWISE_HTTPS": "true",
}


def manage(tmp_path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """manage.py with only `env` set (nothing of the test process's own configuration)."""
    clean = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "STEPWISE_VAR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "pipelines_ui.settings",
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_deploy(tmp_path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return manage(tmp_path, env, "check", "--deploy", "--fail-level", "WARNING")


def test_check_deploy_passes_with_the_production_environment(tmp_path):
    result = check_deploy(tmp_path, PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        ({"SECRET_KEY": "change-me"}, "security.W009"),
        ({"SECRET_KEY": "django-insecure-" + "x" * 60}, "security.W009"),
        ({"DEBUG": "true"}, "security.W018"),
        ({"STEPWISE_HTTPS": "false"}, "security.W012"),
        ({"SESSION_COOKIE_SECURE": "false"}, "security.W012"),
        ({"CSRF_COOKIE_SECURE": "false"}, "security.W016"),
        ({"SECURE_SSL_REDIRECT": "false"}, "security.W008"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SECURE_HSTS_INCLUDE_SUBDOMAINS": "false"}, "security.W005"),
        ({"SECURE_HSTS_PRELOAD": "false"}, "security.W021"),
    ],
)
def test_check_deploy_fails_without_each_production_setting(tmp_path, change, warning):
    result = check_deploy(tmp_path, {**PRODUCTION, **change})
    assert result.returncode != 0
    assert warning in result.stderr


def test_a_malformed_value_stops_the_settings_from_loading(tmp_path):
    result = check_deploy(tmp_path, {**PRODUCTION, "STEPWISE_HTTPS": "sure"})
    assert result.returncode != 0
    assert "STEPWISE_HTTPS='sure' is not a boolean" in result.stderr


# A login page fetched in a process configured only by the environment.
PROBE = """
import json
import django
django.setup()
from django.test import Client

def fetch(**headers):
    response = Client().get("/accounts/login/", HTTP_HOST=HOST, **headers)
    cookie = response.cookies.get("csrftoken")
    return {
        "status": response.status_code,
        "location": response.get("Location", ""),
        "hsts": response.get("Strict-Transport-Security", ""),
        "secure_cookie": bool(cookie and cookie["secure"]),
    }

print(json.dumps({"plain": fetch(), "proxied": fetch(HTTP_X_FORWARDED_PROTO="https")}))
"""


def probe(tmp_path, env: dict[str, str], host: str) -> dict:
    result = manage(tmp_path, env, "shell", "-c", f"HOST = {host!r}\n{PROBE}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_development_defaults_serve_plain_http(tmp_path):
    # What `make run` gets: no HTTPS redirect, cookies a browser sends over http://127.0.0.1.
    answers = probe(tmp_path, {}, "127.0.0.1:8000")
    assert answers["plain"] == {"status": 200, "location": "", "hsts": "", "secure_cookie": False}


def test_production_behind_a_tls_proxy(tmp_path):
    env = {**PRODUCTION, "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}
    answers = probe(tmp_path, env, "stepwise.example.com")
    # Plain http is sent to https; what the proxy marks as https is served, with HSTS and secure cookies.
    assert answers["plain"]["status"] == 301
    assert answers["plain"]["location"] == "https://stepwise.example.com/accounts/login/"
    assert answers["proxied"]["status"] == 200
    assert answers["proxied"]["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert answers["proxied"]["secure_cookie"] is True


def test_without_the_proxy_header_setting_a_forwarded_proto_is_not_trusted(tmp_path):
    answers = probe(tmp_path, PRODUCTION, "stepwise.example.com")
    assert answers["proxied"]["status"] == 301
