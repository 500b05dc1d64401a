"""What the API reads and writes: plain serializers, so that the OpenAPI schema says exactly that."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pipelines_ui.api.schedules import next_fire_times, recent_fires
from runs.models import RunState, StepState

# ---- errors --------------------------------------------------------------------------


class ProblemSerializer(serializers.Serializer):
    file = serializers.CharField(allow_null=True)
    job = serializers.CharField(allow_null=True)
    field = serializers.CharField(allow_null=True)
    line = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = ProblemSerializer(many=True, required=False)


# ---- teams and pipelines -------------------------------------------------------------


class TeamSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=["viewer", "editor", "admin"])


class PipelineSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    team = serializers.CharField(source="team.name")
    description = serializers.CharField()
    version = serializers.IntegerField(source="latest_version.number", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField()

    def get_url(self, pipeline) -> str:
        return self.context["request"].build_absolute_uri(pipeline.get_absolute_url())


class PipelineImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="pipeline.yml, or a .zip of the pipeline's folder")
    team = serializers.CharField(help_text="the team's name")
    name = serializers.CharField(required=False, help_text="the pipeline's name (default: from the YAML)")


class PipelineValidateSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="pipeline.yml, or a .zip of the pipeline's folder")
    team = serializers.CharField(
        required=False, help_text="the team whose registered components and data assets it may use (its name)"
    )


class ValidationSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    steps = serializers.ListField(child=serializers.CharField())
    inputs = serializers.JSONField(help_text="the pipeline's inputs, as a version's `spec.inputs` gives them")
    warnings = ProblemSerializer(many=True)


class VersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    content_hash = serializers.CharField()
    message = serializers.CharField()
    author = serializers.CharField(source="author.get_username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class VersionDetailSerializer(VersionSerializer):
    spec = serializers.JSONField(help_text="the normalized pipeline spec")


# ---- runs ----------------------------------------------------------------------------


class RunCreateSerializer(serializers.Serializer):
    inputs = serializers.DictField(child=serializers.JSONField(), required=False, default=dict)
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    force_rerun = serializers.BooleanField(required=False, default=False)
    force_steps = serializers.ListField(
        child=serializers.CharField(max_length=255),
        required=False,
        default=list,
        max_length=10000,
        help_text="steps that execute even if they could be reused (what follows them is still reused when "
        "their outputs come out the same)",
    )


class RerunSerializer(serializers.Serializer):
    from_step = serializers.CharField(required=False, max_length=255)
    failed_only = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        if attrs.get("from_step") and attrs.get("failed_only"):
            raise serializers.ValidationError("give from_step or failed_only, not both")
        return attrs


class StepSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=StepState.choices)
    reused_from = serializers.IntegerField(allow_null=True, help_text="the run whose outputs were reused")
    attempts = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_s = serializers.FloatField()
    outputs = serializers.DictField(child=serializers.CharField(), help_text="output name: stored path")


class RunSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    pipeline = serializers.IntegerField()
    version = serializers.IntegerField()
    state = serializers.ChoiceField(choices=RunState.choices)
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True)
    url = serializers.CharField()


class RunSerializer(RunSummarySerializer):
    run = serializers.IntegerField(help_text="the run's id (as `pipelines run --json` names it)")
    inputs = serializers.DictField(child=serializers.JSONField(allow_null=True), help_text="secret inputs left out")
    reason = serializers.CharField()
    steps = serializers.DictField(child=StepSerializer())


class LogLineSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="the line's number in the step's log, from 1 across attempts")
    text = serializers.CharField(allow_blank=True)


class LogSerializer(serializers.Serializer):
    lines = LogLineSerializer(many=True)
    next_seq = serializers.IntegerField(
        help_text="the `seq` of the last line returned (`after_seq` when none): the next page's `after_seq`"
    )


class MetricSerializer(serializers.Serializer):
    step_name = serializers.CharField()
    name = serializers.CharField()
    step = serializers.IntegerField(help_text="the metric's own step (epoch, iteration)")
    value = serializers.FloatField()
    created_at = serializers.DateTimeField()


# ---- pages of lists ------------------------------------------------------------------


def page_of(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The schema of one page of a list: `{"count", "next", "previous", "results"}`."""
    fields = {
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": item(many=True),
    }
    return type(name, (serializers.Serializer,), fields)


TeamPage = page_of(TeamSerializer, "TeamPage")
PipelinePage = page_of(PipelineSerializer, "PipelinePage")
VersionPage = page_of(VersionSerializer, "VersionPage")
RunPage = page_of(RunSummarySerializer, "RunPage")
MetricPage = page_of(MetricSerializer, "MetricPage")


