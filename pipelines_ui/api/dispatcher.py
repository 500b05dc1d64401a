"""Sends the notification outbox: due deliveries are claimed, sent from a thread pool, recorded.

A claim is a compare-and-set UPDATE (pending, due, and unclaimed or its claim expired), so two
dispatchers never send one delivery at once; a dispatcher that dies mid-send leaves a claim that
expires, and the delivery is sent again (receivers dedupe on `X-Stepwise-Delivery`).

Only the network waits in the pool's threads; every database write happens in the dispatcher's
own thread as sends complete, so a slow or dead receiver holds one pool thread for at most the
timeout and blocks nothing else, and `tick()` never waits for a send.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from pipelines_ui.api import notifications
from pipelines_ui.api.models import Delivery, DeliveryAttempt, Notification
from runs.secrets import SecretError

log = logging.getLogger(__name__)

# Seconds before attempt 2, 3, ...; after the last, the delivery is failed (1 + len attempts in all).
DEFAULT_BACKOFF_S = (10, 30, 120, 600, 3600, 3 * 3600, 6 * 3600)
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_WORKERS = 8
RESPONSE_KEPT = 2000
RESPONSE_READ = 64 * 1024
USER_AGENT = "Stepwise-Webhook/1"


def backoff_s() -> tuple[float, ...]:
    return tuple(getattr(settings, "STEPWISE_WEBHOOK_BACKOFF_S", DEFAULT_BACKOFF_S))


def max_attempts() -> int:
    return len(backoff_s()) + 1


def timeout_s() -> float:
    return float(getattr(settings, "STEPWISE_WEBHOOK_TIMEOUT_S", DEFAULT_TIMEOUT_S))


@dataclass(frozen=True)
class Outgoing:
    """Everything a send needs, read from the database before it leaves for a pool thread."""

    delivery_id: int
    kind: str
    event: str
    url: str
    email: str
    secret: str
    body: bytes
    subject: str = ""
    text: str = ""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    response: str = ""
    error: str = ""
    duration_ms: int = 0


@dataclass
class TickResult:
    claimed: int = 0
    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"claimed {self.claimed}, delivered {len(self.delivered)}, "
            f"retrying {len(self.retrying)}, failed {len(self.failed)}"
        )


# ---- sending (pool threads: no database) --------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a 3xx reaches the caller as an HTTPError: a failed attempt, never followed


_opener = urllib.request.build_opener(_NoRedirect)


def _excerpt(raw: bytes) -> str:
    return raw[:RESPONSE_KEPT].decode("utf-8", errors="replace")


def send_webhook(out: Outgoing, timeout: float) -> Outcome:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        notifications.SIGNATURE_HEADER: notifications.sign(out.secret, out.body),
        notifications.EVENT_HEADER: out.event,
        notifications.DELIVERY_HEADER: str(out.delivery_id),
    }
    request = urllib.request.Request(out.url, data=out.body, headers=headers, method="POST")
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with _opener.open(request, timeout=timeout) as response:
            raw = response.read(RESPONSE_READ)
            ok = 200 <= response.status < 300
            return Outcome(ok=ok, status=response.status, response=_excerpt(raw), duration_ms=took())
    except urllib.error.HTTPError as exc:
        try:
            raw = exc.read(RESPONSE_READ)
        except Exception:  # the error body is a courtesy; its status is what counts
            raw = b""
        error = f"HTTP {exc.code}"
        if 300 <= exc.code < 400:
            error += f": redirect to {exc.headers.get('Location', '?')} not followed"
        return Outcome(ok=False, status=exc.code, response=_excerpt(raw), error=error, duration_ms=took())
    except TimeoutError:
        return Outcome(ok=False, error=f"no answer within {timeout:g} s", duration_ms=took())
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Outcome(ok=False, error=f"no answer within {timeout:g} s", duration_ms=took())
        return Outcome(ok=False, error=f"connection failed: {reason}", duration_ms=took())
    except (OSError, ValueError) as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}", duration_ms=took())


def send_email(out: Outgoing, timeout: float) -> Outcome:
    started = time.monotonic()
    try:
        send_mail(out.subject, out.text, None, [out.email], fail_silently=False)
    except Exception as exc:  # SMTP errors come in many classes; each is a failed attempt
        return Outcome(
            ok=False, error=f"{type(exc).__name__}: {exc}", duration_ms=int((time.monotonic() - started) * 1000)
        )
    return Outcome(ok=True, response=f"sent to {out.email}", duration_ms=int((time.monotonic() - started) * 1000))


def send(out: Outgoing, timeout: float) -> Outcome:
    if out.kind == Notification.Kind.EMAIL:
        return send_email(out, timeout)
    return send_webhook(out, timeout)


# ---- claiming and recording (the dispatcher's thread) --------------------------------------


def _claimable(now: datetime) -> Q:
    """Conditions on a delivery's own columns only (see claim_due for why that matters)."""
    return Q(state=Delivery.State.PENDING) & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))


