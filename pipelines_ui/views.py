"""Authoring pages: the pipeline list, create and import, the editor, steps, versions, export."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from axes import helpers as axes_helpers
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.paginator import Paginator
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from pipelines_ui import selectors, services
from pipelines_ui.component_selectors import component_code, component_for_user, component_step, components_visible_to
from pipelines_ui.forms import (
    BaseVersionForm,
    InterfaceForms,
    PipelineCreateForm,
    PipelineImportForm,
    PipelineSettingsForm,
    StepForms,
)
from pipelines_ui.graph import (
    EDITOR_RANKDIR,
    LARGE_GRAPH_STEPS,
    GraphRenderError,
    render_svg,
    render_svg_in_background,
    svg_cached,
)
from pipelines_ui.models import Membership, Pipeline, PipelineVersion
from pipelines_ui.search import search_text
from pipelines_ui.uploads import UploadError, relative_problems, save_upload
from pipelines_ui.version_diff import changed_parts, code_diff, version_file_contents, yaml_diff
from runs import selectors as run_selectors
from stepwise import dag
from stepwise.spec import SpecError, from_json, to_zip_bytes
from stepwise.spec.model import Pipeline as PipelineSpec
from stepwise.spec.model import Problem, Step

PAGE_SIZE = 20
VERSIONS_PAGE_SIZE = 10


def _get_pipeline_for_user(request: HttpRequest, pk: int) -> Pipeline:
    """The pipeline if it belongs to one of the user's teams; 404 otherwise (not 403: no leak)."""
    return get_object_or_404(
        Pipeline.objects.for_user(request.user).select_related("team", "latest_version", "latest_version__author"),
        pk=pk,
    )


def _get_version_for_user(request: HttpRequest, pipeline: Pipeline, number: int) -> PipelineVersion:
    return get_object_or_404(PipelineVersion.objects.select_related("author"), pipeline=pipeline, number=number)


def _forbidden(request: HttpRequest, pipeline: Pipeline) -> HttpResponse:
    return render(
        request,
        "pipelines_ui/forbidden.html",
        {"pipeline": pipeline, "role": selectors.user_role(request.user, pipeline.team), "nav": "pipelines"},
        status=403,
    )


def _refuse_viewer_team(request: HttpRequest) -> HttpResponse | None:
    """A POST naming a team where the user may only view: 403, like every change a viewer asks for.

    (Teams the user is not in are left to the form, whose choices are the user's editable teams.)
    """
    raw = request.POST.get("team", "") if request.method == "POST" else ""
    if not (raw.isdigit() and len(raw) <= 18):
        return None
    membership = Membership.objects.select_related("team").filter(user=request.user, team_id=int(raw)).first()
    if membership is None or membership.role in selectors.EDIT_ROLES:
        return None
    context = {"team": membership.team, "role": membership.role, "what": "add pipelines to it", "needs": "editor"}
    return render(request, "teams/forbidden.html", {**context, "nav": "pipelines"}, status=403)


def _svg(spec: PipelineSpec, **kwargs) -> str:
    """The DAG as inline SVG, or "" when there is nothing to draw or graphviz failed."""
    if not (spec.jobs or spec.inputs or spec.outputs):
        return ""
    dot = dag.pipeline_dot(spec, **kwargs)
    if len(spec.jobs) > LARGE_GRAPH_STEPS and not svg_cached(dot):
        # Laying out thousands of nodes takes dot tens of seconds: never in a request.
        render_svg_in_background(dot)
        return format_html(
            '<p class="text-muted text-center py-5 mb-0">The graph of {} steps is being drawn: reload in a minute.</p>',
            f"{len(spec.jobs):,}",
        )
    try:
        return render_svg(dot)
    except GraphRenderError:
        return ""


def _step_url(pipeline: Pipeline):
    return lambda name: reverse("step_edit", args=[pipeline.pk, name])


def _problems_context(problems: list[Problem]) -> dict:
    return {
        "errors": [p for p in problems if p.severity == "error"],
        "warnings": [p for p in problems if p.severity != "error"],
    }


# --- list, create, import ------------------------------------------------------------


