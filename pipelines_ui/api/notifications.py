"""Notifications: a pipeline's webhooks and emails when its runs end (docs/webhooks.md).

When a run reaches succeeded, failed or canceled, `outbox_on_run_end` writes one Delivery per
enabled notification that wants the event, in the transaction that ends the run (runs.signals):
the event is never lost if a process dies, and the unique (notification, run, event) key makes
it one delivery, however often the end is replayed. `pipelines_ui.api.dispatcher` sends them.

Webhook addresses: http or https only. Private, loopback and link-local addresses are allowed,
because a self-hosted Stepwise's receivers are often internal, but only to team admins (who alone
create notifications); redirects are never followed (a 3xx answer is a failed attempt).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import transaction
from django.utils import timezone

from pipelines_ui.api.models import Delivery, Notification, RunEvent
from pipelines_ui.models import Pipeline
from runs import rows
from runs.models import Run, RunState
from runs.secrets import secrets_decrypt, secrets_encrypt

SIGNATURE_HEADER = "X-Stepwise-Signature"
EVENT_HEADER = "X-Stepwise-Event"
DELIVERY_HEADER = "X-Stepwise-Delivery"
DEFAULT_TOLERANCE_S = 300
SECRET_PREFIX = "whsec_"
_SECRET_NAME = "webhook"

EVENT_FOR_STATE = {
    RunState.SUCCEEDED: RunEvent.SUCCEEDED,
    RunState.FAILED: RunEvent.FAILED,
    RunState.CANCELED: RunEvent.CANCELED,
}


class NotificationError(ValueError):
    """Bad input for a notification; `field` names the form field it is about."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Created:
    notification: Notification
    secret: str  # a webhook's signing secret in clear: shown once, then only stored encrypted


# ---- create, change, delete ---------------------------------------------------------------


def _is_private_host(host: str) -> bool:
    """Does `host` name (or resolve to) a loopback, private, link-local or otherwise internal address?"""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            return True
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError):
            return False  # unresolvable now: each attempt fails (and says so) until it resolves
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    return any(not a.is_global or a.is_loopback or a.is_link_local or a.is_private for a in addresses)


