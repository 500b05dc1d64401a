"""`make run` ends with the first user's credentials, until that user has signed in."""

from __future__ import annotations

import stat

import pytest
from django.core.management import call_command
from django.utils import timezone

from pipelines_ui.first_login import first_login_banner

pytestmark = pytest.mark.django_db


@pytest.fixture
def var(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    monkeypatch.delenv("STEPWISE_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("STEPWISE_ADMIN_USER", raising=False)
    return tmp_path


def test_serve_shows_the_first_users_password_last_until_they_sign_in(var, tmp_path):
    call_command("stepwise_setup", examples=str(tmp_path / "none"))
    saved = var / "first-login.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600

    banner = first_login_banner(url="http://127.0.0.1:8000/")
    lines = banner.splitlines()
    assert "Sign in at http://127.0.0.1:8000/" in banner and "user:     admin" in banner
    password = next(line for line in lines if "password:" in line).split("password:")[1].strip(" |")
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password(password)

    admin.last_login = timezone.now()
    admin.save()
    assert first_login_banner(url="http://127.0.0.1:8000/") is None
    assert not saved.exists()


def test_a_password_from_the_environment_is_never_stored(var, tmp_path, monkeypatch):
    monkeypatch.setenv("STEPWISE_ADMIN_PASSWORD", "s3cret-Pass-for-ops")
    call_command("stepwise_setup", examples=str(tmp_path / "none"))
    assert not (var / "first-login.json").exists()
    assert first_login_banner(url="http://x/") is None
