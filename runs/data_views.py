"""Data pages: the list, an asset with its versions and a preview, uploads in chunks, "Register as data".

Seeing an asset needs membership of its team (else 404); creating versions, uploading and
archiving need the editor or admin role (else 403). Previews and downloads are for viewers too.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from pipelines_ui.search import search_text
from pipelines_ui.selectors import EDIT_ROLES, user_editable_teams, user_role
from pipelines_ui.uploads import fit_filename
from runs import data_assets, data_preview, downloads, selectors
from runs.data_assets import DataError
from runs.models import DataAsset, DataType, DataVersion, StepOutput

UPLOAD_CHUNK_MAX = 2 * 1024 * 1024
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


def _upload_max() -> int:
    return settings.STEPWISE_DATA_UPLOAD_MAX_BYTES


def _asset_for_user(request: HttpRequest, asset_id: int) -> DataAsset:
    return get_object_or_404(
        DataAsset.objects.filter(team__memberships__user=request.user).select_related("team"), pk=asset_id
    )


def _require_editor(request: HttpRequest, team) -> None:
    if user_role(request.user, team) not in EDIT_ROLES:
        raise PermissionDenied("Viewers cannot change data assets")


def _version(asset: DataAsset, version: str) -> DataVersion:
    return get_object_or_404(asset.versions.select_related("artifact", "created_by"), version=version)


@login_required
def data_list(request: HttpRequest) -> HttpResponse:
    query = search_text(request.GET)
    assets = DataAsset.objects.filter(team__memberships__user=request.user).select_related("team")
    if query:
        assets = assets.filter(Q(name__icontains=query) | Q(versions__description__icontains=query)).distinct()
    assets = assets.annotate(version_count=Count("versions", distinct=True), latest_seq=Max("versions__seq"))
    rows = []
    for asset in assets.order_by("name", "team__name")[:500]:
        latest = asset.versions.filter(seq=asset.latest_seq).first()
        rows.append({"asset": asset, "latest": latest, "count": asset.version_count})
    return render(
        request,
        "runs/data_list.html",
        {
            "rows": rows,
            "query": query,
            "can_create": user_editable_teams(request.user).exists(),
            "nav": "data",
        },
    )


@login_required
def data_detail(request: HttpRequest, asset_id: int) -> HttpResponse:
    asset = _asset_for_user(request, asset_id)
    versions = list(asset.versions.select_related("artifact", "created_by", "step_output__step_run"))
    if not versions:
        raise Http404("This asset has no versions")
    wanted = request.GET.get("v")
    selected = next((v for v in versions if v.version == wanted), versions[0])
    files = data_preview.version_files(selected)
    shown = request.GET.get("file")
    preview = data_preview.preview(selected, shown if shown in files else None)
    return render(
        request,
        "runs/data_detail.html",
        {
            "asset": asset,
            "versions": versions,
            "selected": selected,
            "files": files[: data_preview.MAX_LISTED],
            "more_files": max(0, len(files) - data_preview.MAX_LISTED),
            "preview": preview,
            "can_edit": user_role(request.user, asset.team) in EDIT_ROLES,
            "runs_read": selected.run_inputs.select_related("run__pipeline").order_by("-run_id")[:20],
            "nav": "data",
        },
    )


@login_required
def data_file(request: HttpRequest, asset_id: int, version: str) -> HttpResponse:
    """One file of a version: images inline (raster only), CSV with formulas neutralised, else an attachment."""
    asset = _asset_for_user(request, asset_id)
    selected = _version(asset, version)
    files = data_preview.version_files(selected)
    rel = request.GET.get("path") or (files[0] if files else "")
    if rel not in files:
        raise Http404("No such file in this version")
    return downloads.stored_file_response(
        selected.artifact, rel, raw=request.GET.get("raw") == "1", inline=request.GET.get("inline") == "1"
    )


@login_required
def data_download(request: HttpRequest, asset_id: int, version: str) -> HttpResponse:
    asset = _asset_for_user(request, asset_id)
    selected = _version(asset, version)
    files = data_preview.version_files(selected)
    if not files:
        raise Http404("The files of this version are missing from the store")
    response = downloads.StreamedResponse(
        downloads.zip_stream(selected.artifact, files), content_type="application/zip"
    )
    filename = f"{downloads.safe_filename(asset.name)}-{downloads.safe_filename(selected.version)}.zip"
    response["Content-Disposition"] = downloads.disposition(filename)
    return response


@login_required
@require_POST
def data_archive_view(request: HttpRequest, asset_id: int, version: str) -> HttpResponse:
    asset = _asset_for_user(request, asset_id)
    _require_editor(request, asset.team)
    selected = _version(asset, version)
    archived = request.POST.get("archived", "1") == "1"
    data_assets.data_archive(version=selected, archived=archived)
    messages.success(request, f"Version {selected.version} {'archived' if archived else 'restored'}.")
    return redirect(f"{asset.get_absolute_url()}?v={selected.version}")


# ---- creating: upload, register a step output ------------------------------------------


class DataUploadForm(forms.Form):
    team = forms.ModelChoiceField(queryset=None, empty_label=None)
    name = forms.CharField(max_length=255, help_text="Letters, digits, '_', '-' and '.'")
    version = forms.CharField(max_length=64, required=False, help_text="Leave empty for the next number")
    type = forms.ChoiceField(
        choices=[(DataType.URI_FOLDER, "uri_folder: a folder holding the file"), (DataType.URI_FILE, "uri_file")],
        initial=DataType.URI_FILE,
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    upload_id = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = user_editable_teams(user)


def _upload(request: HttpRequest, upload_id: str) -> tuple[Path, dict]:
    """An upload of this user's, or 404 (ids are unguessable, and bound to their user)."""
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise Http404("No such upload")
    folder = data_assets.uploads_dir() / upload_id
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        raise Http404("No such upload") from None
    if meta.get("user") != request.user.pk:
        raise Http404("No such upload")
    return folder, meta