def validate_webhook_url(url: str, *, allow_private: bool) -> str:
    url = (url or "").strip()
    if not url:
        raise NotificationError(
            "url", "Give the address to POST events to, e.g. https://ci.example.com/hooks/stepwise."
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL"
        raise NotificationError("url", f"{url} is not a valid http(s) address.") from None
    if parts.scheme not in ("http", "https"):
        raise NotificationError("url", f"The address must start with http:// or https://, not {parts.scheme or url}:")
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise NotificationError("url", f"{url} is not a valid http(s) address.") from None
    if parts.username or parts.password:
        raise NotificationError("url", "Put no user name or password in the address: the signature authenticates.")
    if not allow_private and _is_private_host(parts.hostname or ""):
        raise NotificationError(
            "url", f"{parts.hostname} is a private or loopback address: only the team's admins may send there."
        )
    return url


def validate_events(events: list[str]) -> list[str]:
    chosen = [e for e in RunEvent.values if e in set(events or [])]
    unknown = sorted(set(events or []) - set(RunEvent.values))
    if unknown:
        raise NotificationError("events", f"Unknown event(s): {', '.join(unknown)}; use {', '.join(RunEvent.values)}.")
    if not chosen:
        raise NotificationError("events", "Choose at least one event: run.succeeded, run.failed or run.canceled.")
    return chosen


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def notification_secret(notification: Notification) -> str:
    """A webhook's signing secret in clear (runs.secrets.SecretError if SECRET_KEY changed)."""
    return secrets_decrypt({_SECRET_NAME: notification.secret})[_SECRET_NAME]


@transaction.atomic
def notification_create(
    *,
    pipeline: Pipeline,
    user,
    kind: str,
    events: list[str],
    url: str = "",
    email: str = "",
    enabled: bool = True,
    allow_private: bool,
) -> Created:
    """A webhook (with a new signing secret) or an email notification for `pipeline`'s runs.

    `allow_private`: whether the caller may point a webhook at an internal address (team admins).
    """
    events = validate_events(events)
    secret = ""
    if kind == Notification.Kind.WEBHOOK:
        url, email = validate_webhook_url(url, allow_private=allow_private), ""
        secret = new_secret()
    elif kind == Notification.Kind.EMAIL:
        email = (email or "").strip()
        try:
            EmailValidator()(email)
        except ValidationError:
            raise NotificationError("email", f"'{email}' is not an email address.") from None
        url = ""
    else:
        raise NotificationError("kind", f"Unknown kind '{kind}': use webhook or email.")
    notification = Notification.objects.create(
        pipeline=pipeline,
        kind=kind,
        url=url,
        email=email,
        secret=secrets_encrypt({_SECRET_NAME: secret})[_SECRET_NAME] if secret else "",
        events=events,
        enabled=enabled,
        created_by=user,
    )
    return Created(notification=notification, secret=secret)


def notification_set_enabled(*, notification: Notification, enabled: bool) -> None:
    Notification.objects.filter(pk=notification.pk).update(enabled=enabled)
    notification.enabled = enabled


def notification_delete(*, notification: Notification) -> None:
    # Its deliveries go with it (cascade): a pending one is never sent after this commits.
    notification.delete()


def delivery_send_again(*, delivery: Delivery, now=None) -> bool:
    """Queue a failed delivery for one more attempt now; False if it is not failed (any more)."""
    now = now or timezone.now()
    return bool(
        Delivery.objects.filter(pk=delivery.pk, state=Delivery.State.FAILED).update(
            state=Delivery.State.PENDING, next_attempt_at=now, claimed_by="", claimed_until=None
        )
    )


# ---- the outbox ---------------------------------------------------------------------------


def run_url(run: Run) -> str:
    return settings.STEPWISE_BASE_URL.rstrip("/") + run.get_absolute_url()


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def run_payload(run: Run, event: str) -> dict[str, Any]:
    """The JSON body of an event: what the run was and how it ended, never its inputs (secret or not)."""
    pipeline = run.pipeline
    return {
        "event": event,
        "run": {
            "id": run.pk,
            "state": run.state,
            "reason": run.reason,
            "version": run.version.number,
            "url": run_url(run),
            "created_at": _iso(run.created_at),
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "duration_s": run.duration_s,
        },
        "pipeline": {"id": pipeline.pk, "name": pipeline.name},
        "team": {"id": pipeline.team_id, "name": pipeline.team.name},
    }


def outbox_on_run_end(sender, *, run: Run, state: str, **kwargs) -> int:
    """runs.signals.run_ended receiver: one Delivery per enabled notification wanting this event.

    One query when the pipeline has no notification; nothing per step.
    """
    event = EVENT_FOR_STATE.get(state)
    if event is None:
        return 0
    # Read through the hot path's SQL: every run's end asks, most pipelines have none.
    found = rows.values(Notification, ("id", "events"), {"pipeline_id": run.pipeline_id, "enabled": True})
    wanted = [pk for pk, events in found if event in events]
    if not wanted:
        return 0
    run = (
        Run.objects.select_related("pipeline__team", "version").defer("version__spec", "version__files").get(pk=run.pk)
    )
    payload = run_payload(run, event)
    now = timezone.now()
    created = Delivery.objects.bulk_create(
        [Delivery(notification_id=pk, run=run, event=event, payload=payload, next_attempt_at=now) for pk in wanted],
        ignore_conflicts=True,
    )
    return len(created)


# ---- signatures ---------------------------------------------------------------------------


def body_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-Stepwise-Signature` value: `t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode("utf-8"), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance_s: int = DEFAULT_TOLERANCE_S, now: float | None = None
) -> bool:
    """What a receiver runs (docs/webhooks.md has it standalone): True when `header` signs `body`
    with `secret` and its timestamp is within `tolerance_s` of now (older: a replay).

    `body` must be the raw request body, byte for byte, not re-serialized JSON.
    """
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
    except (ValueError, KeyError, AttributeError):
        return False
    now = time.time() if now is None else now
    if abs(now - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode("utf-8"), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    candidates = [v for k, v in (part.split("=", 1) for part in header.split(",")) if k == "v1"]
    return any(hmac.compare_digest(expected, c) for c in candidates)
