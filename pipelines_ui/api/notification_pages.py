"""A pipeline's Notifications tab: its webhooks and emails (team admins add, pause, delete them) and
the log of every delivery with each attempt; a failed delivery can be sent again."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from pipelines_ui import selectors
from pipelines_ui.api import notifications
from pipelines_ui.api.models import Delivery, Notification, RunEvent
from pipelines_ui.models import Pipeline, Role

DELIVERIES_PER_PAGE = 50


class NotificationForm(forms.Form):
    kind = forms.ChoiceField(
        choices=Notification.Kind.choices, initial=Notification.Kind.WEBHOOK, widget=forms.RadioSelect
    )
    url = forms.CharField(
        label="Webhook URL",
        required=False,
        max_length=500,
        help_text="http(s) only; internal addresses are allowed (you are a team admin). Redirects are not followed.",
    )
    email = forms.CharField(label="Email address", required=False, max_length=254)
    events = forms.MultipleChoiceField(
        choices=[(e.value, e.value) for e in RunEvent],
        initial=[RunEvent.FAILED],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one event."},
    )
    enabled = forms.BooleanField(required=False, initial=True)


def _pipeline(request: HttpRequest, pk: int) -> Pipeline:
    return get_object_or_404(Pipeline.objects.for_user(request.user).select_related("team", "latest_version"), pk=pk)


def _require_admin(user, team) -> None:
    if selectors.user_role(user, team) != Role.ADMIN:
        raise PermissionDenied("Only the team's admins manage its notifications")


def _notification(request: HttpRequest, notification_id: int) -> Notification:
    notification = (
        Notification.objects.filter(pk=notification_id, pipeline__team__memberships__user=request.user)
        .select_related("pipeline__team")
        .first()
    )
    if notification is None:
        raise Http404("No such notification")
    return notification


@login_required
def pipeline_notifications(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = _pipeline(request, pk)
    role = selectors.user_role(request.user, pipeline.team)
    is_admin = role == Role.ADMIN
    form, created = None, None
    if request.method == "POST":
        _require_admin(request.user, pipeline.team)
        form = NotificationForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                created = notifications.notification_create(
                    pipeline=pipeline,
                    user=request.user,
                    kind=data["kind"],
                    url=data["url"],
                    email=data["email"],
                    events=data["events"],
                    enabled=data["enabled"],
                    allow_private=is_admin,
                )
            except notifications.NotificationError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, str(exc))
            else:
                form = NotificationForm()
    elif is_admin:
        form = NotificationForm()
    deliveries = Paginator(
        Delivery.objects.filter(notification__pipeline=pipeline)
        .select_related("notification", "run")
        .prefetch_related("attempt_log")
        .order_by("-id"),
        DELIVERIES_PER_PAGE,
    ).get_page(request.GET.get("page"))
    return render(
        request,
        "notifications/pipeline_notifications.html",
        {
            "pipeline": pipeline,
            "notifications": pipeline.notifications.order_by("id"),
            "deliveries": deliveries,
            "form": form,
            "created": created,
            "verify_snippet": verify_snippet(created.secret) if created and created.secret else "",
            "is_admin": is_admin,
            "can_edit": role in selectors.EDIT_ROLES,
            "tab": "notifications",
            "nav": "pipelines",
        },
        status=400 if form is not None and form.is_bound and form.errors else 200,
    )


@login_required
@require_POST
def notification_enabled(request: HttpRequest, notification_id: int) -> HttpResponse:
    notification = _notification(request, notification_id)
    _require_admin(request.user, notification.pipeline.team)
    enabled = request.POST.get("enabled") == "1"
    notifications.notification_set_enabled(notification=notification, enabled=enabled)
    target = notification.url or notification.email
    if enabled:
        messages.success(request, f"Notification to {target} enabled: held deliveries go out now.")
    else:
        messages.success(request, f"Notification to {target} paused: its deliveries wait until it is enabled.")
    return redirect("pipeline_notifications", notification.pipeline_id)


@login_required
@require_POST
def notification_delete(request: HttpRequest, notification_id: int) -> HttpResponse:
    notification = _notification(request, notification_id)
    _require_admin(request.user, notification.pipeline.team)
    pipeline_id, target = notification.pipeline_id, notification.url or notification.email
    notifications.notification_delete(notification=notification)
    messages.success(request, f"Notification to {target} deleted, with its deliveries.")
    return redirect("pipeline_notifications", pipeline_id)


@login_required
@require_POST
def delivery_send_again(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = (
        Delivery.objects.filter(pk=delivery_id, notification__pipeline__team__memberships__user=request.user)
        .select_related("notification__pipeline__team")
        .first()
    )
    if delivery is None:
        raise Http404("No such delivery")
    pipeline = delivery.notification.pipeline
    _require_admin(request.user, pipeline.team)
    if notifications.delivery_send_again(delivery=delivery):
        messages.success(request, f"Delivery {delivery.pk} queued: one more attempt within seconds.")
    else:
        messages.info(request, f"Delivery {delivery.pk} is not failed: nothing to send again.")
    return redirect("pipeline_notifications", pipeline.pk)


def verify_snippet(secret: str) -> str:
    """The receiver's side, as docs/webhooks.md has it, with `secret` filled in."""
    return VERIFY_SNIPPET.replace('SECRET = "SECRET"', f"SECRET = {secret!r}")


VERIFY_SNIPPET = '''import hashlib
import hmac
import time

SECRET = "SECRET"


def verify(header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """header: the X-Stepwise-Signature value; body: the raw request body, byte for byte."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [v for k, v in fields if k == "t"]
    if not timestamps or not (timestamps[0].isascii() and timestamps[0].isdigit()):
        return False
    t = int(timestamps[0])
    if abs(time.time() - t) > tolerance_s:
        return False  # too old (or from the future): a replay
    signed = f"{t}.".encode() + body
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in fields if k == "v1")
'''
