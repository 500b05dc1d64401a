"""The dispatcher against real HTTP receivers on 127.0.0.1: signatures, retries with backoff,
a hanging receiver that blocks nothing else, one send per delivery however many dispatchers, email."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from pipelines_ui.api import dispatcher, notifications
from pipelines_ui.api.models import Delivery, DeliveryAttempt, RunEvent
from runs.models import RunState, StepState
from tests.api.test_notifications import ALL_EVENTS, finish, webhook
from tests.runs.conftest import make_run


class Receiver:
    """An HTTP server in a thread; `answer(request_number, headers, body)` returns (status, text)."""

    def __init__(self, answer: Callable[[int, dict, bytes], tuple[int, str]] | None = None):
        self.requests: list[tuple[dict, bytes]] = []
        self.answer = answer or (lambda n, headers, body: (200, "ok"))
        self.got = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append((headers, body))
                receiver.got.set()
                status, text = receiver.answer(len(receiver.requests), headers, body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(text.encode())
                except OSError:
                    pass  # the dispatcher gave up waiting and closed the connection

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(answer=None) -> Receiver:
        made.append(Receiver(answer))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture(autouse=True)
def fast_settings(settings):
    settings.STEPWISE_WEBHOOK_BACKOFF_S = (10, 30, 120)
    settings.STEPWISE_WEBHOOK_TIMEOUT_S = 5
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def ended_run(pipeline, alice):
    run = finish(make_run(pipeline, alice))
    assert run.state == RunState.SUCCEEDED
    return run


def test_the_receiver_verifies_the_signature(pipeline, alice, receivers):
    receiver = receivers()
    created = webhook(pipeline, alice, url=receiver.url)
    run = ended_run(pipeline, alice)
    delivery = Delivery.objects.get()

    result = dispatcher.deliver_due()

    assert result.delivered == [delivery.pk]
    ((headers, body),) = receiver.requests
    assert notifications.verify_signature(created.secret, headers["x-stepwise-signature"], body)
    assert not notifications.verify_signature("whsec_wrong", headers["x-stepwise-signature"], body)
    assert headers["x-stepwise-event"] == "run.succeeded"
    assert headers["x-stepwise-delivery"] == str(delivery.pk)
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["run"]["id"] == run.pk
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status, delivery.last_response) == (
        "delivered",
        1,
        200,
        "ok",
    )
    assert delivery.claimed_by == "" and delivery.delivered_at is not None
    assert list(delivery.attempt_log.values_list("number", "status")) == [(1, 200)]


def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt(pipeline, alice, receivers):
    receiver = receivers(lambda n, h, b: (500, "<b>down</b>") if n <= 2 else (204, ""))
    webhook(pipeline, alice, url=receiver.url)
    ended_run(pipeline, alice)
    delivery = Delivery.objects.get()
    start = delivery.next_attempt_at

    assert dispatcher.deliver_due(start).retrying == [delivery.pk]
    delivery.refresh_from_db()
    assert delivery.state == "pending" and delivery.next_attempt_at == start + timedelta(seconds=10)
    assert (delivery.last_status, delivery.last_response, delivery.last_error) == (500, "<b>down</b>", "HTTP 500")

    assert dispatcher.deliver_due(start + timedelta(seconds=9)).claimed == 0  # not due yet
    assert dispatcher.deliver_due(start + timedelta(seconds=10)).retrying == [delivery.pk]
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == start + timedelta(seconds=40)

    assert dispatcher.deliver_due(start + timedelta(seconds=40)).delivered == [delivery.pk]
    assert len(receiver.requests) == 3
    # The same event, the same delivery id, each time: receivers dedupe on it.
    assert len({body for _h, body in receiver.requests}) == 1
    assert {h["x-stepwise-delivery"] for h, _b in receiver.requests} == {str(delivery.pk)}
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("delivered", 3)
    assert list(delivery.attempt_log.values_list("number", "status")) == [(1, 500), (2, 500), (3, 204)]


def test_after_the_last_attempt_the_delivery_fails_and_send_again_tries_once_more(pipeline, alice, receivers):
    receiver = receivers(lambda n, h, b: (503, "busy") if n <= 4 else (200, "ok"))
    webhook(pipeline, alice, url=receiver.url)
    ended_run(pipeline, alice)
    delivery = Delivery.objects.get()
    now = delivery.next_attempt_at
    for _ in range(4):  # backoff (10, 30, 120): four attempts in all
        dispatcher.deliver_due(now)
        delivery.refresh_from_db()
        now = delivery.next_attempt_at
    assert (delivery.state, delivery.attempts) == ("failed", 4)
    assert dispatcher.deliver_due(now + timedelta(days=1)).claimed == 0

    assert notifications.delivery_send_again(delivery=delivery, now=now)
    assert dispatcher.deliver_due(now).delivered == [delivery.pk]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("delivered", 5)
    assert not notifications.delivery_send_again(delivery=delivery)  # only a failed one


def test_a_hanging_receiver_delays_no_other_delivery(pipeline, alice, receivers):
    fast = receivers()
    # The slow receiver answers only once the fast one got its event: a dispatcher that sent one
    # after the other (slow first, as it is older) would wait out its timeout and fail this.
    slow = receivers(lambda n, h, b: (200, "late") if fast.got.wait(30) else (599, "fast never came"))
    webhook(pipeline, alice, url=slow.url)
    webhook(pipeline, alice, url=fast.url)
    ended_run(pipeline, alice)
    with_settings_timeout = dispatcher.timeout_s()
    assert with_settings_timeout == 5

    result = dispatcher.deliver_due()

    assert len(result.delivered) == 2
    assert len(fast.requests) == len(slow.requests) == 1
    assert set(Delivery.objects.values_list("last_response", flat=True)) == {"ok", "late"}


def test_a_receiver_hanging_past_the_timeout_is_retried_and_the_dispatcher_goes_on(
    pipeline, alice, receivers, settings
):
    settings.STEPWISE_WEBHOOK_TIMEOUT_S = 0.5
    release = threading.Event()
    hanging = receivers(lambda n, h, b: (200, "too late") if release.wait(30) else (200, ""))
    fast = receivers()
    webhook(pipeline, alice, url=hanging.url, events=[RunEvent.SUCCEEDED])
    ended_run(pipeline, alice)
    first = Delivery.objects.get()
    d = dispatcher.Dispatcher(workers=4)
    try:
        assert d.tick().claimed == 1  # in flight: the hanging receiver holds it
        hanging.got.wait(10)
        # Meanwhile a second notification's event comes in and goes out on the next tick.
        webhook(pipeline, alice, url=fast.url, events=[RunEvent.FAILED])
        finish(make_run(pipeline, alice), StepState.FAILED)
        assert d.tick().claimed == 1
        assert fast.got.wait(10)
        result = d.drain()
    finally:
        release.set()
        d.close()
    assert len(result.delivered) == 1 and result.retrying == [first.pk]
    first.refresh_from_db()
    assert first.state == "pending" and first.last_error == "no answer within 0.5 s"
    assert first.attempt_log.get().status is None


def test_a_claimed_delivery_is_not_sent_by_a_second_dispatcher(pipeline, alice, receivers):
    release = threading.Event()
    receiver = receivers(lambda n, h, b: (200, "ok") if release.wait(30) else (500, ""))
    webhook(pipeline, alice, url=receiver.url)
    ended_run(pipeline, alice)
    one, two = dispatcher.Dispatcher(workers=2), dispatcher.Dispatcher(workers=2)
    try:
        assert one.tick().claimed == 1
        assert receiver.got.wait(10)
        assert two.tick().claimed == 0
        release.set()
        assert len(one.drain().delivered) == 1
        assert two.tick().claimed == 0
        two.drain()
    finally:
        release.set()
        one.close()
        two.close()
    assert len(receiver.requests) == 1


def test_an_expired_claim_is_taken_over(pipeline, alice, receivers):
    receiver = receivers()
    webhook(pipeline, alice, url=receiver.url)
    ended_run(pipeline, alice)
    now = timezone.now()
    (claimed,) = dispatcher.claim_due(now=now, claimant="dead-dispatcher", limit=10)  # then it died
    assert dispatcher.deliver_due(now + timedelta(seconds=5)).claimed == 0
    assert dispatcher.deliver_due(claimed.claimed_until + timedelta(seconds=1)).delivered == [claimed.pk]
    # The dead dispatcher's late record changes nothing: its claim is gone.
    ok = dispatcher.Outcome(ok=False, error="late")
    assert dispatcher.record(delivery_id=claimed.pk, claimant="dead-dispatcher", outcome=ok, now=now) is None
    assert Delivery.objects.get().state == "delivered"


@pytest.mark.django_db(transaction=True)
def test_dispatchers_claiming_at_once_never_share_a_delivery(team, alice, receivers, settings):
    from tests.runs.conftest import make_pipeline

    pipeline = make_pipeline(team, alice)
    for _ in range(20):
        webhook(pipeline, alice)
    run = make_run(pipeline, alice)
    notifications.outbox_on_run_end(None, run=run, state=RunState.SUCCEEDED)
    assert Delivery.objects.count() == 20
    now = timezone.now()
    barrier = threading.Barrier(4)

    def claim(i: int) -> list[int]:
        from django.db import connection

        try:
            barrier.wait(10)
            return [d.pk for d in dispatcher.claim_due(now=now, claimant=f"d{i}", limit=20)]
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(claim, range(4)))
    every = [pk for c in claims for pk in c]
    assert len(every) == len(set(every)) == 20
    assert {c: Delivery.objects.filter(claimed_by=f"d{c}").count() for c in range(4)} == {
        c: len(claims[c]) for c in range(4)
    }


def test_a_redirect_is_not_followed(pipeline, alice, receivers):
    target = receivers()

    def redirect(n, h, b):
        return 307, ""

    source = receivers(redirect)
    webhook(pipeline, alice, url=source.url)
    ended_run(pipeline, alice)
    dispatcher.deliver_due()
    delivery = Delivery.objects.get()
    assert delivery.state == "pending" and delivery.last_status == 307
    assert "not followed" in delivery.last_error
    assert target.requests == []


def test_a_closed_port_is_a_failed_attempt(pipeline, alice, receivers):
    gone = receivers()
    url = gone.url
    gone.close()
    webhook(pipeline, alice, url=url)
    ended_run(pipeline, alice)
    dispatcher.deliver_due()
    delivery = Delivery.objects.get()
    assert delivery.state == "pending" and delivery.attempts == 1
    assert delivery.last_error.startswith("connection failed")


def test_an_email_notification_lands_in_the_outbox_with_the_run_link(pipeline, alice, settings):
    settings.STEPWISE_BASE_URL = "https://stepwise.example.com"
    notifications.notification_create(
        pipeline=pipeline, user=alice, kind="email", email="ops@example.com", events=ALL_EVENTS, allow_private=False
    )
    run = ended_run(pipeline, alice)
    assert dispatcher.deliver_due().delivered == [Delivery.objects.get().pk]
    (message,) = mail.outbox
    assert message.to == ["ops@example.com"]
    assert f"run #{run.pk}" in message.subject and "succeeded" in message.subject
    assert f"https://stepwise.example.com/runs/{run.pk}/" in message.body


def test_a_paused_notification_holds_its_deliveries(pipeline, alice, receivers):
    receiver = receivers()
    notification = webhook(pipeline, alice, url=receiver.url).notification
    ended_run(pipeline, alice)
    notifications.notification_set_enabled(notification=notification, enabled=False)
    assert dispatcher.deliver_due().claimed == 0
    notifications.notification_set_enabled(notification=notification, enabled=True)
    assert len(dispatcher.deliver_due().delivered) == 1
    assert DeliveryAttempt.objects.count() == 1
