"""The Workers page's link in the navigation bar, and its status badges."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from runs import worker_status
from runs.worker_status import Status

register = template.Library()

STATUS_CLASSES = {
    Status.IDLE: "success",
    Status.BUSY: "primary",
    Status.DRAINING: "warning",
    Status.DRAINED: "secondary",
    Status.STOPPED: "light",
    Status.LOST: "danger",
}


@register.filter
def sees_workers(user) -> bool:
    return worker_status.user_sees_workers(user)


@register.simple_tag
def worker_badge(status: str) -> str:
    return format_html(
        '<span class="badge badge-{} worker-status" data-status="{}">{}</span>',
        STATUS_CLASSES.get(status, "light"),
        status,
        status,
    )
