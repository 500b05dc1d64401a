"""Notifications: creating them, the signature, the payload, and the outbox rows a run's end writes."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pipelines_ui.api import notifications
from pipelines_ui.api.models import Delivery, Notification, RunEvent
from runs import orchestrator, services
from runs.models import Run, RunState, StepState
from tests.runs.conftest import make_run, set_step

ALL_EVENTS = [RunEvent.SUCCEEDED, RunEvent.FAILED, RunEvent.CANCELED]


def webhook(pipeline, user, *, events=ALL_EVENTS, url="https://hooks.example.com/stepwise", **kw):
    return notifications.notification_create(
        pipeline=pipeline, user=user, kind="webhook", url=url, events=list(events), allow_private=True, **kw
    )


def finish(run: Run, state: str = StepState.SUCCEEDED) -> Run:
    """End the run through the state machine: every step in `state` (the rest skipped by the orchestrator)."""
    set_step(run, "prep", state=state, attempt=1)
    if state == StepState.SUCCEEDED:
        for name in ("train", "report"):
            set_step(run, name, state=StepState.SUCCEEDED, attempt=1)
    orchestrator.run_advance(run.pk)
    run.refresh_from_db()
    return run


# ---- signature ----------------------------------------------------------------------------


def test_signature_round_trip():
    body = b'{"event":"run.succeeded"}'
    header = notifications.sign("whsec_abc", body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert notifications.verify_signature("whsec_abc", header, body, now=1_700_000_010)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda h, b, s: (h, b + b" ", s), id="body tampered"),
        pytest.param(lambda h, b, s: (h, b, "whsec_other"), id="wrong secret"),
        pytest.param(lambda h, b, s: (h.replace("t=1700000000", "t=1700000001"), b, s), id="timestamp changed"),
        pytest.param(lambda h, b, s: ("v1=" + h.split("v1=")[1], b, s), id="no timestamp"),
        pytest.param(lambda h, b, s: ("garbage", b, s), id="garbage"),
    ],
)
def test_signature_refuses_tampering(change):
    body = b'{"event":"run.failed"}'
    header = notifications.sign("whsec_abc", body, timestamp=1_700_000_000)
    header, body, secret = change(header, body, "whsec_abc")
    assert not notifications.verify_signature(secret, header, body, now=1_700_000_000)


def test_signature_refuses_a_replay_outside_the_tolerance():
    body = b"{}"
    header = notifications.sign("s", body, timestamp=1_700_000_000)
    assert notifications.verify_signature("s", header, body, tolerance_s=300, now=1_700_000_300)
    assert not notifications.verify_signature("s", header, body, tolerance_s=300, now=1_700_000_301)


# ---- create -------------------------------------------------------------------------------


def test_webhook_secret_is_stored_encrypted_and_shown_once(pipeline, alice):
    created = webhook(pipeline, alice)
    stored = Notification.objects.get(pk=created.notification.pk)
    assert created.secret.startswith("whsec_")
    assert created.secret not in stored.secret
    assert notifications.notification_secret(stored) == created.secret


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https://user:pw@example.com/", "no user name or password"),
        ("https://", "not a valid"),
        ("http://[::1", "not a valid"),  # urlsplit's ValueError: was a 500
        ("", "Give the address"),
    ],
)
def test_webhook_url_is_checked(pipeline, alice, url, message):
    with pytest.raises(notifications.NotificationError, match=message):
        webhook(pipeline, alice, url=url)
    assert not Notification.objects.exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/hook", "http://10.1.2.3/hook", "http://localhost/hook"])
def test_private_addresses_only_for_those_allowed(pipeline, alice, url):
    with pytest.raises(notifications.NotificationError, match="private or loopback"):
        notifications.notification_create(
            pipeline=pipeline, user=alice, kind="webhook", url=url, events=ALL_EVENTS, allow_private=False
        )
    assert webhook(pipeline, alice, url=url).notification.url == url


def test_events_and_email_are_checked(pipeline, alice):
    with pytest.raises(notifications.NotificationError, match="at least one event"):
        webhook(pipeline, alice, events=[])
    with pytest.raises(notifications.NotificationError, match="Unknown event"):
        webhook(pipeline, alice, events=["run.started"])
    with pytest.raises(notifications.NotificationError, match="not an email address"):
        notifications.notification_create(
            pipeline=pipeline, user=alice, kind="email", email="nobody", events=ALL_EVENTS, allow_private=False
        )
    assert not Notification.objects.exists()


# ---- the outbox ---------------------------------------------------------------------------


def test_a_succeeded_run_writes_one_delivery_per_notification_wanting_it(pipeline, alice):
    wants = webhook(pipeline, alice).notification
    only_failures = webhook(pipeline, alice, events=[RunEvent.FAILED]).notification
    paused = webhook(pipeline, alice, enabled=False).notification
    run = finish(make_run(pipeline, alice))
    assert run.state == RunState.SUCCEEDED
    delivery = Delivery.objects.get()
    assert (delivery.notification, delivery.run, delivery.event) == (wants, run, RunEvent.SUCCEEDED)
    assert delivery.state == Delivery.State.PENDING and delivery.attempts == 0
    assert not Delivery.objects.filter(notification__in=[only_failures, paused]).exists()


def test_a_failed_run_and_a_canceled_run_write_their_events(pipeline, alice):
    webhook(pipeline, alice)
    failed = finish(make_run(pipeline, alice), StepState.FAILED)
    assert failed.state == RunState.FAILED
    canceled = make_run(pipeline, alice)
    services.run_cancel(run=canceled)
    canceled.refresh_from_db()
    assert canceled.state == RunState.CANCELED
    assert set(Delivery.objects.values_list("run_id", "event")) == {
        (failed.pk, RunEvent.FAILED),
        (canceled.pk, RunEvent.CANCELED),
    }


def test_steps_ending_write_nothing_and_a_replayed_end_writes_no_second_row(pipeline, alice):
    webhook(pipeline, alice)
    run = make_run(pipeline, alice)
    set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1)
    orchestrator.run_advance(run.pk)  # a step ended; the run goes on
    assert not Delivery.objects.exists()
    run = finish(run)
    orchestrator.run_advance(run.pk)  # a late duplicate event: the run is already over
    notifications.outbox_on_run_end(None, run=run, state=run.state)  # even a replay of the signal itself
    assert Delivery.objects.count() == 1


def test_the_outbox_commits_with_the_runs_end_or_not_at_all(pipeline, alice):
    from django.db import transaction

    webhook(pipeline, alice)
    run = make_run(pipeline, alice)
    set_step(run, "prep", state=StepState.FAILED, attempt=1)
    with pytest.raises(RuntimeError), transaction.atomic():
        orchestrator.run_advance(run.pk)
        assert Delivery.objects.count() == 1
        raise RuntimeError("the process dies before commit")
    run.refresh_from_db()
    assert run.state != RunState.FAILED
    assert not Delivery.objects.exists()


def test_a_run_end_costs_one_query_when_the_pipeline_has_no_notification(pipeline, alice):
    run = make_run(pipeline, alice)
    with CaptureQueriesContext(connection) as queries:
        notifications.outbox_on_run_end(None, run=run, state=RunState.SUCCEEDED)
    assert len(queries) == 1


def test_payload_has_the_run_and_no_inputs(pipeline, alice, settings):
    settings.STEPWISE_BASE_URL = "https://stepwise.example.com/"
    webhook(pipeline, alice)
    run = make_run(pipeline, alice, note="a-private-note-value")
    Run.objects.filter(pk=run.pk).update(secrets={"token": "gAAAA-encrypted"})
    run = finish(run)
    payload = Delivery.objects.get().payload
    assert payload["event"] == "run.succeeded"
    assert payload["run"]["id"] == run.pk
    assert payload["run"]["state"] == "succeeded"
    assert payload["run"]["version"] == pipeline.latest_version.number
    assert payload["run"]["url"] == f"https://stepwise.example.com/runs/{run.pk}/"
    assert payload["run"]["finished_at"] == run.finished_at.isoformat()
    assert payload["pipeline"] == {"id": pipeline.pk, "name": pipeline.name}
    assert payload["team"] == {"id": pipeline.team_id, "name": pipeline.team.name}
    text = json.dumps(payload)
    assert "a-private-note-value" not in text and "gAAAA" not in text and "inputs" not in text


# ---- the receiver's code as documented ----------------------------------------------------


def _documented_verify():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)
    return namespace["verify"]


def _page_verify(secret: str):
    from pipelines_ui.api.notification_pages import verify_snippet

    namespace: dict = {}
    exec(compile(verify_snippet(secret), "snippet", "exec"), namespace)
    return lambda header, body: namespace["verify"](header, body)


def test_the_documented_and_shown_snippets_agree_with_the_signer():
    docs_verify = _documented_verify()
    body = b'{"event":"run.succeeded","run":{"id":1}}'
    header = notifications.sign("whsec_d-o_c", body)
    assert docs_verify("whsec_d-o_c", header, body)
    assert _page_verify("whsec_d-o_c")(header, body)
    assert not docs_verify("whsec_d-o_c", header, body + b"x")
    assert not _page_verify("whsec_d-o_c")(header, body.replace(b"1", b"2"))
    stale = notifications.sign("whsec_d-o_c", body, timestamp=1_000_000_000)
    assert not docs_verify("whsec_d-o_c", stale, body) and not _page_verify("whsec_d-o_c")(stale, body)
    assert not docs_verify("whsec_d-o_c", "t=abc,v1=00", body)
