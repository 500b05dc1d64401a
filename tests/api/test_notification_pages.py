"""The Notifications tab: create (secret shown once), refuse bad input, the deliveries log escaped."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from pipelines_ui.api import notifications
from pipelines_ui.api.models import Delivery, DeliveryAttempt, Notification
from tests.runs.conftest import make_run


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def page(pipeline) -> str:
    return reverse("pipeline_notifications", args=[pipeline.pk])


def test_an_admin_creates_a_webhook_and_sees_its_secret_once(alice, pipeline, page):
    client = client_for(alice)
    response = client.post(
        page, {"kind": "webhook", "url": "http://10.0.0.5:8080/hook", "events": ["run.failed", "run.canceled"]}
    )
    assert response.status_code == 200
    notification = Notification.objects.get()
    secret = notifications.notification_secret(notification)
    html = response.content.decode()
    assert secret in html and "hmac.compare_digest" in html
    assert (notification.url, notification.events, notification.enabled) == (
        "http://10.0.0.5:8080/hook",
        ["run.failed", "run.canceled"],
        False,
    ), "an unticked checkbox is a paused notification"
    again = client.get(page).content.decode()
    assert secret not in again and "http://10.0.0.5:8080/hook" in again


def test_an_email_notification(alice, pipeline, page):
    response = client_for(alice).post(
        page, {"kind": "email", "email": "ops@example.com", "events": ["run.succeeded"], "enabled": "on"}
    )
    assert response.status_code == 200
    n = Notification.objects.get()
    assert (n.kind, n.email, n.url, n.secret, n.enabled) == ("email", "ops@example.com", "", "", True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "webhook", "url": "ftp://x.example.com/", "events": ["run.failed"]}, "http:// or https://"),
        ({"kind": "webhook", "url": "https://x.example.com/"}, "Choose at least one event"),
        ({"kind": "email", "email": "nope", "events": ["run.failed"]}, "is not an email address"),
        ({"kind": "sms", "events": ["run.failed"]}, "Select a valid choice"),
    ],
)
def test_bad_input_is_named_and_nothing_is_saved(alice, page, data, message):
    response = client_for(alice).post(page, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Notification.objects.exists()


def test_members_see_notifications_and_deliveries_but_only_admins_get_forms(alice, bob, pipeline, page):
    created = notifications.notification_create(
        pipeline=pipeline,
        user=alice,
        kind="webhook",
        url="https://h.example.com/",
        events=["run.failed"],
        allow_private=True,
    )
    run = make_run(pipeline, alice)
    delivery = Delivery.objects.create(
        notification=created.notification,
        run=run,
        event="run.failed",
        payload={},
        state="failed",
        attempts=1,
        last_status=500,
        last_response="<script>alert(1)</script>",
        next_attempt_at=timezone.now(),
    )
    DeliveryAttempt.objects.create(delivery=delivery, number=1, status=500, response="<b>attempt body</b>")
    html = client_for(bob).get(page).content.decode()
    assert "https://h.example.com/" in html and f"#{run.pk}" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;attempt body&lt;/b&gt;" in html
    assert "notification-form" not in html and "Send again" not in html and "Pause" not in html
    admin_html = client_for(alice).get(page).content.decode()
    assert "notification-form" in admin_html and "Send again" in admin_html


def test_send_again_pause_and_delete(alice, pipeline):
    created = notifications.notification_create(
        pipeline=pipeline,
        user=alice,
        kind="webhook",
        url="https://h.example.com/",
        events=["run.failed"],
        allow_private=True,
    )
    n = created.notification
    d = Delivery.objects.create(
        notification=n,
        run=make_run(pipeline, alice),
        event="run.failed",
        payload={},
        state="failed",
        next_attempt_at=timezone.now(),
    )
    client = client_for(alice)
    assert client.post(reverse("delivery_send_again", args=[d.pk])).status_code == 302
    d.refresh_from_db()
    assert d.state == "pending"
    client.post(reverse("notification_enabled", args=[n.pk]), {"enabled": "0"})
    n.refresh_from_db()
    assert not n.enabled
    client.post(reverse("notification_delete", args=[n.pk]))
    assert not Notification.objects.exists() and not Delivery.objects.exists()


def test_an_editor_may_not_create_and_an_outsider_sees_nothing(bob, charlie, pipeline, page):
    data = {"kind": "webhook", "url": "https://h.example.com/", "events": ["run.failed"]}
    assert client_for(bob).post(page, data).status_code == 403
    assert client_for(charlie).get(page).status_code == 404
    assert not Notification.objects.exists()
