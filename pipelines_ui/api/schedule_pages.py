"""Schedule pages: the team-wide list, a pipeline's schedules with the create form, one schedule
(next fire times, every fire with its run), pause, resume and delete (team admins)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from pipelines_ui import selectors
from pipelines_ui.api import schedules
from pipelines_ui.api.models import Schedule
from pipelines_ui.api.schedule_forms import ScheduleForm
from pipelines_ui.models import Membership, Pipeline, Role

FIRES_PER_PAGE = 50
RECENT_IN_LISTS = 5


def _team_ids(user) -> list[int]:
    return list(selectors.user_teams(user).values_list("pk", flat=True))


def _admin_team_ids(user) -> set[int]:
    # One filter on the user's own membership: a second .filter(memberships__...) would join again and
    # match a team where anyone is admin.
    return set(Membership.objects.filter(user=user, role=Role.ADMIN).values_list("team_id", flat=True))


def _schedule(request: HttpRequest, schedule_id: int) -> Schedule:
    schedule = schedules.schedules_visible(_team_ids(request.user)).filter(pk=schedule_id).first()
    if schedule is None:
        raise Http404("No such schedule")
    return schedule


def _require_admin(user, team) -> None:
    if selectors.user_role(user, team) != Role.ADMIN:
        raise PermissionDenied("Only the team's admins manage its schedules")


def _rows(queryset) -> list[dict]:
    """Each schedule with what its list shows: timing in words, next fire times, recent fires."""
    return [
        {
            "schedule": s,
            "timing": schedules.describe_timing(s),
            "next": schedules.next_fire_times(s) if s.enabled else [],
            "recent": list(schedules.recent_fires(s, RECENT_IN_LISTS)),
        }
        for s in queryset
    ]


@login_required
def schedule_list(request: HttpRequest) -> HttpResponse:
    rows = schedules.schedules_visible(_team_ids(request.user)).order_by("team__name", "name")
    return render(
        request,
        "schedules/schedule_list.html",
        {"rows": _rows(rows), "admin_teams": _admin_team_ids(request.user), "nav": "schedules"},
    )


@login_required
def pipeline_schedules(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = get_object_or_404(
        Pipeline.objects.for_user(request.user).select_related("team", "latest_version"), pk=pk
    )
    role = selectors.user_role(request.user, pipeline.team)
    is_admin = role == Role.ADMIN
    form = None
    if request.method == "POST":
        _require_admin(request.user, pipeline.team)
        form = ScheduleForm(request.POST, pipeline=pipeline)
        if form.is_valid():
            target_pipeline, endpoint = form.target_objects()
            try:
                schedule = schedules.schedule_create(
                    team=pipeline.team,
                    settings=form.cleaned_data["settings"],
                    user=request.user,
                    pipeline=target_pipeline,
                    endpoint=endpoint,
                )
            except schedules.ScheduleError as exc:
                form.add_schedule_errors(exc)
            else:
                messages.success(request, f"Schedule {schedule.name} created.")
                return redirect("schedule_detail", schedule.pk)
    elif is_admin:
        form = ScheduleForm(pipeline=pipeline, initial={"name": f"{pipeline.name} nightly"[:100], "cron": "0 2 * * *"})
    rows = schedules.schedules_visible([pipeline.team_id]).filter(Q(pipeline=pipeline) | Q(endpoint__pipeline=pipeline))
    return render(
        request,
        "schedules/pipeline_schedules.html",
        {
            "pipeline": pipeline,
            "rows": _rows(rows.order_by("name")),
            "form": form,
            "is_admin": is_admin,
            "can_edit": role in selectors.EDIT_ROLES,
            "admin_teams": {pipeline.team_id} if is_admin else set(),
            "tab": "schedules",
            "nav": "pipelines",
        },
        status=400 if form is not None and form.is_bound else 200,
    )


@login_required
def schedule_detail(request: HttpRequest, schedule_id: int) -> HttpResponse:
    schedule = _schedule(request, schedule_id)
    fires = Paginator(schedule.fires.select_related("run").order_by("-fire_time"), FIRES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "schedules/schedule_detail.html",
        {
            "schedule": schedule,
            "timing": schedules.describe_timing(schedule),
            "next": schedules.next_fire_times(schedule),
            "fires": fires,
            "is_admin": selectors.user_role(request.user, schedule.team) == Role.ADMIN,
            "nav": "schedules",
        },
    )


@login_required
@require_POST
def schedule_enabled(request: HttpRequest, schedule_id: int) -> HttpResponse:
    schedule = _schedule(request, schedule_id)
    _require_admin(request.user, schedule.team)
    enabled = request.POST.get("enabled") == "1"
    try:
        schedules.schedule_set_enabled(schedule=schedule, enabled=enabled)
    except schedules.ScheduleError as exc:
        messages.error(request, f"Schedule {schedule.name} cannot resume: {exc}. Change it through the API first.")
    else:
        _said_enabled(request, schedule, enabled)
    return redirect(_back(request, schedule))


def _said_enabled(request: HttpRequest, schedule: Schedule, enabled: bool) -> None:
    if enabled:
        messages.success(
            request, f"Schedule {schedule.name} resumed: it fires from now on (nothing paused is caught up)."
        )
    else:
        messages.success(request, f"Schedule {schedule.name} paused.")


@login_required
@require_POST
def schedule_delete(request: HttpRequest, schedule_id: int) -> HttpResponse:
    schedule = _schedule(request, schedule_id)
    _require_admin(request.user, schedule.team)
    pipeline_id = schedule.pipeline_id or schedule.endpoint.pipeline_id
    schedule.delete()
    messages.success(request, f"Schedule {schedule.name} deleted; its runs stay.")
    return redirect("pipeline_schedules", pipeline_id)


def _back(request: HttpRequest, schedule: Schedule) -> str:
    # Only our own paths: never an address taken from the request as it is.
    nxt = request.POST.get("next", "")
    if nxt == "list":
        return reverse("schedule_list")
    if nxt == "pipeline":
        return reverse("pipeline_schedules", args=[schedule.pipeline_id or schedule.endpoint.pipeline_id])
    return reverse("schedule_detail", args=[schedule.pk])
