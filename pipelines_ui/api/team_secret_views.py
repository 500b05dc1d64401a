"""`/api/v1/teams/{team_id}/secrets/`: members list a team's secrets (names, never values); its
admins (admin scope) set, replace and delete them. The value is write-only: no answer holds it."""

from __future__ import annotations

from django.http import Http404
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from pipelines_ui import team_secrets
from pipelines_ui.api import access
from pipelines_ui.api.errors import error_response, field_error
from pipelines_ui.api.models import Scope
from pipelines_ui.api.pagination import paginate
from pipelines_ui.api.parsers import JSONParser
from pipelines_ui.api.schedule_views import ERRORS, READ_ERRORS
from pipelines_ui.api.serializers import page_of
from pipelines_ui.models import Team

TAGS = ["teams"]


class TeamSecretSerializer(serializers.Serializer):
    name = serializers.CharField()
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField(
        source="updated_by.get_username", allow_null=True, default=None, help_text="who set it last"
    )


class TextField(serializers.CharField):
    """A JSON string only: DRF's CharField takes 12 or 1.5 as "12" and "1.5"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class TeamSecretValueSerializer(serializers.Serializer):
    value = TextField(
        write_only=True,
        trim_whitespace=False,  # a secret's spaces and newlines (a PEM key's last one) are part of it
        max_length=team_secrets.MAX_VALUE_BYTES,
        error_messages={"blank": "a value is required", "invalid": "a string"},
        help_text=f"the secret's value (at most {team_secrets.MAX_VALUE_BYTES // 1024} KiB in UTF-8): write-only,"
        " never returned",
    )


TeamSecretPage = page_of(TeamSecretSerializer, "TeamSecretPage")

NAME = OpenApiParameter(
    "name",
    {"type": "string", "pattern": r"^[^/\x00-\x1f\x7f]+$"},
    OpenApiParameter.PATH,
    description="the secret's name: the name of the secret inputs it feeds (letters, digits and underscores,"
    f" not starting with a digit, at most {team_secrets.MAX_NAME_LENGTH} characters)",
)


def _team(request, team_id: int, scope: str) -> Team:
    access.require(request, team_id, scope)
    team = Team.objects.filter(pk=team_id).first()
    if team is None:  # deleted since the membership was read
        raise Http404("No such team")
    return team


class TeamSecretList(APIView):
    @extend_schema(responses={200: TeamSecretPage, **ERRORS}, tags=TAGS, operation_id="teams_secrets_list")
    def get(self, request, team_id: int):
        """The team's secrets by name, with who set each last (any member): never their values."""
        access.require(request, team_id, Scope.READ)
        return paginate(request, team_secrets.team_secrets(team_id), TeamSecretSerializer)


# The value never reaches an error report: not as a form field (this view reads JSON only, but a
# report lists the request's POST), nor as a local variable of the view or of what it calls.
@method_decorator(sensitive_post_parameters("value"), name="dispatch")
class TeamSecretDetail(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        parameters=[NAME],
        request=TeamSecretValueSerializer,
        responses={
            201: OpenApiResponse(TeamSecretSerializer, description="created"),
            200: OpenApiResponse(TeamSecretSerializer, description="replaced"),
            **ERRORS,
        },
        tags=TAGS,
        operation_id="teams_secrets_update",
    )
    @sensitive_variables()
    def put(self, request, team_id: int, name: str):
        """Set the team's secret `name` (team admins): 201 when new, 200 when it replaces the value.
        Runs already started keep the value they took."""
        team = _team(request, team_id, Scope.ADMIN)
        form = TeamSecretValueSerializer(data=request.data)
        problems = {} if form.is_valid() else dict(form.errors)
        if error := team_secrets.name_error(name):
            problems = {"name": [error], **problems}
        if problems:
            raise ValidationError(problems)
        try:
            secret, created = team_secrets.secret_set(
                team=team, name=name, value=form.validated_data["value"], by=request.user
            )
        except team_secrets.TeamSecretError as exc:
            return error_response(str(exc), [field_error(exc.field, str(exc))])
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(TeamSecretSerializer(secret).data, status=code)

    @extend_schema(parameters=[NAME], responses={204: None, **READ_ERRORS}, tags=TAGS)
    def delete(self, request, team_id: int, name: str):
        """Delete the team's secret `name` (team admins); runs it fed keep their copy."""
        team = _team(request, team_id, Scope.ADMIN)
        if not team_secrets.secret_delete(team=team, name=name):
            raise Http404("No such secret")
        return Response(status=status.HTTP_204_NO_CONTENT)
