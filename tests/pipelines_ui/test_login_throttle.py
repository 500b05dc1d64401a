"""Sign-in throttling (django-axes): a username is locked out from an address after a few failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

HERE, ELSEWHERE = "203.0.113.7", "198.51.100.9"


def sign_in(client, username: str, password: str, ip: str = HERE):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def signed_in_as(client) -> str | None:
    response = client.get(reverse("pipeline_list"))
    return response.context["user"].username if response.status_code == 200 else None


@pytest.mark.django_db
def test_fifteen_wrong_passwords_then_the_right_one_does_not_sign_in(client, alice):
    statuses = [sign_in(client, "alice", "wrong").status_code for _ in range(15)]
    # The form again with its error for the first failures, then the lockout for every other one.
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429] * (16 - settings.AXES_FAILURE_LIMIT)
    response = sign_in(client, "alice", "pw-alice")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert signed_in_as(client) is None
    page = " ".join(response.content.decode().split())
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    assert "Too many failed sign-ins" in page and f"locked for {minutes} minutes" in page
    # Still the sign-in form, with the username kept.
    assert 'name="password"' in page and 'value="alice"' in page


@pytest.mark.django_db
def test_the_lockout_starts_at_the_failure_limit(client, alice):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "alice", "wrong").status_code == 200
    assert sign_in(client, "alice", "wrong").status_code == 429
    assert sign_in(client, "alice", "pw-alice").status_code == 429


@pytest.mark.django_db
def test_the_lockout_holds_one_username_from_one_address(client, alice, bob):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "alice", "wrong")
    # Another user from the same address, and the same user from another address, sign in.
    assert sign_in(client, "bob", "pw-bob").status_code == 302
    client.logout()
    assert sign_in(client, "alice", "pw-alice", ip=ELSEWHERE).status_code == 302
    assert signed_in_as(client) == "alice"


@pytest.mark.django_db
def test_the_lockout_ends_after_the_cool_off(client, alice):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "alice", "pw-alice").status_code == 429
    # As if the cool-off had passed since the last failure.
    past = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=past)
    assert sign_in(client, "alice", "pw-alice").status_code == 302


@pytest.mark.django_db
def test_a_successful_sign_in_clears_earlier_failures(client, alice):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "alice", "pw-alice").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "alice", "wrong").status_code == 200


@pytest.mark.django_db
def test_the_admin_sign_in_is_throttled_too(client, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR=HERE)
    response = client.post("/admin/login/", {"username": "alice", "password": "pw-alice"}, REMOTE_ADDR=HERE)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_user_name_longer_than_any_account_s_is_a_wrong_sign_in_not_a_500(client, alice):
    # django-axes stored it in a 255-character column: PostgreSQL refused it (a 500).
    response = sign_in(client, "a" * 300, "whatever")
    assert response.status_code == 200 and "Please enter a correct" in response.content.decode()
    assert not AccessAttempt.objects.exists()
    assert sign_in(client, "alice", "pw-alice").status_code == 302


@pytest.mark.django_db
def test_the_admin_s_sign_in_records_a_long_user_name_cut_to_axes_column(client):
    # The admin has its own form: django-axes records its attempts, cut to 255 characters.
    response = client.post("/admin/login/", {"username": "b" * 300, "password": "x"}, REMOTE_ADDR=HERE)
    assert response.status_code == 200
    assert [len(a.username) for a in AccessAttempt.objects.all()] == [255]