@login_required
def pipeline_list(request: HttpRequest) -> HttpResponse:
    query = search_text(request.GET)
    teams = list(selectors.user_teams(request.user))
    team_id = None
    raw_team = request.GET.get("team", "")
    if raw_team.isdigit() and any(t.pk == int(raw_team) for t in teams):
        team_id = int(raw_team)
    pipelines = selectors.pipeline_list(user=request.user, query=query, team_id=team_id)
    page = Paginator(pipelines, PAGE_SIZE).get_page(request.GET.get("page"))
    last_runs = run_selectors.last_runs([p.pk for p in page.object_list])
    for pipeline in page.object_list:
        version = pipeline.latest_version
        pipeline.step_count = selectors.spec_step_count(version.spec if version else None)
        pipeline.last_run = last_runs.get(pipeline.pk)
    return render(
        request,
        "pipelines_ui/pipeline_list.html",
        {
            "page": page,
            "query": query,
            "teams": teams,
            "team_id": team_id,
            "filtered": bool(query or team_id),
            "can_create": selectors.user_editable_teams(request.user).exists(),
            "nav": "pipelines",
        },
    )


@login_required
def pipeline_create(request: HttpRequest) -> HttpResponse:
    if refused := _refuse_viewer_team(request):
        return refused
    form = PipelineCreateForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            pipeline = services.pipeline_create(
                team=d["team"], name=d["name"], user=request.user, description=d["description"]
            )
        except IntegrityError:
            form.add_error("name", "This team already has a pipeline with this name.")
        else:
            messages.success(request, f"Created {pipeline.name}. Add its first step.")
            return redirect("step_create", pk=pipeline.pk)
    return render(request, "pipelines_ui/pipeline_create.html", {"form": form, "nav": "pipelines"})


@login_required
def pipeline_import(request: HttpRequest) -> HttpResponse:
    if refused := _refuse_viewer_team(request):
        return refused
    form = PipelineImportForm(request.POST or None, request.FILES or None, user=request.user)
    problems: list[Problem] = []
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        with tempfile.TemporaryDirectory(prefix="stepwise-import-") as tmp:
            try:
                yaml_path = save_upload(d["file"], Path(tmp))
                version = services.pipeline_import(
                    team=d["team"], path=yaml_path, user=request.user, name=d["name"].strip() or None
                )
            except UploadError as exc:
                form.add_error("file", str(exc))
            except SpecError as exc:
                problems = relative_problems(exc.problems, Path(tmp) / "upload")
            except IntegrityError:
                form.add_error("name", "This team already has a pipeline with this name.")
            else:
                if getattr(version, "unchanged", False):
                    messages.info(
                        request,
                        f"Nothing changed: {version.pipeline.name} is already at version {version.number}"
                        " with exactly this content, so no version was added.",
                    )
                else:
                    messages.success(request, f"Imported {version.pipeline.name} as version {version.number}.")
                return redirect(version.pipeline)
    return render(
        request,
        "pipelines_ui/pipeline_import.html",
        {"form": form, "nav": "pipelines", **_problems_context(problems)},
    )


# --- the editor ----------------------------------------------------------------------


def _latest_number(pipeline: Pipeline) -> int:
    """What an editing form opened now says it is based on (0: the pipeline has no version yet)."""
    return pipeline.latest_version.number if pipeline.latest_version_id else 0


def _who(version: PipelineVersion) -> str:
    return version.author.get_username() if version.author else "someone"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _merged_text(saved: services.SavedEdit | None) -> str:
    """The sentence a success message gains when the save was merged with others' saves."""
    if saved is None or not (saved.created and saved.merged_with):
        return ""
    others = saved.merged_with
    if len(others) <= 3:
        saves = _and([f"v{v.number} by {_who(v)}" for v in others])
    else:
        saves = f"v{others[0].number}–v{others[-1].number} by {_and(sorted({_who(v) for v in others}))}"
    what = f" ({_and(saved.their_changes)} changed there)" if saved.their_changes else ""
    return (
        f" It is v{saved.version.number}: merged with {saves}, saved while you were editing{what}."
        " Your changes did not overlap, so both are kept."
    )


def _base_error(form: BaseVersionForm, then: str) -> str:
    return f"{form.error_text} Nothing was saved. {then}"


def _check_and_resave(latest: int) -> str:
    return f"The form below holds what you sent, now over the latest version (v{latest}): check it and save again."


def _with_latest(pipeline: Pipeline, conflict: services.EditConflict) -> Pipeline:
    """The page after a conflict shows the version that won, even if this request read an older one."""
    pipeline.latest_version = conflict.latest
    return pipeline


