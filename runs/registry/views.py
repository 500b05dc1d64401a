"""Model pages: the list, a model with its versions, metrics and parameters, an upload, "Register as model".

Seeing a model needs membership of its team (else 404); creating versions and archiving need
the editor or admin role (else 403). Downloads are for viewers too.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from pipelines_ui.search import search_text
from pipelines_ui.selectors import EDIT_ROLES, user_editable_teams, user_role
from pipelines_ui.uploads import fit_filename
from runs import downloads, selectors
from runs.data_assets import DataError
from runs.data_preview import version_files
from runs.models import StepOutput
from runs.registry import services
from runs.registry.models import Flavour, ModelAsset, ModelVersion


def _model_for_user(request: HttpRequest, model_id: int) -> ModelAsset:
    return get_object_or_404(
        ModelAsset.objects.filter(team__memberships__user=request.user).select_related("team"), pk=model_id
    )


def _require_editor(request: HttpRequest, team) -> None:
    if user_role(request.user, team) not in EDIT_ROLES:
        raise PermissionDenied("Viewers cannot change models")


def _version(model: ModelAsset, version: str) -> ModelVersion:
    return get_object_or_404(model.versions.select_related("artifact", "created_by"), version=version)


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    query = search_text(request.GET)
    models = ModelAsset.objects.filter(team__memberships__user=request.user).select_related("team")
    if query:
        models = models.filter(Q(name__icontains=query) | Q(versions__description__icontains=query)).distinct()
    models = models.annotate(version_count=Count("versions", distinct=True), latest_seq=Max("versions__seq"))
    rows = []
    for model in models.order_by("name", "team__name")[:500]:
        latest = model.versions.filter(seq=model.latest_seq).first()
        rows.append({"model": model, "latest": latest, "count": model.version_count})
    return render(
        request,
        "registry/model_list.html",
        {"rows": rows, "query": query, "can_create": user_editable_teams(request.user).exists(), "nav": "models"},
    )


@login_required
def model_detail(request: HttpRequest, model_id: int) -> HttpResponse:
    model = _model_for_user(request, model_id)
    versions = list(model.versions.select_related("artifact", "created_by", "step_output__step_run"))
    if not versions:
        raise Http404("This model has no versions")
    wanted = request.GET.get("v")
    selected = next((v for v in versions if v.version == wanted), versions[0])
    return render(
        request,
        "registry/model_detail.html",
        {
            "model": model,
            "versions": versions,
            "selected": selected,
            "files": version_files(selected)[:200],
            "can_edit": user_role(request.user, model.team) in EDIT_ROLES,
            "runs_read": selected.run_inputs.select_related("run__pipeline").order_by("-run_id")[:20],
            "deployments": selected.deployments.all()[:20],
            "nav": "models",
        },
    )


@login_required
def model_download(request: HttpRequest, model_id: int, version: str) -> HttpResponse:
    model = _model_for_user(request, model_id)
    selected = _version(model, version)
    files = version_files(selected)
    if not files:
        raise Http404("The files of this version are missing from the store")
    response = downloads.StreamedResponse(
        downloads.zip_stream(selected.artifact, files), content_type="application/zip"
    )
    filename = f"{downloads.safe_filename(model.name)}-{downloads.safe_filename(selected.version)}.zip"
    response["Content-Disposition"] = downloads.disposition(filename)
    return response


@login_required
@require_POST
def model_archive_view(request: HttpRequest, model_id: int, version: str) -> HttpResponse:
    model = _model_for_user(request, model_id)
    _require_editor(request, model.team)
    selected = _version(model, version)
    archived = request.POST.get("archived", "1") == "1"
    services.model_archive(version=selected, archived=archived)
    messages.success(request, f"Version {selected.version} {'archived' if archived else 'restored'}.")
    return redirect(selected.get_absolute_url())


class ModelUploadForm(forms.Form):
    team = forms.ModelChoiceField(queryset=None, empty_label=None)
    name = forms.CharField(max_length=255, help_text="Letters, digits, '_', '-' and '.'")
    version = forms.CharField(max_length=64, required=False, help_text="Leave empty for the next number")
    flavour = forms.ChoiceField(choices=Flavour.choices, initial=Flavour.CUSTOM)
    file = forms.FileField(help_text="The model file, e.g. model.joblib or model.pkl")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = user_editable_teams(user)


@login_required
def model_upload(request: HttpRequest) -> HttpResponse:
    if not user_editable_teams(request.user).exists():
        raise PermissionDenied("Registering a model needs the editor role in a team")
    form = ModelUploadForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        upload = data["file"]
        # Only the last part of the browser's name, and never a dot name: the name is shown, not trusted.
        filename = fit_filename(upload.name, "model")
        work = Path(settings.STEPWISE_WORKDIR)
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="stepwise-model-", dir=work) as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            with (folder / filename).open("wb") as handle:
                for chunk in upload.chunks():
                    handle.write(chunk)
            try:
                created = services.model_create_from_path(
                    team=data["team"],
                    name=data["name"],
                    path=folder,
                    flavour=data["flavour"],
                    version=data["version"] or None,
                    description=data["description"],
                    user=request.user,
                    source=ModelVersion.Source.UPLOAD,
                )
            except DataError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Registered model {created.model.name}:{created.version}.")
                return redirect(created.get_absolute_url())
    return render(request, "registry/model_upload.html", {"form": form, "nav": "models"})


@login_required
@require_POST
def register_step_output_as_model(request: HttpRequest, run_id: int, step_name: str, output_name: str) -> HttpResponse:
    """ "Register as model" on the run page: the step output becomes a model version, no copy made."""
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    _require_editor(request, run.pipeline.team)
    output = get_object_or_404(
        StepOutput.objects.select_related("artifact", "step_run__run__pipeline__team"),
        step_run__run=run,
        step_run__name=step_name,
        name=output_name,
    )
    name = request.POST.get("name", "").strip() or f"{run.pipeline.name}-{step_name}-{output_name}"
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", name).strip("-.") or "model"
    try:
        created = services.model_create_from_step_output(
            step_output=output,
            name=name,
            flavour=request.POST.get("flavour", Flavour.CUSTOM),
            version=request.POST.get("version", "").strip() or None,
            user=request.user,
        )
    except DataError as exc:
        messages.error(request, str(exc))
        return redirect(run.get_absolute_url())
    messages.success(
        request, f"Registered {output_name} of {step_name} as model {created.model.name}:{created.version}."
    )
    return redirect(created.get_absolute_url())
