"""Datastores: a team's named places for data. Members browse them; editors register a path as
data; team admins add them, with credentials that are stored encrypted and never shown again.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from pipelines_ui.models import Role, Team
from pipelines_ui.selectors import EDIT_ROLES, user_role
from runs import data_assets
from runs.data_assets import DataError
from runs.models import Datastore, DataType


def _admin_teams(user):
    return Team.objects.filter(memberships__user=user, memberships__role=Role.ADMIN).order_by("name")


def _datastore_for_user(request: HttpRequest, datastore_id: int) -> Datastore:
    return get_object_or_404(
        Datastore.objects.filter(team__memberships__user=request.user).select_related("team"), pk=datastore_id
    )


class DatastoreForm(forms.Form):
    team = forms.ModelChoiceField(queryset=None, empty_label=None)
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=Datastore.Kind.choices)
    root = forms.CharField(max_length=1000, help_text="A folder on the server, or s3://bucket/prefix")
    endpoint_url = forms.URLField(
        required=False, assume_scheme="https", help_text="S3-compatible endpoint (MinIO, Ceph); empty for AWS"
    )
    access_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    secret_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = _admin_teams(user)


@login_required
def datastore_list(request: HttpRequest) -> HttpResponse:
    stores = Datastore.objects.filter(team__memberships__user=request.user).select_related("team")
    return render(
        request,
        "runs/datastore_list.html",
        {
            "stores": stores.order_by("team__name", "name"),
            "can_add": _admin_teams(request.user).exists(),
            "nav": "data",
        },
    )


@sensitive_post_parameters("access_key", "secret_key")
@login_required
def datastore_create(request: HttpRequest) -> HttpResponse:
    if not _admin_teams(request.user).exists():
        raise PermissionDenied("Adding a datastore needs the admin role in a team")
    form = DatastoreForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        credentials = {"key": data["access_key"], "secret": data["secret_key"]}
        try:
            store = data_assets.datastore_create(
                team=data["team"],
                name=data["name"],
                kind=data["kind"],
                root=data["root"].strip(),
                options={"endpoint_url": data["endpoint_url"]} if data["endpoint_url"] else {},
                credentials=credentials,
            )
        except DataError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Added datastore {store.name}.")
            return redirect("datastore_detail", store.pk)
    return render(request, "runs/datastore_form.html", {"form": form, "nav": "data"})


@login_required
def datastore_detail(request: HttpRequest, datastore_id: int) -> HttpResponse:
    store = _datastore_for_user(request, datastore_id)
    path = request.GET.get("path", "").strip().strip("/")[:1000]
    error = ""
    try:
        entries = data_assets.datastore_browse(store, path)
    except DataError as exc:
        entries, error = [], str(exc)
    crumbs = []
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        crumbs.append({"name": part, "path": "/".join(parts[: i + 1])})
    for entry in entries:
        entry["path"] = f"{path}/{entry['name']}".strip("/")
    return render(
        request,
        "runs/datastore_detail.html",
        {
            "store": store,
            "path": path,
            "crumbs": crumbs,
            "parent": "/".join(parts[:-1]),
            "entries": entries,
            "error": error,
            "has_credentials": bool(store.credentials),
            "can_register": user_role(request.user, store.team) in EDIT_ROLES,
            "nav": "data",
        },
    )


@login_required
@require_POST
def datastore_register(request: HttpRequest, datastore_id: int) -> HttpResponse:
    """A path of the datastore copied into a new data version (editors)."""
    store = _datastore_for_user(request, datastore_id)
    if user_role(request.user, store.team) not in EDIT_ROLES:
        raise PermissionDenied("Viewers cannot create data assets")
    path = request.POST.get("path", "").strip()
    type_ = request.POST.get("type", DataType.URI_FOLDER)
    name = request.POST.get("name", "").strip() or path.rstrip("/").rsplit("/", 1)[-1]
    try:
        created = data_assets.data_create_from_datastore(
            datastore=store, path=path, name=name, type_=type_, user=request.user
        )
    except DataError as exc:
        messages.error(request, str(exc))
        # Back to the folder the path was in, quoted: the path is the user's text (a newline in a
        # redirect's Location is refused by Django with a 500).
        folder = path.rsplit("/", 1)[0] if "/" in path else ""
        return redirect(f"{request.path.rsplit('register/', 1)[0]}?{urlencode({'path': folder})}")
    messages.success(request, f"Created {created.asset.name}:{created.version} from {store.name}/{path}.")
    return redirect(f"{created.asset.get_absolute_url()}?v={created.version}")