def _unclaimed(now: datetime) -> Q:
    # A paused notification's deliveries wait (and resume when it is enabled again).
    return _claimable(now) & Q(notification__enabled=True)


def _due(now: datetime) -> Q:
    return _unclaimed(now) & Q(next_attempt_at__lte=now)


def claim_due(*, now: datetime, claimant: str, limit: int) -> list[Delivery]:
    """Due deliveries, now claimed by `claimant` (a token unique to this claim), oldest first."""
    if limit <= 0:
        return []
    ids = list(
        Delivery.objects.filter(_due(now)).order_by("next_attempt_at", "id").values_list("id", flat=True)[:limit]
    )
    if not ids:
        return []
    # The compare-and-set: PostgreSQL checks an UPDATE's WHERE again on the row it waited for, so of
    # two dispatchers racing for one row the second finds it claimed and skips it. Only conditions on
    # the delivery's own columns are checked again: a join (notification__enabled) would turn the
    # UPDATE into `id IN (subquery)`, whose subquery still sees the row unclaimed.
    lease = timedelta(seconds=timeout_s() + 60)
    Delivery.objects.filter(_claimable(now), pk__in=ids).update(claimed_by=claimant, claimed_until=now + lease)
    return list(
        Delivery.objects.filter(pk__in=ids, claimed_by=claimant)
        .select_related("notification", "run__pipeline")
        .order_by("next_attempt_at", "id")
    )


def _email_text(delivery: Delivery) -> tuple[str, str]:
    p = delivery.payload
    run, pipeline = p.get("run", {}), p.get("pipeline", {})
    subject = f"[Stepwise] {pipeline.get('name')}: run #{run.get('id')} {run.get('state')}"
    lines = [
        f"Run #{run.get('id')} of pipeline {pipeline.get('name')} (team {p.get('team', {}).get('name')}, "
        f"version {run.get('version')}) {run.get('state')}.",
    ]
    if run.get("reason"):
        lines.append(f"Reason: {run['reason']}")
    if run.get("duration_s") is not None:
        lines.append(f"Duration: {run['duration_s']:.1f} s")
    lines += ["", f"Run page: {run.get('url')}", "", "You get this because of a notification on the pipeline."]
    return subject, "\n".join(lines)


def outgoing(delivery: Delivery) -> Outgoing:
    n = delivery.notification
    body = notifications.body_bytes(delivery.payload)
    subject, text = _email_text(delivery) if n.kind == Notification.Kind.EMAIL else ("", "")
    secret = notifications.notification_secret(n) if n.kind == Notification.Kind.WEBHOOK else ""
    return Outgoing(
        delivery_id=delivery.pk,
        kind=n.kind,
        event=delivery.event,
        url=n.url,
        email=n.email,
        secret=secret,
        body=body,
        subject=subject,
        text=text,
    )