def upload_begin(*, user, filename: str, size: int) -> str:
    """A new, empty upload of `user`'s: its id (the chunks and the version form name it)."""
    upload_id = uuid.uuid4().hex
    folder = data_assets.uploads_dir() / upload_id
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"user": user.pk, "filename": filename, "size": size}))
    (folder / "data").touch()
    return upload_id


@login_required
def data_upload(request: HttpRequest) -> HttpResponse:
    if not user_editable_teams(request.user).exists():
        raise PermissionDenied("Uploading data needs the editor role in a team")
    form = DataUploadForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            folder, meta = _upload(request, data["upload_id"])
        except Http404:
            form.add_error(None, "Choose a file and wait for its upload to finish before creating the version.")
        else:
            part = folder / "data"
            if not part.exists() or part.stat().st_size != meta["size"]:
                form.add_error(None, "The upload is not complete yet: resume it, then create the version.")
            else:
                named = folder / "named" / meta["filename"]
                named.parent.mkdir(exist_ok=True)
                part.rename(named)
                source = named if data["type"] == DataType.URI_FILE else named.parent
                try:
                    created = data_assets.data_create_from_path(
                        team=data["team"],
                        name=data["name"],
                        path=source,
                        type_=data["type"],
                        version=data["version"] or None,
                        description=data["description"],
                        user=request.user,
                        source=DataVersion.Source.UPLOAD,
                    )
                except DataError as exc:
                    named.rename(part)
                    form.add_error(None, str(exc))
                else:
                    shutil.rmtree(folder, ignore_errors=True)
                    messages.success(request, f"Created {created.asset.name}:{created.version}.")
                    return redirect(f"{created.asset.get_absolute_url()}?v={created.version}")
    return render(
        request,
        "runs/data_upload.html",
        {"form": form, "chunk_size": 1024 * 1024, "max_bytes": _upload_max(), "nav": "data"},
    )


@login_required
@require_POST
def data_upload_start(request: HttpRequest) -> JsonResponse:
    if not user_editable_teams(request.user).exists():
        return JsonResponse({"detail": "uploading data needs the editor role in a team"}, status=403)
    filename = fit_filename(request.POST.get("filename", ""), "")
    try:
        size = int(request.POST.get("size", ""))
    except ValueError:
        return JsonResponse({"detail": "size must be a whole number of bytes"}, status=400)
    if not filename:
        return JsonResponse({"detail": "a file name is required"}, status=400)
    if size < 0 or size > _upload_max():
        return JsonResponse({"detail": f"the file must hold at most {_upload_max()} bytes"}, status=400)
    upload_id = upload_begin(user=request.user, filename=filename, size=size)
    return JsonResponse({"id": upload_id, "offset": 0, "size": size}, status=201)


@login_required
@require_http_methods(["GET", "PUT", "POST"])
def data_upload_chunk(request: HttpRequest, upload_id: str) -> JsonResponse:
    """GET: how much arrived (to resume). PUT/POST `?offset=N` with the bytes: appended when N is that much."""
    folder, meta = _upload(request, upload_id)
    part = folder / "data"
    current = part.stat().st_size
    if request.method == "GET":
        return JsonResponse({"id": upload_id, "offset": current, "size": meta["size"]})
    try:
        offset = int(request.GET.get("offset", ""))
    except ValueError:
        return JsonResponse({"detail": "offset must be a whole number"}, status=400)
    if offset != current:
        # A repeated or out-of-order chunk: the client resumes from what arrived.
        return JsonResponse({"detail": f"expected offset {current}", "offset": current}, status=409)
    body = request.body
    if len(body) > UPLOAD_CHUNK_MAX:
        return JsonResponse({"detail": f"a chunk holds at most {UPLOAD_CHUNK_MAX} bytes"}, status=400)
    if current + len(body) > meta["size"]:
        return JsonResponse({"detail": "more bytes than the size announced"}, status=400)
    with part.open("ab") as handle:
        handle.write(body)
    return JsonResponse({"id": upload_id, "offset": current + len(body), "size": meta["size"]})


@login_required
@require_POST
def register_step_output(request: HttpRequest, run_id: int, step_name: str, output_name: str) -> HttpResponse:
    """ "Register as data" on the run page: the step output becomes a new version, no copy made."""
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    _require_editor(request, run.pipeline.team)
    output = get_object_or_404(
        StepOutput.objects.select_related("artifact", "step_run__run__pipeline__team"),
        step_run__run=run,
        step_run__name=step_name,
        name=output_name,
    )
    name = request.POST.get("name", "").strip() or f"{run.pipeline.name}-{step_name}-{output_name}"
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", name).strip("-.") or "data"
    try:
        created = data_assets.data_create_from_step_output(
            step_output=output, name=name, version=request.POST.get("version", "").strip() or None, user=request.user
        )
    except DataError as exc:
        messages.error(request, str(exc))
        return redirect(run.get_absolute_url())
    messages.success(request, f"Registered {output_name} of {step_name} as {created.asset.name}:{created.version}.")
    return redirect(f"{created.asset.get_absolute_url()}?v={created.version}")