def _render_editor(
    request: HttpRequest,
    pipeline: Pipeline,
    *,
    spec: PipelineSpec | None = None,
    settings_form: PipelineSettingsForm | None = None,
    settings_base: int | None = None,
    interface: InterfaceForms | None = None,
    interface_base: int | None = None,
    problems: list[Problem] = (),
    conflict: services.EditConflict | None = None,
    conflict_hint: str = "",
    base_error: str = "",
    status: int = 200,
) -> HttpResponse:
    base = services.pipeline_working_spec(pipeline=pipeline)
    shown = spec if spec is not None else base
    can_edit = selectors.user_can_edit(request.user, pipeline)
    latest = _latest_number(pipeline)
    return render(
        request,
        "pipelines_ui/pipeline_detail.html",
        {
            "pipeline": pipeline,
            "spec": base,
            "steps": list(base.jobs.values()),
            "version": pipeline.latest_version,
            "can_edit": can_edit,
            "settings_form": settings_form or PipelineSettingsForm(pipeline=pipeline, spec=base),
            "interface": interface or InterfaceForms(spec=base),
            # Each form posts the version it was filled from: a form re-shown with the user's
            # input keeps its own base, so a save after fixing it still sees others' saves.
            "bases": {
                "page": latest,
                "settings": latest if settings_base is None else settings_base,
                "interface": latest if interface_base is None else interface_base,
            },
            "svg": _svg(
                shown, step_url=_step_url(pipeline), rankdir=EDITOR_RANKDIR, **dag.expand_from_query(request.GET)
            ),
            "dom_ids": dag.node_ids(shown),  # the drawn graph's
            "conflict": conflict,
            "conflict_hint": conflict_hint,
            "base_error": base_error,
            "nav": "pipelines",
            "tab": "editor",
            **_problems_context(list(problems)),
        },
        status=status,
    )


@login_required
def pipeline_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    return _render_editor(request, pipeline)