# ---- endpoints -------------------------------------------------------------------------


class EndpointCreateSerializer(serializers.Serializer):
    team = serializers.CharField(help_text="the team's name")
    name = serializers.CharField(max_length=100, help_text="lowercase letters, digits, - and _")
    pipeline = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1, help_text="default: latest")
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class EndpointSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team.name")
    name = serializers.CharField()
    description = serializers.CharField()
    pipeline = serializers.IntegerField(source="pipeline_id")
    default_version = serializers.IntegerField(source="default_version.number")
    versions = serializers.SerializerMethodField()
    runs_url = serializers.SerializerMethodField()

    def get_versions(self, endpoint) -> list[int]:
        return sorted(row.version.number for row in endpoint.versions.select_related("version"))

    def get_runs_url(self, endpoint) -> str:
        from urllib.parse import quote

        path = f"/api/v1/endpoints/{quote(endpoint.team.name, safe='')}/{endpoint.name}/runs/"
        return self.context["request"].build_absolute_uri(path)


class EndpointRunSerializer(serializers.Serializer):
    inputs = serializers.DictField(child=serializers.JSONField(), required=False, default=dict)
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)


EndpointPage = page_of(EndpointSerializer, "EndpointPage")


# ---- schedules -------------------------------------------------------------------------


class ScheduleCreateSerializer(serializers.Serializer):
    team = serializers.CharField(
        required=False, help_text="the team's name; absent: the team of the pipeline (or endpoint)"
    )
    name = serializers.CharField(
        required=False,
        max_length=100,
        help_text="unique in the team; absent: made from the pipeline's (or endpoint's) name and the timing",
    )
    pipeline = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="run this pipeline's latest version"
    )
    endpoint = serializers.CharField(
        required=False, max_length=100, help_text="or: run this endpoint's default version (its name in the team)"
    )
    cron = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="five fields, e.g. '0 9 * * 1-5', or @daily"
    )
    timezone = serializers.CharField(required=False, default="UTC", max_length=64, help_text="an IANA time zone")
    interval_seconds = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**31 - 1, help_text="or: every N seconds"
    )
    inputs = serializers.DictField(child=serializers.JSONField(), required=False, default=dict)
    enabled = serializers.BooleanField(required=False, default=True)
    catchup = serializers.CharField(
        required=False, default="latest", help_text="after downtime: none, latest (the default) or all"
    )


class ScheduleUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=100)
    cron = serializers.CharField(required=False, allow_blank=True, max_length=200)
    timezone = serializers.CharField(required=False, max_length=64)
    interval_seconds = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**31 - 1)
    inputs = serializers.DictField(child=serializers.JSONField(), required=False)
    enabled = serializers.BooleanField(required=False, help_text="false pauses; true resumes from now")
    catchup = serializers.CharField(required=False)


class ScheduleFireSerializer(serializers.Serializer):
    fire_time = serializers.DateTimeField()
    run = serializers.IntegerField(source="run_id", allow_null=True)
    run_state = serializers.CharField(source="run.state", allow_null=True, default=None)
    skipped = serializers.BooleanField(help_text="missed while no scheduler ran; not run (catch-up policy)")
    error = serializers.CharField(help_text="why no run started, if none did")


class ScheduleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team.name")
    name = serializers.CharField()
    pipeline = serializers.IntegerField(source="pipeline_id", allow_null=True)
    endpoint = serializers.CharField(source="endpoint.name", allow_null=True, default=None)
    cron = serializers.CharField()
    timezone = serializers.CharField()
    interval_seconds = serializers.IntegerField(allow_null=True)
    inputs = serializers.DictField(child=serializers.JSONField(allow_null=True))
    enabled = serializers.BooleanField()
    catchup = serializers.ChoiceField(choices=["none", "latest", "all"])
    created_by = serializers.CharField(source="created_by.get_username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    next_fire_times = serializers.SerializerMethodField()
    fires = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_next_fire_times(self, schedule) -> list[str]:
        field = serializers.DateTimeField()
        return [field.to_representation(t) for t in next_fire_times(schedule)]

    @extend_schema_field(ScheduleFireSerializer(many=True))
    def get_fires(self, schedule) -> list[dict]:
        return ScheduleFireSerializer(recent_fires(schedule), many=True).data

    def get_url(self, schedule) -> str:
        return self.context["request"].build_absolute_uri(reverse("schedule_detail", args=[schedule.pk]))


SchedulePage = page_of(ScheduleSerializer, "SchedulePage")
