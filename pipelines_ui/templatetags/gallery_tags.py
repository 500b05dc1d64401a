"""Templates on a pipeline's page: where a clone came from, the template's newer version, the actions."""

from __future__ import annotations

from django import template

from pipelines_ui import selectors, template_selectors
from pipelines_ui.template_services import newer_version_for

register = template.Library()


@register.inclusion_tag("gallery/_origin.html", takes_context=True)
def template_origin(context, pipeline) -> dict:
    """`{% template_origin pipeline %}`: "from template T v1", and a banner when a newer version is out."""
    user = context["user"]
    origin = pipeline.origin if pipeline.origin_id else None
    if origin is None:
        return {"origin": None}
    visible = template_selectors.template_for_user(user, origin.template_id) is not None
    return {
        "origin": origin,
        "pipeline": pipeline,
        "visible": visible,
        # Only a template the user may still see offers its newer versions.
        # The update page itself shows the diff and its own Apply: no banner there.
        "newer": newer_version_for(pipeline) if visible and context.get("tab") != "template-update" else None,
        "can_apply": selectors.user_can_edit(user, pipeline),
        "csrf_token": context.get("csrf_token"),
    }


@register.filter
def can_duplicate(user) -> bool:
    """Whether the user may add pipelines to any team (a duplicate needs somewhere to go)."""
    return selectors.user_editable_teams(user).exists()
