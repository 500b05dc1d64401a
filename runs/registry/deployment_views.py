"""Deployment pages: the list, create, a deployment with its numbers, recent requests, a test
form, swap and roll back. Members see; editors create, swap, roll back and test (as the
`run` scope needs the editor role in the API)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from pipelines_ui.selectors import EDIT_ROLES, user_editable_teams, user_role
from runs.data_assets import DataError
from runs.registry import deployments, scoring_proxy
from runs.registry.models import Deployment, ModelVersion


def _deployment_for_user(request: HttpRequest, deployment_id: int) -> Deployment:
    return get_object_or_404(
        Deployment.objects.filter(team__memberships__user=request.user).select_related(
            "team", "model_version__model", "serving_version", "previous_version"
        ),
        pk=deployment_id,
    )


def _id_text(text: str) -> bool:
    """Digits int() reads into a database id (not '²', not 40 digits)."""
    return text.isascii() and text.isdigit() and len(text) < 19


def _require_editor(request: HttpRequest, team) -> None:
    if user_role(request.user, team) not in EDIT_ROLES:
        raise PermissionDenied("Viewers cannot change deployments")


@login_required
def deployment_list(request: HttpRequest) -> HttpResponse:
    rows = Deployment.objects.filter(team__memberships__user=request.user).select_related(
        "team", "model_version__model"
    )
    return render(
        request,
        "registry/deployment_list.html",
        {"deployments": rows[:500], "can_create": user_editable_teams(request.user).exists(), "nav": "models"},
    )


class DeploymentForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Part of the scoring URL: letters, digits, '_', '-' and '.'")
    model_version = forms.ModelChoiceField(queryset=None, empty_label=None, label="Model version")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model_version"].queryset = ModelVersion.objects.filter(
            model__team__in=user_editable_teams(user), archived=False
        ).select_related("model__team")
        self.fields["model_version"].label_from_instance = lambda v: f"{v.model.team.name} / {v} ({v.flavour})"


@login_required
def deployment_create(request: HttpRequest) -> HttpResponse:
    if not user_editable_teams(request.user).exists():
        raise PermissionDenied("Deploying a model needs the editor role in a team")
    initial = {}
    if _id_text(request.GET.get("version", "")):
        initial["model_version"] = int(request.GET["version"])
    form = DeploymentForm(request.POST or None, initial=initial, user=request.user)
    if request.method == "POST" and form.is_valid():
        version = form.cleaned_data["model_version"]
        try:
            created = deployments.deployment_create(
                team=version.model.team, name=form.cleaned_data["name"], model_version=version, user=request.user
            )
        except DataError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Deployed {version} as {created.name}: its scorer starts in a moment.")
            return redirect(created.get_absolute_url())
    return render(request, "registry/deployment_form.html", {"form": form, "nav": "models"})


def _detail(request: HttpRequest, deployment: Deployment, *, test_body: str = "", test_result=None) -> HttpResponse:
    return render(
        request,
        "registry/deployment_detail.html",
        {
            "deployment": deployment,
            "stats": deployments.deployment_stats(deployment),
            "recent": deployment.requests.select_related("model_version__model")[:20],
            "versions": deployment.model_version.model.versions.filter(archived=False),
            "can_edit": user_role(request.user, deployment.team) in EDIT_ROLES,
            "test_body": test_body or '{"rows": [{"x": 1.0}]}',
            "test_result": test_result,
            "nav": "models",
        },
    )


@login_required
def deployment_detail(request: HttpRequest, deployment_id: int) -> HttpResponse:
    return _detail(request, _deployment_for_user(request, deployment_id))


@login_required
@require_POST
def deployment_swap_view(request: HttpRequest, deployment_id: int) -> HttpResponse:
    deployment = _deployment_for_user(request, deployment_id)
    _require_editor(request, deployment.team)
    wanted = request.POST.get("version", "")
    versions = deployment.model_version.model.versions
    version = versions.filter(pk=int(wanted)).first() if _id_text(wanted) else None
    try:
        if version is None:
            raise DataError("choose a version of the deployed model")
        deployments.deployment_swap(deployment=deployment, model_version=version)
    except DataError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Swapping to {version}: requests move to it once its scorer answers.")
    return redirect(deployment.get_absolute_url())


@login_required
@require_POST
def deployment_rollback_view(request: HttpRequest, deployment_id: int) -> HttpResponse:
    deployment = _deployment_for_user(request, deployment_id)
    _require_editor(request, deployment.team)
    try:
        deployments.deployment_rollback(deployment=deployment)
    except DataError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Rolling back to {deployment.model_version}.")
    return redirect(deployment.get_absolute_url())


@login_required
@require_POST
def deployment_test(request: HttpRequest, deployment_id: int) -> HttpResponse:
    deployment = _deployment_for_user(request, deployment_id)
    _require_editor(request, deployment.team)
    text = request.POST.get("body", "")[:100_000]
    try:
        payload = json.loads(text)
    except ValueError as exc:
        result = {"status": 400, "body": {"detail": f"not JSON: {exc}"}}
    except RecursionError:
        result = {"status": 400, "body": {"detail": "not JSON this service reads: nested too deeply"}}
    else:
        status, answer = scoring_proxy.score(deployment=deployment, payload=payload)
        result = {"status": status, "body": answer}
    result["text"] = json.dumps(result["body"], indent=2)
    return _detail(request, deployment, test_body=text, test_result=result)