def record(*, delivery_id: int, claimant: str, outcome: Outcome, now: datetime) -> str | None:
    """Write one attempt's outcome; the delivery's new state, or None if the claim was lost."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().filter(pk=delivery_id, claimed_by=claimant).first()
        if delivery is None:
            return None
        number = delivery.attempts + 1
        changes: dict = {
            "attempts": number,
            "claimed_by": "",
            "claimed_until": None,
            "last_status": outcome.status,
            "last_response": outcome.response,
            "last_error": outcome.error,
        }
        if outcome.ok:
            changes.update(state=Delivery.State.DELIVERED, delivered_at=now)
        elif number >= max_attempts():
            changes.update(state=Delivery.State.FAILED)
        else:
            delays = backoff_s()
            changes.update(next_attempt_at=now + timedelta(seconds=delays[min(number, len(delays)) - 1]))
        Delivery.objects.filter(pk=delivery_id, claimed_by=claimant).update(**changes)
        DeliveryAttempt.objects.create(
            delivery_id=delivery_id,
            number=number,
            status=outcome.status,
            response=outcome.response,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
        return changes.get("state", Delivery.State.PENDING)


class Dispatcher:
    """Claims and sends without waiting: `tick()` records what finished, then starts what is due."""

    def __init__(self, *, workers: int = DEFAULT_WORKERS, name: str | None = None):
        self.workers = workers
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stepwise-dispatch")
        self.in_flight: dict[Future, tuple[int, str]] = {}

    def _collect(self, result: TickResult, now: datetime | None) -> None:
        for future in [f for f in self.in_flight if f.done()]:
            delivery_id, claimant = self.in_flight.pop(future)
            try:
                outcome = future.result()
            except Exception as exc:  # a bug in a send must still count as an attempt
                log.exception("sending delivery %s failed", delivery_id)
                outcome = Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
            state = record(delivery_id=delivery_id, claimant=claimant, outcome=outcome, now=now or timezone.now())
            {
                Delivery.State.DELIVERED: result.delivered,
                Delivery.State.FAILED: result.failed,
                Delivery.State.PENDING: result.retrying,
            }.get(state, []).append(delivery_id)

    def tick(self, now: datetime | None = None) -> TickResult:
        result = TickResult()
        self._collect(result, now)
        now = now or timezone.now()
        # Claim only what can start at once: a claim's lease is not spent waiting in the pool's queue.
        claimant = f"{self.name}:{uuid.uuid4().hex[:12]}"
        claimed = claim_due(now=now, claimant=claimant, limit=self.workers - len(self.in_flight))
        result.claimed = len(claimed)
        timeout = timeout_s()
        for delivery in claimed:
            try:
                out = outgoing(delivery)
            except SecretError as exc:
                record(delivery_id=delivery.pk, claimant=claimant, outcome=Outcome(ok=False, error=str(exc)), now=now)
                result.retrying.append(delivery.pk)
                continue
            self.in_flight[self.pool.submit(send, out, timeout)] = (delivery.pk, claimant)
        return result

    def drain(self, now: datetime | None = None) -> TickResult:
        """Wait for every send in flight and record it."""
        wait(list(self.in_flight))
        result = TickResult()
        self._collect(result, now)
        return result

    def next_wait(self, now: datetime, longest: float) -> float:
        soonest = (
            Delivery.objects.filter(_unclaimed(now))
            .order_by("next_attempt_at")
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        if self.in_flight:
            longest = min(longest, 0.1)
        if soonest is None:
            return longest
        return min(longest, max((soonest - now).total_seconds(), 0.05))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)


def deliver_due(now: datetime | None = None, *, workers: int = DEFAULT_WORKERS) -> TickResult:
    """One pass: claim what is due at `now`, send it all in parallel, record every outcome."""
    dispatcher = Dispatcher(workers=workers)
    try:
        started = dispatcher.tick(now)
        done = dispatcher.drain(now)
    finally:
        dispatcher.close()
    done.claimed = started.claimed
    done.retrying += started.retrying
    return done
