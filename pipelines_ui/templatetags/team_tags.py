"""The user's role in a team, for pages that show an action only to some roles."""

from __future__ import annotations

from django import template

from pipelines_ui import selectors

register = template.Library()


@register.filter
def role_in(user, team) -> str:
    """`{% if user|role_in:pipeline.team == "admin" %}`; "" for a non-member."""
    if team is None:
        return ""
    return selectors.user_role(user, team) or ""
