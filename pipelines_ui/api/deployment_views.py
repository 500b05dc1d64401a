"""`POST /api/v1/deployments/{team}/{name}/score`: predictions from a deployed model version."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from pipelines_ui.api import access
from pipelines_ui.api import serializers as s
from pipelines_ui.api.models import Scope
from pipelines_ui.api.parsers import JSONParser
from runs.registry import scoring_proxy
from runs.registry.models import Deployment

ScoreRequest = inline_serializer(
    "ScoreRequest",
    {
        "rows": serializers.ListField(
            child=serializers.DictField(), required=False, help_text="rows as {column: number}"
        ),
        "inputs": serializers.ListField(
            child=serializers.ListField(child=serializers.FloatField()),
            required=False,
            help_text="rows as lists of numbers, in the model's column order",
        ),
    },
)
ScoreResponse = inline_serializer(
    "ScoreResponse",
    {
        "predictions": serializers.ListField(child=serializers.JSONField()),
        "model": serializers.CharField(help_text="NAME:VERSION of the model version that answered"),
        "version_id": serializers.IntegerField(),
        "server_ms": serializers.FloatField(help_text="time the scorer spent predicting"),
    },
)


def deployment_for(request, team: str, name: str, scope: str) -> Deployment:
    deployment = (
        Deployment.objects.filter(team__name=team, name=name, team_id__in=access.visible_team_ids(request))
        .select_related("team")
        .first()
    )
    if deployment is None:
        raise Http404("No such deployment")
    access.require(request, deployment.team_id, scope)
    return deployment


class DeploymentScore(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        request=ScoreRequest,
        responses={
            200: ScoreResponse,
            400: OpenApiResponse(s.ErrorSerializer, description="a bad row: `errors[].field` names the row and column"),
            401: OpenApiResponse(s.ErrorSerializer, description="no token, or an unknown, expired or revoked one"),
            403: OpenApiResponse(s.ErrorSerializer, description="a token without the `run` scope, or a viewer"),
            404: OpenApiResponse(s.ErrorSerializer, description="no such deployment, or another team's"),
            503: OpenApiResponse(s.ErrorSerializer, description="the scorer is starting or restarting"),
        },
        examples=[OpenApiExample("rows", value={"rows": [{"x0": 1.0, "x1": 0.0}]}, request_only=True)],
        tags=["deployments"],
    )
    def post(self, request, team: str, name: str):
        """Score rows with the deployment's model version (needs a token with the `run` scope)."""
        deployment = deployment_for(request, team, name, Scope.RUN)
        status, answer = scoring_proxy.score(deployment=deployment, payload=request.data)
        if status >= 400 and isinstance(answer, dict):
            answer = {"detail": str(answer.get("detail", "")), "errors": answer.get("errors") or [], **answer}
        return Response(answer, status=status)
