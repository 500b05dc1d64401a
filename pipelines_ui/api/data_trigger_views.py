"""`/api/v1/data-triggers/`: members read a team's data triggers; its editors (run scope) create,
pause, resume and delete them."""

from __future__ import annotations

from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from pipelines_ui.api import access, data_triggers
from pipelines_ui.api.errors import error_response, field_error
from pipelines_ui.api.models import DataTrigger, Scope
from pipelines_ui.api.pagination import paginate
from pipelines_ui.api.params import DIGITS, one, positive_int
from pipelines_ui.api.parsers import JSONParser
from pipelines_ui.api.schedule_views import ERRORS, READ_ERRORS
from pipelines_ui.api.serializers import page_of
from pipelines_ui.models import Pipeline
from runs.models import DataAsset, Datastore

TAGS = ["data triggers"]


class DataTriggerFireSerializer(serializers.Serializer):
    reference = serializers.CharField(help_text="what the input was bound to, e.g. azureml:digits:2")
    data_version = serializers.CharField(source="data_version.version", allow_null=True, default=None)
    run = serializers.IntegerField(source="run_id", allow_null=True)
    error = serializers.CharField(help_text="why no run started, if none did")
    pending = serializers.BooleanField(help_text="the change is claimed and its run not started yet")
    created_at = serializers.DateTimeField()


class DataTriggerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team.name")
    name = serializers.CharField()
    pipeline = serializers.IntegerField(source="pipeline_id")
    input_name = serializers.CharField()
    kind = serializers.ChoiceField(choices=DataTrigger.Kind.values)
    asset = serializers.CharField(source="asset.name", allow_null=True, default=None)
    datastore = serializers.CharField(source="datastore.name", allow_null=True, default=None)
    path = serializers.CharField()
    interval_seconds = serializers.IntegerField(allow_null=True)
    enabled = serializers.BooleanField()
    created_by = serializers.CharField(source="created_by.get_username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    fires = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    @extend_schema_field(DataTriggerFireSerializer(many=True))
    def get_fires(self, trigger) -> list[dict]:
        rows = trigger.fires.select_related("data_version")[:10]
        return DataTriggerFireSerializer(rows, many=True).data

    def get_url(self, trigger) -> str:
        return self.context["request"].build_absolute_uri(reverse("pipeline_data_triggers", args=[trigger.pipeline_id]))


class DataTriggerCreateSerializer(serializers.Serializer):
    team = serializers.CharField(help_text="the team's name")
    name = serializers.CharField(max_length=100)
    pipeline = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="runs its latest version")
    input_name = serializers.CharField(max_length=255, help_text="the data input the new data is bound to")
    asset = serializers.CharField(required=False, max_length=255, help_text="a data asset's name: each new version")
    datastore = serializers.CharField(required=False, max_length=100, help_text="or: a datastore's name")
    path = serializers.CharField(required=False, allow_blank=True, max_length=1000, help_text="with a path in it")
    interval_seconds = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**31 - 1, help_text="how often the path is checked"
    )
    enabled = serializers.BooleanField(required=False, default=True)


class DataTriggerUpdateSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(help_text="false pauses; true resumes (new data from now on)")


DataTriggerPage = page_of(DataTriggerSerializer, "DataTriggerPage")


def _trigger(request, trigger_id: int, scope: str = Scope.READ) -> DataTrigger:
    trigger = data_triggers.triggers_visible(access.visible_team_ids(request)).filter(pk=trigger_id).first()
    if trigger is None:
        raise Http404("No such data trigger")
    access.require(request, trigger.team_id, scope)
    return trigger


def _body(request, trigger: DataTrigger, code: int = status.HTTP_200_OK) -> Response:
    trigger = data_triggers.triggers_visible([trigger.team_id]).get(pk=trigger.pk)
    return Response(DataTriggerSerializer(trigger, context={"request": request}).data, status=code)


def _missing(field: str, message: str) -> Response:
    return error_response(message, [field_error(field, message)])


class DataTriggerList(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("pipeline", DIGITS, description="only this pipeline's data triggers (its id); empty: all")
        ],
        responses={200: DataTriggerPage, **{k: ERRORS[k] for k in (400, 401, 403, 429)}},
        tags=TAGS,
        operation_id="data_triggers_list",
    )
    def get(self, request):
        access.require_scope(request, Scope.READ)
        qs = data_triggers.triggers_visible(access.visible_team_ids(request))
        if (pipeline := positive_int(one(request.query_params, "pipeline"), "pipeline", max_digits=18)) is not None:
            qs = qs.filter(pipeline_id=pipeline)
        return paginate(request, qs.order_by("team__name", "name", "pk"), DataTriggerSerializer)

    @extend_schema(request=DataTriggerCreateSerializer, responses={201: DataTriggerSerializer, **ERRORS}, tags=TAGS)
    def post(self, request):
        """Start a pipeline on new data (team editors): each version of `asset`, or changes under `datastore`/`path`."""
        access.require_scope(request, Scope.RUN)
        form = DataTriggerCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        team = access.team_named(request, data["team"])
        access.require(request, team, Scope.RUN)
        pipeline = Pipeline.objects.filter(pk=data["pipeline"], team=team).select_related("latest_version").first()
        if pipeline is None:
            return _missing("pipeline", f"team {team.name} has no pipeline {data['pipeline']}")
        asset = datastore = None
        if "asset" in data:
            asset = DataAsset.objects.filter(team=team, name=data["asset"]).first()
            if asset is None:
                return _missing("asset", f"team {team.name} has no data asset {data['asset']!r}")
        if "datastore" in data:
            datastore = Datastore.objects.filter(team=team, name=data["datastore"]).first()
            if datastore is None:
                return _missing("datastore", f"team {team.name} has no datastore {data['datastore']!r}")
        settings = data_triggers.TriggerSettings(
            name=data["name"],
            pipeline=pipeline,
            input_name=data["input_name"],
            asset=asset,
            datastore=datastore,
            path=data.get("path", ""),
            interval_seconds=data.get("interval_seconds"),
            enabled=data["enabled"],
        )
        try:
            trigger = data_triggers.data_trigger_create(team=team, settings=settings, user=request.user)
        except data_triggers.TriggerError as exc:
            return error_response(str(exc), [field_error(k, v) for k, v in exc.errors.items()])
        return _body(request, trigger, status.HTTP_201_CREATED)


class DataTriggerDetail(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses={200: DataTriggerSerializer, **READ_ERRORS}, tags=TAGS)
    def get(self, request, trigger_id: int):
        return _body(request, _trigger(request, trigger_id))

    @extend_schema(request=DataTriggerUpdateSerializer, responses={200: DataTriggerSerializer, **ERRORS}, tags=TAGS)
    def patch(self, request, trigger_id: int):
        """Pause or resume."""
        trigger = _trigger(request, trigger_id, Scope.RUN)
        form = DataTriggerUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        trigger = data_triggers.data_trigger_set_enabled(trigger=trigger, enabled=form.validated_data["enabled"])
        return _body(request, trigger)

    @extend_schema(responses={204: None, **READ_ERRORS}, tags=TAGS)
    def delete(self, request, trigger_id: int):
        """Delete the trigger and its record of fires (the runs stay)."""
        data_triggers.data_trigger_delete(trigger=_trigger(request, trigger_id, Scope.RUN))
        return Response(status=status.HTTP_204_NO_CONTENT)
