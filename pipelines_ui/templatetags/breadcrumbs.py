"""The one breadcrumb trail of a pipeline's pages: Pipelines › team › pipeline › Run #N › step › here."""

from __future__ import annotations

from django import template
from django.urls import reverse

register = template.Library()


@register.inclusion_tag("_breadcrumbs.html")
def pipeline_crumbs(pipeline, run=None, step_run=None, here: str = "") -> dict:
    """Each level links to its page; the deepest one given is the current page, unlinked."""
    crumbs = [
        ("Pipelines", reverse("pipeline_list")),
        (pipeline.team.name, reverse("pipeline_list") + f"?team={pipeline.team_id}"),
        (pipeline.name, reverse("pipeline_detail", args=[pipeline.pk])),
    ]
    if run is not None:
        crumbs.append((f"Run #{run.pk}", reverse("run_detail", args=[run.pk])))
    if step_run is not None:
        crumbs.append((step_run.name, reverse("run_step", args=[run.pk, step_run.name])))
    if here:
        crumbs.append((here, ""))
    *links, (current, _url) = crumbs
    return {"links": links, "current": current}
