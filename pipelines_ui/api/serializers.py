"""What the API reads and writes: plain serializers, so that the OpenAPI schema says exactly that."""

from __future__ import annotations

from rest_framework import serializers

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
    seq = serializers.IntegerField()
    text = serializers.CharField(allow_blank=True)


class LogSerializer(serializers.Serializer):
    lines = LogLineSerializer(many=True)
    next_seq = serializers.IntegerField()


class MetricSerializer(serializers.Serializer):
    step_name = serializers.CharField()
    name = serializers.CharField()
    step = serializers.IntegerField(help_text="the metric's own step (epoch, iteration)")
    value = serializers.FloatField()
    created_at = serializers.DateTimeField()


class MetricsSerializer(serializers.Serializer):
    metrics = MetricSerializer(many=True)


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


PipelinePage = page_of(PipelineSerializer, "PipelinePage")
VersionPage = page_of(VersionSerializer, "VersionPage")
RunPage = page_of(RunSummarySerializer, "RunPage")


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
