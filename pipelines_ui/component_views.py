"""The component library's pages: list, one version, register from an upload or from a pipeline's step.

Seeing a component needs membership of its team or instance visibility (else 404);
registering needs the editor or admin role in the team it goes to (else 403).
"""

from __future__ import annotations

import yaml
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from pipelines_ui import component_selectors as cs
from pipelines_ui import components, selectors
from pipelines_ui.component_forms import ComponentRegisterForm, StepComponentForm
from pipelines_ui.components import ComponentError, ComponentRoleError
from pipelines_ui.models import Membership, Team
from pipelines_ui.search import search_text
from pipelines_ui.services import pipeline_working_spec
from pipelines_ui.uploads import UploadError
from pipelines_ui.views import _forbidden, _get_pipeline_for_user
from stepwise.spec import SpecError
from stepwise.spec.model import Problem
from stepwise.spec.parallel import SETTINGS_KEYS

PARALLEL_SHOWN = frozenset(SETTINGS_KEYS)

# The content viewer shows text files up to this size; larger or binary ones are only listed.
MAX_SHOWN_BYTES = 256 * 1024


def _refused(request: HttpRequest, team: Team, role: str | None) -> HttpResponse:
    context = {"team": team, "role": role, "what": "register components in it", "needs": "editor"}
    return render(request, "teams/forbidden.html", {**context, "nav": "components"}, status=403)


@login_required
def component_list(request: HttpRequest) -> HttpResponse:
    query = search_text(request.GET)
    rows = cs.component_list(user=request.user, query=query)
    return render(
        request,
        "components/component_list.html",
        {
            "rows": rows,
            "query": query,
            "can_register": selectors.user_editable_teams(request.user).exists(),
            "nav": "components",
        },
    )


def _file_rows(component, shown: str) -> tuple[list[dict], dict | None]:
    code = cs.component_code(component)
    rows, current = [], None
    for rel, data in code.items():
        try:
            text = data.decode("utf-8") if len(data) <= MAX_SHOWN_BYTES and b"\x00" not in data else None
        except UnicodeDecodeError:
            text = None
        row = {"path": rel, "size": len(data), "text": text}
        rows.append(row)
        if rel == shown:
            current = row
    return rows, current


@login_required
def component_detail(request: HttpRequest, component_id: int) -> HttpResponse:
    visible = cs.components_visible_to(request.user)
    component = get_object_or_404(visible, pk=component_id)
    shown = request.GET.get("file", "")
    files, current = _file_rows(component, shown)
    if shown and current is None:
        raise Http404("No such file in this component")
    if current is None and files:
        current = next((f for f in files if f["text"] is not None), None)
    body = component.spec or {}
    # A parallel component has no command: what it runs is its task and run settings.
    command = body.get("command", "")
    if body.get("type") == "parallel":
        command = yaml.safe_dump({k: v for k, v in body.items() if k in PARALLEL_SHOWN}, sort_keys=False)
    return render(
        request,
        "components/component_detail.html",
        {
            "component": component,
            "body": body,
            "command": command,
            "environment": body.get("environment", ""),
            "env_is_text": isinstance(body.get("environment", ""), str),
            "versions": list(visible.filter(team=component.team, name=component.name).order_by("-created_at", "-pk")),
            "files": files,
            "current": current,
            "used_by": cs.component_used_by(component=component, user=request.user),
            "reference": f"azureml:{component.name}:{component.version}",
            "is_member": selectors.user_role(request.user, component.team) is not None,
            "nav": "components",
        },
    )


def _refuse_viewer_team(request: HttpRequest) -> HttpResponse | None:
    """A POST naming a team where the user may only view: 403 (other teams are left to the form's choices)."""
    raw = request.POST.get("team", "") if request.method == "POST" else ""
    if not (raw.isdigit() and len(raw) <= 18):
        return None
    membership = Membership.objects.select_related("team").filter(user=request.user, team_id=int(raw)).first()
    if membership is None or membership.role in selectors.EDIT_ROLES:
        return None
    return _refused(request, membership.team, membership.role)


@login_required
def component_register(request: HttpRequest) -> HttpResponse:
    if refused := _refuse_viewer_team(request):
        return refused
    form = ComponentRegisterForm(request.POST or None, request.FILES or None, user=request.user)
    problems: list[Problem] = []
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            d = form.cleaned_data
            try:
                registered = components.component_register_upload(
                    team=d["team"],
                    uploaded=d["file"],
                    user=request.user,
                    name=d["name"].strip(),
                    version=d["version"].strip(),
                    visibility=d["visibility"],
                )
            except UploadError as exc:
                form.add_error("file", str(exc))
            except SpecError as exc:
                problems = exc.problems
            except ComponentRoleError as exc:
                form.add_error("visibility", str(exc))
            except ComponentError as exc:
                form.add_error(None, str(exc))
            else:
                done = messages.success if registered.created else messages.info
                done(request, registered.message[:1].upper() + registered.message[1:] + ".")
                return redirect("component_detail", component_id=registered.component.pk)
    return render(
        request,
        "components/component_register.html",
        {
            "form": form,
            "errors": [p for p in problems if p.severity == "error"],
            "warnings": [p for p in problems if p.severity != "error"],
            "nav": "components",
        },
        status=status,
    )


@login_required
def component_register_step(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    pipeline = _get_pipeline_for_user(request, pk)
    if not selectors.user_can_edit(request.user, pipeline):
        return _forbidden(request, pipeline)
    version = pipeline.latest_version
    step = pipeline_working_spec(pipeline=pipeline).jobs.get(name) if version is not None else None
    if version is None or step is None:
        raise Http404("No such step")
    initial = {"name": step.component_name or step.name}
    form = StepComponentForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            d = form.cleaned_data
            try:
                registered = components.component_register_step(
                    team=pipeline.team,
                    version=version,
                    step_name=name,
                    user=request.user,
                    name=d["name"].strip(),
                    component_version=d["version"].strip(),
                    visibility=d["visibility"],
                )
            except ComponentRoleError as exc:
                form.add_error("visibility", str(exc))
            except (ComponentError, SpecError) as exc:
                form.add_error(None, str(exc))
            else:
                done = messages.success if registered.created else messages.info
                done(request, registered.message[:1].upper() + registered.message[1:] + ".")
                return redirect("component_detail", component_id=registered.component.pk)
    return render(
        request,
        "components/component_register_step.html",
        {"form": form, "pipeline": pipeline, "step": step, "version": version, "nav": "components"},
        status=status,
    )
