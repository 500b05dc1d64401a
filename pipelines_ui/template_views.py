"""Templates pages: the gallery, a template's page and version diffs, publish, use, duplicate, apply updates.

Who may do what (design.md, Sharing): a template is seen by its team's members, or by everyone
when shared with the instance (404 otherwise); publishing is for the pipeline team's admins;
using a template or duplicating a pipeline needs editor or admin in the target team; applying a
template's newer version needs editor or admin in the clone's team.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from pipelines_ui import selectors, template_selectors
from pipelines_ui import template_services as services
from pipelines_ui.graph import LARGE_GRAPH_STEPS, GraphRenderError, render_svg, svg_cached
from pipelines_ui.markdown import render_markdown
from pipelines_ui.models import Membership, Pipeline, Role, Template, TemplateVersion
from pipelines_ui.search import search_text
from pipelines_ui.services import version_spec_with_files
from pipelines_ui.template_forms import DuplicateForm, PublishForm, UseTemplateForm
from pipelines_ui.version_diff import changed_parts, yaml_diff
from runs.forms import FIELD_PREFIX
from stepwise.dag import pipeline_dot
from stepwise.spec import SpecError, from_json
from stepwise.spec.model import Pipeline as PipelineSpec

GALLERY_LIMIT = 60


def _graph(spec: PipelineSpec) -> str:
    """The DAG as inline SVG (built by graph.py, safe to inline), or "" when not drawable now."""
    if not spec.jobs:
        return ""
    dot = pipeline_dot(spec)
    if len(spec.jobs) > LARGE_GRAPH_STEPS and not svg_cached(dot):
        return ""  # the pipeline's own page draws it in the background
    try:
        return render_svg(dot)
    except GraphRenderError:
        return ""


def _template_or_404(request: HttpRequest, template_id: int) -> Template:
    template = template_selectors.template_for_user(request.user, template_id)
    if template is None:
        raise Http404("No such template")
    return template


def _pipeline_or_404(request: HttpRequest, pk: int) -> Pipeline:
    return get_object_or_404(
        Pipeline.objects.for_user(request.user).select_related("team", "latest_version", "origin__template"), pk=pk
    )


def _refused(request: HttpRequest, *, what: str, needs: str, team=None, status: int = 403) -> HttpResponse:
    role = selectors.user_role(request.user, team) if team is not None else None
    context = {"team": team, "role": role, "what": what, "needs": needs, "nav": "templates"}
    return render(request, "gallery/forbidden.html", context, status=status)


def _viewer_target(request: HttpRequest) -> HttpResponse | None:
    """A POST naming a team where the user only views: 403 (a team they are not in is the form's error)."""
    raw = request.POST.get("team", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        return None
    membership = Membership.objects.select_related("team").filter(user=request.user, team_id=int(raw)).first()
    if membership is None or membership.role in selectors.EDIT_ROLES:
        return None
    return _refused(request, what="add pipelines to it", needs="editor", team=membership.team)


def _parameters(spec: PipelineSpec, version: TemplateVersion) -> list[dict]:
    descriptions = version.parameter_descriptions or {}
    return [
        {"name": name, "decl": decl, "description": descriptions.get(name) or decl.description}
        for name, decl in services.parameter_inputs(spec).items()
    ]


# ---- the gallery and a template's pages ----------------------------------------------


@login_required
def template_gallery(request: HttpRequest) -> HttpResponse:
    query = search_text(request.GET)
    tag = search_text(request.GET, "tag", limit=50)
    templates = list(template_selectors.template_search(user=request.user, query=query, tag=tag)[:GALLERY_LIMIT])
    cards = []
    for template in templates:
        version = template.latest_version
        spec = from_json(version.pipeline_version.spec)
        cards.append({"template": template, "svg": _graph(spec), "parameters": _parameters(spec, version)})
    return render(
        request,
        "gallery/gallery.html",
        {
            "cards": cards,
            "query": query,
            "tag": tag,
            "tags": template_selectors.tag_cloud(user=request.user),
            "filtered": bool(query or tag),
            "admin_teams": Membership.objects.filter(user=request.user, role=Role.ADMIN).exists(),
            "can_use": selectors.user_editable_teams(request.user).exists(),
            "nav": "templates",
        },
    )


@login_required
def template_detail(request: HttpRequest, template_id: int) -> HttpResponse:
    template = _template_or_404(request, template_id)
    versions = list(template_selectors.template_versions(template))
    version = template.latest_version
    spec = from_json(version.pipeline_version.spec)
    return render(
        request,
        "gallery/template_detail.html",
        {
            "template": template,
            "version": version,
            "versions": versions,
            "spec": spec,
            "svg": _graph(spec),
            "description": render_markdown(template.description),
            "parameters": _parameters(spec, version),
            "can_use": selectors.user_editable_teams(request.user).exists(),
            "is_admin": selectors.user_role(request.user, template.team) == Role.ADMIN,
            "nav": "templates",
        },
    )


def _diff(before: TemplateVersion | None, after: TemplateVersion) -> dict:
    labels = {"before_label": f"v{before.number}" if before else "", "after_label": f"v{after.number}"}
    if before is None:
        return {"parts": [], "lines": [], **labels}
    old = from_json(before.pipeline_version.spec, dict(before.pipeline_version.files or {}))
    new = from_json(after.pipeline_version.spec, dict(after.pipeline_version.files or {}))
    return {
        "parts": changed_parts(old, new),
        "lines": yaml_diff(old, new, before_name=f"v{before.number}", after_name=f"v{after.number}"),
        **labels,
    }


@login_required
def template_version_diff(request: HttpRequest, template_id: int, number: int) -> HttpResponse:
    template = _template_or_404(request, template_id)
    version = get_object_or_404(template.versions.select_related("pipeline_version"), number=number)
    raw = request.GET.get("against", "")
    if raw:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
            raise Http404("No such version to compare with.")
        against = get_object_or_404(template.versions.select_related("pipeline_version"), number=int(raw))
    else:
        against = template.versions.filter(number__lt=number).select_related("pipeline_version").first()
    return render(
        request,
        "gallery/template_diff.html",
        {
            "template": template,
            "version": version,
            "against": against,
            "numbers": template.versions.values_list("number", flat=True),
            "nav": "templates",
            **_diff(against, version),
        },
    )


# ---- publish -------------------------------------------------------------------------


@login_required
def template_publish(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = _pipeline_or_404(request, pk)
    if selectors.user_role(request.user, pipeline.team) != Role.ADMIN:
        return _refused(request, what="publish its pipelines as templates", needs="admin", team=pipeline.team)
    if pipeline.latest_version is None:
        messages.warning(request, "This pipeline has no version yet: add a step before publishing it as a template.")
        return redirect(pipeline)
    template = Template.objects.filter(pipeline=pipeline).select_related("latest_version").first()
    spec = from_json(pipeline.latest_version.spec)
    form = PublishForm(request.POST or None, pipeline=pipeline, spec=spec, template=template)
    preview = None
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        if "preview" in request.POST:
            preview = render_markdown(d["description"])
        else:
            try:
                published = services.template_publish(
                    pipeline=pipeline,
                    user=request.user,
                    title=d["title"],
                    description=d["description"],
                    tags=d["tags"],
                    visibility=d["visibility"],
                    parameter_descriptions=form.parameter_descriptions(),
                    version=form.chosen_version(),
                )
            except services.TemplateError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, str(exc))
            else:
                messages.success(
                    request,
                    f"Published {published.template.title} v{published.number}"
                    f" (pipeline v{published.pipeline_version.number}).",
                )
                return redirect("template_detail", template_id=published.template_id)
    return render(
        request,
        "gallery/template_publish.html",
        {"pipeline": pipeline, "template": template, "form": form, "preview": preview, "nav": "templates"},
        status=400 if request.method == "POST" and form.errors else 200,
    )


# ---- use and duplicate ---------------------------------------------------------------


@login_required
def template_use(request: HttpRequest, template_id: int) -> HttpResponse:
    template = _template_or_404(request, template_id)
    teams = selectors.user_editable_teams(request.user)
    if not teams.exists():
        return _refused(request, what="use templates", needs="editor")
    if refused := _viewer_target(request):
        return refused
    raw = request.GET.get("version", "")
    if raw.isascii() and raw.isdigit() and len(raw) <= 9:
        version = get_object_or_404(template.versions.select_related("pipeline_version"), number=int(raw))
    else:
        version = template.latest_version
    spec = version_spec_with_files(version.pipeline_version)
    form = UseTemplateForm(request.POST or None, template_version=version, spec=spec, teams=teams)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            pipeline = services.template_use(
                template_version=version, team=d["team"], name=d["name"], values=d["inputs"], user=request.user
            )
        except services.TemplateError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        except SpecError as exc:
            for problem in exc.problems:
                key = f"{FIELD_PREFIX}{problem.field}"
                form.add_error(key if key in form.fields else None, problem.message)
        else:
            messages.success(
                request, f"Created {pipeline.name} in {pipeline.team.name} from {template.title} v{version.number}."
            )
            return redirect(pipeline)
    return render(
        request,
        "gallery/template_use.html",
        {"template": template, "version": version, "spec": spec, "form": form, "nav": "templates"},
        status=400 if request.method == "POST" and form.errors else 200,
    )


@login_required
def pipeline_duplicate(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = _pipeline_or_404(request, pk)
    teams = selectors.user_editable_teams(request.user)
    if not teams.exists():
        return _refused(request, what="duplicate pipelines into it", needs="editor", team=pipeline.team)
    if refused := _viewer_target(request):
        return refused
    form = DuplicateForm(request.POST or None, pipeline=pipeline, teams=teams)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            copy = services.pipeline_duplicate(pipeline=pipeline, team=d["team"], name=d["name"], user=request.user)
        except services.TemplateError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, f"Duplicated {pipeline.name} as {copy.name} in {copy.team.name}.")
            return redirect(copy)
    return render(
        request,
        "gallery/pipeline_duplicate.html",
        {"pipeline": pipeline, "form": form, "nav": "pipelines"},
        status=400 if request.method == "POST" and form.errors else 200,
    )


# ---- following a template ------------------------------------------------------------


@login_required
def template_update(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what the template's newer version changed; POST: merge it into this pipeline."""
    pipeline = _pipeline_or_404(request, pk)
    can_edit = selectors.user_can_edit(request.user, pipeline)
    if request.method == "POST" and not can_edit:
        return _refused(request, what="change its pipelines", needs="editor", team=pipeline.team)
    origin = pipeline.origin
    if origin is None or template_selectors.template_for_user(request.user, origin.template_id) is None:
        raise Http404("This pipeline follows no template you can see.")
    newer = services.newer_version_for(pipeline)
    conflict = None
    if request.method == "POST":
        try:
            applied = services.template_update_apply(pipeline=pipeline, user=request.user)
        except services.TemplateError as exc:
            messages.info(request, str(exc))
            return redirect(pipeline)
        except services.TemplateConflict as exc:
            conflict = exc
        except SpecError as exc:
            for problem in exc.problems:
                messages.error(request, f"Could not apply the template's new version: {problem}")
            return redirect(pipeline)
        else:
            title = origin.template.title
            if applied.created:
                text = f"Applied {title} v{applied.template_version.number}: saved as v{applied.version.number}."
            else:
                number = applied.template_version.number
                text = f"{title} v{number} changed nothing this pipeline holds: it now follows v{number}."
            messages.success(request, text)
            return redirect(pipeline)
    return render(
        request,
        "gallery/template_update.html",
        {
            "pipeline": pipeline,
            "origin": origin,
            "newer": newer,
            "conflict": conflict,
            "can_edit": can_edit,
            "apply_url": reverse("template_update", args=[pipeline.pk]),
            "nav": "pipelines",
            "tab": "template-update",
            **(_diff(origin, newer) if newer else {"parts": [], "lines": []}),
        },
        status=409 if conflict else 200,
    )
