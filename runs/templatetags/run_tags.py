"""Formatting for the run pages: state badges, durations."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html

from stepwise.states import DEFAULT_CLASS, STATE_CLASSES

register = template.Library()


@register.filter
def state_class(state: str) -> str:
    return STATE_CLASSES.get(state, DEFAULT_CLASS)


@register.simple_tag
def state_badge(state: str) -> str:
    return format_html(
        '<span class="badge badge-{} state-badge" data-state="{}">{}</span>', state_class(state), state, state
    )


@register.filter
def duration(seconds: float | None) -> str:
    """`1h 02m`, `3m 05s`, `4.2s`, or an em dash."""
    if seconds is None:
        return "—"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


@register.filter
def elapsed(obj) -> float | None:
    """Duration of a run or step run: finished - started, or so far while it runs."""
    started: datetime | None = getattr(obj, "started_at", None)
    if started is None:
        return None
    finished = getattr(obj, "finished_at", None) or timezone.now()
    return (finished - started).total_seconds()


@register.filter
def metric_value(value: float) -> str:
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}"


@register.simple_tag
def live_elapsed(obj) -> str:
    """The duration of a run or step run; while it runs, a span that the page's script ticks."""
    started: datetime | None = getattr(obj, "started_at", None)
    text = duration(elapsed(obj))
    if started is None or getattr(obj, "finished_at", None) is not None:
        return text
    return format_html('<span class="live-elapsed" data-since="{}">{}</span>', started.isoformat(), text)
