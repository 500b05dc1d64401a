"""Endpoint pages: the list, one endpoint (versions, default, calls, how to call it), publishing."""

from __future__ import annotations

import json
import shlex
from urllib.parse import quote

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from pipelines_ui import selectors
from pipelines_ui.api import endpoints
from pipelines_ui.api.endpoint_forms import EndpointForm, EndpointVersionForm
from pipelines_ui.api.models import Endpoint
from pipelines_ui.models import Pipeline, Role
from runs.specs import version_spec

CALLS_PER_PAGE = 50


def _team_ids(user) -> list[int]:
    return list(selectors.user_teams(user).values_list("pk", flat=True))


def _endpoint(request: HttpRequest, endpoint_id: int) -> Endpoint:
    endpoint = endpoints.endpoints_visible(_team_ids(request.user)).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Http404("No such endpoint")
    return endpoint


def _require_admin(user, team) -> None:
    if selectors.user_role(user, team) != Role.ADMIN:
        raise PermissionDenied("Only the team's admins manage its endpoints")


def call_examples(request: HttpRequest, endpoint: Endpoint) -> dict[str, str]:
    """A ready `curl` line and Python snippet, with the pipeline's inputs and their defaults."""
    url = request.build_absolute_uri(f"/api/v1/endpoints/{quote(endpoint.team.name, safe='')}/{endpoint.name}/runs/")
    spec = version_spec(endpoint.default_version)
    inputs = {
        name: decl.default if decl.default is not None else f"<{decl.type}>"
        for name, decl in spec.inputs.items()
        if decl.data is None
    }
    body = json.dumps({"inputs": inputs})
    curl = (
        f"curl -X POST {shlex.quote(url)} \\\n"
        '  -H "Authorization: Bearer $STEPWISE_TOKEN" \\\n'
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(body)}"
    )
    python = (
        "import os, requests\n\n"
        f"response = requests.post(\n    {url!r},\n"
        '    headers={"Authorization": f"Bearer {os.environ[\'STEPWISE_TOKEN\']}"},\n'
        f'    json={{"inputs": {inputs!r}}},\n    timeout=30,\n)\n'
        'response.raise_for_status()\nprint(response.json()["url"])'
    )
    return {"url": url, "curl": curl, "python": python}


@login_required
def endpoint_list(request: HttpRequest) -> HttpResponse:
    rows = endpoints.endpoints_visible(_team_ids(request.user)).order_by("team__name", "name")
    return render(request, "endpoints/endpoint_list.html", {"endpoints": rows, "nav": "endpoints"})


@login_required
def endpoint_detail(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    is_admin = selectors.user_role(request.user, endpoint.team) == Role.ADMIN
    calls = Paginator(endpoint.calls.select_related("version", "run", "user").order_by("-id"), CALLS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "endpoints/endpoint_detail.html",
        {
            "endpoint": endpoint,
            "versions": endpoint.versions.select_related("version", "added_by"),
            "calls": calls,
            "is_admin": is_admin,
            "version_form": EndpointVersionForm(endpoint=endpoint) if is_admin else None,
            "examples": call_examples(request, endpoint),
            "nav": "endpoints",
        },
    )


@login_required
def endpoint_create(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = get_object_or_404(Pipeline.objects.for_user(request.user).select_related("team"), pk=pk)
    _require_admin(request.user, pipeline.team)
    form = EndpointForm(request.POST or None, pipeline=pipeline, initial={"name": _default_name(pipeline)})
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            endpoint = endpoints.endpoint_create(
                team=pipeline.team,
                name=d["name"],
                pipeline=pipeline,
                user=request.user,
                version=d["version"],
                description=d["description"],
            )
        except endpoints.EndpointError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, f"Published endpoint {endpoint.name}.")
            return redirect("endpoint_detail", endpoint.pk)
    return render(
        request,
        "endpoints/endpoint_create.html",
        {"pipeline": pipeline, "form": form, "has_version": pipeline.latest_version_id is not None, "nav": "endpoints"},
    )


def _default_name(pipeline: Pipeline) -> str:
    from django.utils.text import slugify

    return slugify(pipeline.name)[:100]


@login_required
@require_POST
def endpoint_add_version(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    _require_admin(request.user, endpoint.team)
    form = EndpointVersionForm(request.POST, endpoint=endpoint)
    if not form.is_valid():
        messages.error(request, "Choose a version of the pipeline that the endpoint does not have yet.")
        return redirect("endpoint_detail", endpoint.pk)
    d = form.cleaned_data
    try:
        endpoints.endpoint_add_version(
            endpoint=endpoint, number=d["version"], user=request.user, make_default=d["make_default"]
        )
    except endpoints.EndpointError as exc:
        messages.error(request, str(exc))
    else:
        default = " (now the default)" if d["make_default"] else ""
        messages.success(request, f"Added v{d['version']}{default}.")
    return redirect("endpoint_detail", endpoint.pk)


@login_required
@require_POST
def endpoint_set_default(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    _require_admin(request.user, endpoint.team)
    raw = request.POST.get("version", "")
    try:
        number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else -1
        version = endpoints.endpoint_set_default(endpoint=endpoint, number=number)
    except endpoints.EndpointError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Calls now run v{version.number} unless they name another version.")
    return redirect("endpoint_detail", endpoint.pk)