@login_required
@require_POST
def pipeline_settings(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    if not selectors.user_can_edit(request.user, pipeline):
        return _forbidden(request, pipeline)
    base_form = BaseVersionForm(request.POST, pipeline=pipeline)
    if not base_form.is_valid():
        form = PipelineSettingsForm(request.POST, pipeline=pipeline)
        form.is_valid()
        then = _check_and_resave(_latest_number(pipeline))
        return _render_editor(
            request, pipeline, settings_form=form, base_error=_base_error(base_form, then), status=400
        )
    number = base_form.cleaned_data["base_version"]
    base = services.pipeline_base_spec(pipeline=pipeline, number=number)
    form = PipelineSettingsForm(request.POST, pipeline=pipeline, spec=base)
    if not form.is_valid():
        return _render_editor(request, pipeline, settings_form=form, settings_base=number, status=400)
    spec = form.apply(base)
    try:
        saved = services.pipeline_update(
            pipeline=pipeline,
            spec=spec,
            author=request.user,
            name=form.cleaned_data["name"],
            description=spec.description,
            message="Edited settings",
            base_version=number,
        )
    except services.EditConflict as conflict:
        return _render_editor(
            request,
            _with_latest(pipeline, conflict),
            settings_form=form,
            settings_base=conflict.latest.number,
            conflict=conflict,
            conflict_hint=_resubmit_hint(conflict, "Save settings"),
            status=409,
        )
    except SpecError as exc:
        return _render_editor(
            request, pipeline, settings_form=form, settings_base=number, problems=exc.problems, status=400
        )
    except IntegrityError:
        form.add_error("name", "This team already has a pipeline with this name.")
        return _render_editor(request, pipeline, settings_form=form, settings_base=number, status=400)
    messages.success(request, "Settings saved." + _merged_text(saved))
    return redirect(pipeline)


@login_required
@require_POST
def pipeline_interface(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    if not selectors.user_can_edit(request.user, pipeline):
        return _forbidden(request, pipeline)
    base_form = BaseVersionForm(request.POST, pipeline=pipeline)
    if not base_form.is_valid():
        interface = InterfaceForms(request.POST, spec=services.pipeline_working_spec(pipeline=pipeline))
        interface.is_valid()
        then = _check_and_resave(_latest_number(pipeline))
        return _render_editor(
            request, pipeline, interface=interface, base_error=_base_error(base_form, then), status=400
        )
    number = base_form.cleaned_data["base_version"]
    base = services.pipeline_base_spec(pipeline=pipeline, number=number)
    interface = InterfaceForms(request.POST, spec=base)
    if not interface.is_valid():
        return _render_editor(request, pipeline, interface=interface, interface_base=number, status=400)
    spec = interface.apply(base)
    if not spec.jobs:
        # Shown again as typed, not dropped by a redirect: nothing is saved until there is a step.
        messages.info(request, "Add a step first: a pipeline is saved with its first step, then its inputs.")
        return _render_editor(request, pipeline, interface=interface, interface_base=number, status=400)
    try:
        saved = services.pipeline_update(
            pipeline=pipeline, spec=spec, author=request.user, message="Edited inputs and outputs", base_version=number
        )
    except services.EditConflict as conflict:
        return _render_editor(
            request,
            _with_latest(pipeline, conflict),
            interface=interface,
            interface_base=conflict.latest.number,
            conflict=conflict,
            conflict_hint=_resubmit_hint(conflict, "Save inputs and outputs"),
            status=409,
        )
    except SpecError as exc:
        return _render_editor(
            request, pipeline, interface=interface, interface_base=number, problems=exc.problems, status=400
        )
    messages.success(request, "Inputs and outputs saved." + _merged_text(saved))
    return redirect(pipeline)


def _resubmit_hint(conflict: services.EditConflict, button: str) -> str:
    return (
        f"Your changes are still in the form below; nothing was saved. To keep them anyway, check them"
        f" and press “{button}” again: that saves them over v{conflict.latest.number}."
    )


# --- steps ---------------------------------------------------------------------------


def _step_page(request: HttpRequest, pipeline: Pipeline, *, step_name: str | None) -> HttpResponse:
    can_edit = selectors.user_can_edit(request.user, pipeline)
    if request.method == "POST" and not can_edit:
        return _forbidden(request, pipeline)
    spec = services.pipeline_working_spec(pipeline=pipeline)
    base_number = _latest_number(pipeline)
    if request.method != "POST":
        step = spec.jobs.get(step_name) if step_name is not None else None
        if step_name is not None and step is None:
            raise Http404("No such step")
        page = StepForms(spec=spec, step=step, **_start_from(request, step_name))
        return _render_step_page(request, pipeline, spec=spec, step=step, page=page, base_version=base_number)

    base_form = BaseVersionForm(request.POST, pipeline=pipeline)
    base_spec = spec
    if base_form.is_valid() and base_form.cleaned_data["base_version"] != base_number:
        base_number = base_form.cleaned_data["base_version"]
        base_spec = services.pipeline_base_spec(pipeline=pipeline, number=base_number)
    # The step as the form found it. A step missing there was removed or renamed by someone
    # else, and this is the deliberate second save the conflict message offered: it is added back.
    step = base_spec.jobs.get(step_name) if step_name is not None else None
    page = StepForms(request.POST, request.FILES or None, spec=base_spec, step=step, **_start_from(request, step_name))
    if not base_form.is_valid():
        page.is_valid()  # field errors show beside the missing base
        then = _check_and_resave(base_number)
        return _render_step_page(
            request,
            pipeline,
            spec=spec,
            step=step,
            page=page,
            base_version=base_number,
            base_error=_base_error(base_form, then),
            status=400,
        )
    if page.is_valid():
        new_step = page.to_step()
        try:
            saved = services.pipeline_step_save(
                pipeline=pipeline,
                step=new_step,
                author=request.user,
                original_name=step.name if step is not None else None,
                code_files=page.code_files(),
                base_version=base_number,
            )
        except services.EditConflict as conflict:
            return _render_step_page(
                request,
                _with_latest(pipeline, conflict),
                spec=from_json(conflict.latest.spec),  # the graph needs no file contents
                step=step,
                page=page,
                base_version=conflict.latest.number,
                conflict=conflict,
                status=409,
            )
        except SpecError as exc:
            page.add_problems(exc.problems, step_name=new_step.name)
        else:
            messages.success(request, f"Saved step {new_step.name}." + _merged_text(saved))
            return redirect(pipeline)
    return _render_step_page(request, pipeline, spec=spec, step=step, page=page, base_version=base_number, status=400)


def _start_from(request: HttpRequest, step_name: str | None) -> dict:
    """A new step's prefill from the registered component `?component=<id>` (or its hidden field)."""
    raw = request.POST.get("component") if request.method == "POST" else request.GET.get("component")
    component = component_for_user(request.user, raw) if step_name is None else None
    if component is None:
        return {}
    return {"start_from": component_step(component), "start_files": component_code(component)}


def _render_step_page(
    request: HttpRequest,
    pipeline: Pipeline,
    *,
    spec: PipelineSpec,
    step: Step | None,
    page: StepForms,
    base_version: int,
    conflict: services.EditConflict | None = None,
    base_error: str = "",
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "pipelines_ui/step_form.html",
        {
            "pipeline": pipeline,
            "spec": spec,
            "step": step,
            "page": page,
            "can_edit": selectors.user_can_edit(request.user, pipeline),
            "base_version": base_version,
            "conflict": conflict,
            "conflict_hint": _resubmit_hint(conflict, "Save step") if conflict else "",
            "base_error": base_error,
            "svg": _svg(
                spec, step_url=_step_url(pipeline), rankdir=EDITOR_RANKDIR, **dag.expand_from_query(request.GET)
            ),
            "current_dom_id": dag.node_ids(spec).get(step.name, "") if step else "",
            "start_from": page.start_from,
            "start_component_id": request.POST.get("component") or request.GET.get("component") or "",
            "components": components_visible_to(request.user).order_by("name", "-created_at") if step is None else None,
            "nav": "pipelines",
            "tab": "editor",
            **_problems_context(page.problems),
        },
        status=status,
    )


@login_required
def step_create(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    if not selectors.user_can_edit(request.user, pipeline):
        return _forbidden(request, pipeline)
    return _step_page(request, pipeline, step_name=None)


@login_required
def step_edit(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    return _step_page(request, pipeline, step_name=name)


@login_required
@require_POST
def step_delete(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    if not selectors.user_can_edit(request.user, pipeline):
        return _forbidden(request, pipeline)
    base_form = BaseVersionForm(request.POST, pipeline=pipeline)
    if not base_form.is_valid():
        then = f"Step {name} is still there: press its Remove button again to remove it."
        return _render_editor(request, pipeline, base_error=_base_error(base_form, then), status=400)
    number = base_form.cleaned_data["base_version"]
    if name not in services.pipeline_base_spec(pipeline=pipeline, number=number).jobs:
        raise Http404("No such step")
    try:
        saved = services.pipeline_step_remove(pipeline=pipeline, name=name, author=request.user, base_version=number)
    except services.EditConflict as conflict:
        hint = (
            f"Step {name} was not removed. If you still want it gone from v{conflict.latest.number},"
            " press its Remove button again."
        )
        return _render_editor(
            request, _with_latest(pipeline, conflict), conflict=conflict, conflict_hint=hint, status=409
        )
    except SpecError as exc:
        for problem in exc.problems:
            if problem.severity == "error":
                messages.error(request, f"Could not remove {name}: {problem.message}")
    else:
        messages.success(request, f"Removed step {name}." + _merged_text(saved))
    return redirect(pipeline)


# --- versions and export -------------------------------------------------------------


@login_required
def pipeline_versions(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    page = Paginator(selectors.pipeline_versions(pipeline=pipeline), VERSIONS_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    rows = []
    for version in page.object_list:
        spec = from_json(version.spec)  # the graph needs no file contents
        rows.append({"version": version, "spec": spec, "svg": _svg(spec), "dag_id": f"dag-v{version.number}"})
    return render(
        request,
        "pipelines_ui/version_list.html",
        {
            "pipeline": pipeline,
            "page": page,
            "rows": rows,
            "can_edit": selectors.user_can_edit(request.user, pipeline),
            "nav": "pipelines",
            "tab": "versions",
        },
    )


def _render_version(
    request: HttpRequest,
    pipeline: Pipeline,
    version: PipelineVersion,
    *,
    conflict: services.EditConflict | None = None,
    conflict_hint: str = "",
    base_error: str = "",
    status: int = 200,
) -> HttpResponse:
    spec = services.version_spec_with_files(version)
    files = sorted((key, len(data)) for key, data in spec.files.items())
    return render(
        request,
        "pipelines_ui/version_detail.html",
        {
            "pipeline": pipeline,
            "version": version,
            "spec": spec,
            "steps": list(spec.jobs.values()),
            "files": files,
            "svg": _svg(spec),
            "is_latest": version.pk == pipeline.latest_version_id,
            "can_edit": selectors.user_can_edit(request.user, pipeline),
            "base_version": _latest_number(pipeline),
            "conflict": conflict,
            "conflict_hint": conflict_hint,
            "base_error": base_error,
            "nav": "pipelines",
            "tab": "versions",
        },
        status=status,
    )


@login_required
def version_detail(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    return _render_version(request, pipeline, _get_version_for_user(request, pipeline, number))


def _against_number(request: HttpRequest, pipeline: Pipeline, number: int) -> int | None:
    """The version to compare with: `?against=<m>`, else the one before `number` (None for the first)."""
    raw = request.GET.get("against")
    if raw is None or raw == "":
        return pipeline.versions.filter(number__lt=number).order_by("-number").values_list("number", flat=True).first()
    try:
        return int(raw)
    except ValueError:
        raise Http404("No such version to compare with.") from None


@login_required
def version_diff(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    version = _get_version_for_user(request, pipeline, number)
    against_number = _against_number(request, pipeline, number)
    against = _get_version_for_user(request, pipeline, against_number) if against_number is not None else None
    parts, lines, files = [], [], []
    if against is not None:
        # The sha256 map stands in for file contents: enough to tell which code changed, no blob read.
        before = from_json(against.spec, dict(against.files or {}))
        after = from_json(version.spec, dict(version.files or {}))
        parts = changed_parts(before, after)
        lines = yaml_diff(before, after, before_name=f"v{against.number}", after_name=f"v{version.number}")
        old_files, new_files = version_file_contents(against, version)
        files = code_diff(old_files, new_files, before_name=f"v{against.number}", after_name=f"v{version.number}")
    return render(
        request,
        "pipelines_ui/version_diff.html",
        {
            "pipeline": pipeline,
            "version": version,
            "against": against,
            "parts": parts,
            "lines": lines,
            "files": files,
            "numbers": selectors.pipeline_versions(pipeline=pipeline).values_list("number", flat=True),
            "can_edit": selectors.user_can_edit(request.user, pipeline),
            "nav": "pipelines",
            "tab": "versions",
        },
    )


@login_required
@require_POST
def version_restore(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    if not selectors.user_can_edit(request.user, pipeline):
        return _forbidden(request, pipeline)
    version = _get_version_for_user(request, pipeline, number)
    base_form = BaseVersionForm(request.POST, pipeline=pipeline)
    if not base_form.is_valid():
        then = f"Press “Restore as newest” again to restore v{number}."
        return _render_version(request, pipeline, version, base_error=_base_error(base_form, then), status=400)
    try:
        restored = services.pipeline_restore_version(
            pipeline=pipeline, version=version, author=request.user, base_version=base_form.cleaned_data["base_version"]
        )
    except services.EditConflict as conflict:
        hint = (
            f"v{number} was not restored: restoring it now would undo these changes too."
            " Press “Restore as newest” again if that is what you want."
        )
        return _render_version(
            request, _with_latest(pipeline, conflict), version, conflict=conflict, conflict_hint=hint, status=409
        )
    except SpecError as exc:
        for problem in exc.problems:
            if problem.severity == "error":
                messages.error(request, f"Could not restore v{number}: {problem}")
        return redirect("version_detail", pk=pipeline.pk, number=number)
    if restored.number == number:
        messages.info(request, f"v{number} is already the latest version.")
    else:
        messages.success(request, f"Restored v{number} as v{restored.number}.")
    return redirect(pipeline)


@login_required
def pipeline_export(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    raw = request.GET.get("version", "")
    if raw:
        if not raw.isdigit():
            raise Http404("No such version")
        version = _get_version_for_user(request, pipeline, int(raw))
    elif pipeline.latest_version is not None:
        version = pipeline.latest_version
    else:
        raise Http404("This pipeline has no version yet")
    data = to_zip_bytes(services.version_spec_with_files(version))
    filename = f"{slugify(pipeline.name) or 'pipeline'}-v{version.number}.zip"
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- sign-in ---------------------------------------------------------------------------


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """The sign-in page again, saying that this username is locked out from this address and
    for how long (django-axes' AXES_LOCKOUT_CALLABLE); 429, whatever password was given.
    """
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    cool_off = axes_helpers.get_cool_off(request)
    context = {
        "form": AuthenticationForm(request, initial={"username": username}),
        "next": request.POST.get("next") or request.GET.get("next", ""),
        "locked_out_minutes": math.ceil(cool_off.total_seconds() / 60) if cool_off else None,
    }
    return render(request, "registration/login.html", context, status=429)
