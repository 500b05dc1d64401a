"""The step page's live graph: the pipeline as it would be with the step form's unsaved values.

The page posts the form here as the user types (static/js/step_preview.js); nothing is saved.
The answer is the graph's HTML, drawn from the same partial as the page's, and a note that says
whether the preview shows the change or, while the form has errors, the saved graph.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from pipelines_ui import graph, selectors, services
from pipelines_ui.forms import StepForms
from pipelines_ui.models import Pipeline
from stepwise import dag
from stepwise.spec.model import Pipeline as PipelineSpec


def _form_error(page: StepForms) -> str:
    for form in [page.step_form, *page.inputs.forms, *page.outputs.forms]:
        for field, errors in form.errors.items():
            label = form.fields[field].label if field in form.fields else ""
            return f"{label or field}: {errors[0]}" if field != "__all__" else errors[0]
    for formset in page.all_formsets:
        if formset.non_form_errors():
            return formset.non_form_errors()[0]
    return "the form has an error"


def step_preview_spec(*, spec: PipelineSpec, step_name: str | None, data) -> tuple[PipelineSpec, str | None, str]:
    """(the spec to draw, the previewed step's name, a note); the spec unchanged while the form has errors."""
    original = spec.jobs.get(step_name) if step_name else None
    page = StepForms(data, None, spec=spec, step=original)
    if not page.is_valid():
        return spec, step_name, f"Showing the saved graph: {_form_error(page)}"
    step = page.to_step()
    if step.name != step_name and step.name in spec.jobs:
        return spec, step_name, f"Showing the saved graph: a step named {step.name} exists already"
    # code_files=None keeps the step's saved code: the graph does not depend on it.
    preview = services.spec_with_step(spec=spec, step=step, original_name=step_name)
    return preview, step.name, "Preview of your unsaved changes: nothing is saved until you press Save step."


@login_required
@require_POST
def step_preview(request: HttpRequest, pk: int) -> JsonResponse:
    pipeline = get_object_or_404(Pipeline.objects.for_user(request.user), pk=pk)
    if not selectors.user_can_edit(request.user, pipeline):
        return JsonResponse({"detail": "Your role in this team cannot edit this pipeline."}, status=403)
    spec = services.pipeline_working_spec(pipeline=pipeline)
    step_name = request.GET.get("step") or None
    if step_name is not None and step_name not in spec.jobs:
        raise Http404("No such step")
    preview, current, note = step_preview_spec(spec=spec, step_name=step_name, data=request.POST)
    if len(preview.jobs) > graph.LARGE_GRAPH_STEPS:
        return JsonResponse({"html": "", "note": f"No preview for a graph of {len(preview.jobs):,} steps."})
    try:
        svg = graph.render_svg(
            dag.pipeline_dot(
                preview,
                step_url=lambda name: reverse("step_edit", args=[pipeline.pk, name]),
                rankdir="TB",
                **dag.expand_from_query(request.GET),
            )
        )
    except graph.GraphRenderError:
        return JsonResponse({"html": "", "note": "The preview could not be drawn."})
    html = render_to_string("pipelines_ui/_dag.html", {"svg": svg, "clickable": True}, request=request)
    return JsonResponse(
        {"html": html, "note": note, "current": dag.node_ids(preview).get(current, "") if current else ""}
    )
