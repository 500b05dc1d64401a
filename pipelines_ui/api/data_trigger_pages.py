"""Data trigger pages: a pipeline's triggers and a data asset's, each with the create form (team
editors), and pause, resume and delete (team editors)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from pipelines_ui import selectors
from pipelines_ui.api import data_triggers
from pipelines_ui.api.data_trigger_forms import DataTriggerForm, data_inputs
from pipelines_ui.api.models import DataTrigger
from pipelines_ui.models import Pipeline
from runs.models import DataAsset

RECENT_IN_LISTS = 5


def _team_ids(user) -> list[int]:
    return list(selectors.user_teams(user).values_list("pk", flat=True))


def _require_editor(user, team) -> None:
    if selectors.user_role(user, team) not in selectors.EDIT_ROLES:
        raise PermissionDenied("Only the team's editors manage its data triggers")


def _trigger(request: HttpRequest, trigger_id: int) -> DataTrigger:
    trigger = data_triggers.triggers_visible(_team_ids(request.user)).filter(pk=trigger_id).first()
    if trigger is None:
        raise Http404("No such data trigger")
    return trigger


def _rows(queryset) -> list[dict]:
    return [
        {
            "trigger": t,
            "source": data_triggers.describe_source(t),
            "recent": list(t.fires.select_related("run", "data_version")[:RECENT_IN_LISTS]),
        }
        for t in queryset.order_by("name")
    ]


def _page(request: HttpRequest, *, team, pipeline: Pipeline | None, asset: DataAsset | None) -> HttpResponse:
    can_edit = selectors.user_role(request.user, team) in selectors.EDIT_ROLES
    # A pipeline with no data input read by reference has nothing a trigger could bind: say so
    # instead of offering a form whose Input list is empty.
    no_data_input = pipeline is not None and not data_inputs(pipeline)
    form = None
    if request.method == "POST":
        _require_editor(request.user, team)
        form = DataTriggerForm(request.POST, team=team, pipeline=pipeline, asset=asset)
        if form.is_valid():
            try:
                trigger = data_triggers.data_trigger_create(
                    team=team, settings=form.cleaned_data["settings"], user=request.user
                )
            except data_triggers.TriggerError as exc:
                form.add_trigger_errors(exc)
            else:
                messages.success(request, f"Data trigger {trigger.name} created.")
                return redirect(request.path)
    elif can_edit and not no_data_input:
        form = DataTriggerForm(team=team, pipeline=pipeline, asset=asset)
    triggers = data_triggers.triggers_visible([team.pk])
    triggers = triggers.filter(pipeline=pipeline) if pipeline is not None else triggers.filter(asset=asset)
    return render(
        request,
        "data_triggers/data_triggers.html",
        {
            "pipeline": pipeline,
            "asset": asset,
            "rows": _rows(triggers),
            "form": form,
            "can_edit": can_edit,
            "no_data_input": no_data_input,
            "tab": "data_triggers",
            "nav": "pipelines" if pipeline is not None else "data",
        },
        status=400 if form is not None and form.is_bound else 200,
    )


@login_required
def pipeline_data_triggers(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = get_object_or_404(
        Pipeline.objects.for_user(request.user).select_related("team", "latest_version"), pk=pk
    )
    return _page(request, team=pipeline.team, pipeline=pipeline, asset=None)


@login_required
def asset_data_triggers(request: HttpRequest, asset_id: int) -> HttpResponse:
    asset = get_object_or_404(
        DataAsset.objects.filter(team_id__in=_team_ids(request.user)).select_related("team"), pk=asset_id
    )
    return _page(request, team=asset.team, pipeline=None, asset=asset)


def _back(request: HttpRequest, trigger: DataTrigger) -> str:
    # Only our own paths: never an address taken from the request as it is.
    if request.POST.get("next") == "asset" and trigger.asset_id is not None:
        return reverse("asset_data_triggers", args=[trigger.asset_id])
    return reverse("pipeline_data_triggers", args=[trigger.pipeline_id])


@login_required
@require_POST
def data_trigger_enabled(request: HttpRequest, trigger_id: int) -> HttpResponse:
    trigger = _trigger(request, trigger_id)
    _require_editor(request.user, trigger.team)
    enabled = request.POST.get("enabled") == "1"
    data_triggers.data_trigger_set_enabled(trigger=trigger, enabled=enabled)
    if enabled:
        messages.success(request, f"Data trigger {trigger.name} resumed: new data from now on starts runs.")
    else:
        messages.success(request, f"Data trigger {trigger.name} paused.")
    return redirect(_back(request, trigger))


@login_required
@require_POST
def data_trigger_delete(request: HttpRequest, trigger_id: int) -> HttpResponse:
    trigger = _trigger(request, trigger_id)
    _require_editor(request.user, trigger.team)
    back = _back(request, trigger)
    data_triggers.data_trigger_delete(trigger=trigger)
    messages.success(request, f"Data trigger {trigger.name} deleted; its runs stay.")
    return redirect(back)
