"""`/api/v1/schedules/`: members read a team's schedules; its admins (admin scope) change them."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from pipelines_ui.api import access, schedules
from pipelines_ui.api import serializers as s
from pipelines_ui.api.errors import error_response, field_error
from pipelines_ui.api.models import Endpoint, Schedule, Scope
from pipelines_ui.api.pagination import paginate
from pipelines_ui.api.params import DIGITS, one, positive_int
from pipelines_ui.api.parsers import JSONParser
from pipelines_ui.models import Pipeline, Team

ERRORS = {
    400: OpenApiResponse(s.ErrorSerializer, description="bad input: `errors` names each problem"),
    401: OpenApiResponse(s.ErrorSerializer, description="no token, or an unknown, expired or revoked one"),
    403: OpenApiResponse(s.ErrorSerializer, description="a scope or role that does not allow it"),
    404: OpenApiResponse(s.ErrorSerializer, description="no such object, or another team's"),
    429: OpenApiResponse(s.ErrorSerializer, description="throttled: see Retry-After"),
}
READ_ERRORS = {k: v for k, v in ERRORS.items() if k != 400}
TAGS = ["schedules"]


def _schedule(request, schedule_id: int, scope: str = Scope.READ) -> Schedule:
    schedule = schedules.schedules_visible(access.visible_team_ids(request)).filter(pk=schedule_id).first()
    if schedule is None:
        raise Http404("No such schedule")
    access.require(request, schedule.team_id, scope)
    return schedule


def _schedule_error(exc: schedules.ScheduleError) -> Response:
    return error_response(str(exc), [field_error(k, v) for k, v in exc.errors.items()])


def _body(request, schedule: Schedule, code: int = status.HTTP_200_OK) -> Response:
    schedule = schedules.schedules_visible([schedule.team_id]).get(pk=schedule.pk)
    return Response(s.ScheduleSerializer(schedule, context={"request": request}).data, status=code)


class ScheduleList(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("pipeline", DIGITS, description="only this pipeline's schedules (its id); empty: all")
        ],
        responses={200: s.SchedulePage, **{k: ERRORS[k] for k in (400, 401, 403, 429)}},
        tags=TAGS,
        operation_id="schedules_list",
    )
    def get(self, request):
        access.require_scope(request, Scope.READ)
        qs = schedules.schedules_visible(access.visible_team_ids(request))
        if (pipeline := positive_int(one(request.query_params, "pipeline"), "pipeline", max_digits=18)) is not None:
            qs = qs.filter(pipeline_id=pipeline) | qs.filter(endpoint__pipeline_id=pipeline)
        return paginate(request, qs.order_by("team__name", "name", "pk"), s.ScheduleSerializer)

    @extend_schema(request=s.ScheduleCreateSerializer, responses={201: s.ScheduleSerializer, **ERRORS}, tags=TAGS)
    def post(self, request):
        """Schedule runs of a pipeline or an endpoint (team admins): cron + timezone, or interval_seconds."""
        access.require_scope(request, Scope.ADMIN)
        form = s.ScheduleCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        team = None
        if "team" in data:
            team = access.team_named(request, data["team"])
            access.require(request, team, Scope.ADMIN)
        if ("pipeline" in data) == ("endpoint" in data):
            message = "give pipeline (an id) or endpoint (a name), not both or neither"
            return error_response(message, [field_error("pipeline", message)])
        if "pipeline" in data:
            target = _pipeline_target(request, data["pipeline"], team)
        else:
            target = _endpoint_target(request, data["endpoint"], team)
        if isinstance(target, Response):
            return target
        if team is None:
            team = target.team
            access.require(request, team, Scope.ADMIN)
        settings = schedules.Settings(
            name=data.get("name"),
            cron=data.get("cron") or "",
            timezone=data["timezone"],
            interval_seconds=data.get("interval_seconds"),
            inputs=data["inputs"],
            enabled=data["enabled"],
            catchup=data["catchup"],
        )
        pipeline, endpoint = (target, None) if isinstance(target, Pipeline) else (None, target)
        try:
            schedule = schedules.schedule_create(
                team=team, settings=settings, user=request.user, pipeline=pipeline, endpoint=endpoint
            )
        except schedules.ScheduleError as exc:
            return _schedule_error(exc)
        return _body(request, schedule, status.HTTP_201_CREATED)


def _pipeline_target(request, pipeline_id: int, team: Team | None) -> Pipeline | Response:
    """The pipeline to schedule, seen as its page sees it: another team's is 404 when no team is
    named; with `team`, one outside it is a 400 (naming `team` when the caller sees its team)."""
    visible = access.visible_team_ids(request)
    pipeline = (
        Pipeline.objects.filter(pk=pipeline_id, team_id__in=visible).select_related("team", "latest_version").first()
    )
    if team is None:
        if pipeline is None:
            raise Http404("No such pipeline")
        return pipeline
    if pipeline is None:
        message = f"team {team.name} has no pipeline {pipeline_id}"
        return error_response(message, [field_error("pipeline", message)])
    if pipeline.team_id != team.pk:
        message = f"pipeline {pipeline_id} is in team {pipeline.team.name}, not {team.name}: fix team or leave it out"
        return error_response(message, [field_error("team", message)])
    return pipeline


def _endpoint_target(request, name: str, team: Team | None) -> Endpoint | Response:
    """The endpoint of that name in `team`; with no team, in the one team the caller sees that has
    one (none: 404; several: a 400 asking for `team`)."""
    named = Endpoint.objects.filter(name=name).select_related("team", "default_version")
    if team is not None and (endpoint := named.filter(team=team).first()) is not None:
        return endpoint
    found = list(named.filter(team_id__in=access.visible_team_ids(request)).order_by("team__name")[:5])
    if team is None and len(found) == 1:
        return found[0]
    if not found:
        if team is None:
            raise Http404("No such endpoint")
        message = f"team {team.name} has no endpoint {name!r}"
        return error_response(message, [field_error("endpoint", message)])
    teams = ", ".join(e.team.name for e in found)
    if team is None:
        message = f"more than one team has an endpoint {name!r} ({teams}): give team"
    else:
        where = f"team {teams}" if len(found) == 1 else f"teams {teams}"
        message = f"endpoint {name!r} is not in team {team.name} but in {where}: fix team or leave it out"
    return error_response(message, [field_error("team", message)])


class ScheduleDetail(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses={200: s.ScheduleSerializer, **READ_ERRORS}, tags=TAGS)
    def get(self, request, schedule_id: int):
        return _body(request, _schedule(request, schedule_id))

    @extend_schema(request=s.ScheduleUpdateSerializer, responses={200: s.ScheduleSerializer, **ERRORS}, tags=TAGS)
    def patch(self, request, schedule_id: int):
        """Change settings; `enabled: false` pauses, `true` resumes (from now: nothing paused is caught up)."""
        schedule = _schedule(request, schedule_id, Scope.ADMIN)
        form = s.ScheduleUpdateSerializer(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        try:
            schedule = schedules.schedule_update(schedule=schedule, changes=dict(form.validated_data))
        except schedules.ScheduleError as exc:
            return _schedule_error(exc)
        return _body(request, schedule)

    @extend_schema(responses={204: None, **READ_ERRORS}, tags=TAGS)
    def delete(self, request, schedule_id: int):
        """Delete the schedule and its record of fires (the runs stay)."""
        schedule = _schedule(request, schedule_id, Scope.ADMIN)
        schedule.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
