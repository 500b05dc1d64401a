"""Registered command components through the API: list, and register from a `.yml` or `.zip` upload."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from pipelines_ui.api import access
from pipelines_ui.api.errors import error_response, field_error, problem_json
from pipelines_ui.api.models import Scope
from pipelines_ui.api.pagination import paginate
from pipelines_ui.api.params import one, text_equals
from pipelines_ui.api.serializers import page_of
from pipelines_ui.api.views import ERRORS
from pipelines_ui.components import ComponentError, ComponentRoleError, component_register_upload
from pipelines_ui.models import Component, Visibility
from pipelines_ui.uploads import UploadError
from stepwise.spec import SpecError


class ComponentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team.name")
    name = serializers.CharField()
    version = serializers.CharField()
    display_name = serializers.CharField()
    description = serializers.CharField()
    visibility = serializers.ChoiceField(choices=Visibility.choices)
    reference = serializers.SerializerMethodField(help_text="what a pipeline's `component:` says to use it")
    spec = serializers.JSONField(help_text="the component's mapping (command, inputs, outputs, environment)")
    created_at = serializers.DateTimeField()

    def get_reference(self, component: Component) -> str:
        return f"azureml:{component.name}:{component.version}"


class ComponentRegisterSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="the component's .yml, or a .zip of it with its code folder")
    team = serializers.CharField(help_text="the team's name")
    name = serializers.CharField(required=False, help_text="default: the YAML's name")
    version = serializers.CharField(required=False, help_text="default: the YAML's version, else the next number")
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False, default=Visibility.TEAM)


ComponentPage = page_of(ComponentSerializer, "ComponentPage")
_ERRORS = {code: ERRORS[code] for code in (400, 401, 403, 404, 429)}


class ComponentList(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("team", str, description="only this team's components (its name)"),
            OpenApiParameter("name", str, description="only the versions of this name"),
        ],
        responses={200: ComponentPage, **{k: v for k, v in _ERRORS.items() if k in (401, 403, 429)}},
        tags=["components"],
        operation_id="components_list",
    )
    def get(self, request):
        """Components of your teams, and those shared with every user of the instance; newest first."""
        access.require_scope(request, Scope.READ)
        visible = access.visible_team_ids(request)
        qs = Component.objects.filter(Q(team_id__in=visible) | Q(visibility=Visibility.INSTANCE))
        if team := one(request.query_params, "team"):
            qs = text_equals(qs, "team__name", team)
        if name := one(request.query_params, "name"):
            qs = text_equals(qs, "name", name)
        return paginate(request, qs.select_related("team").order_by("name", "-created_at", "-pk"), ComponentSerializer)

    @extend_schema(
        request={"multipart/form-data": ComponentRegisterSerializer},
        responses={
            201: ComponentSerializer,
            200: OpenApiResponse(ComponentSerializer, description="this name and version already hold this content"),
            **_ERRORS,
        },
        tags=["components"],
    )
    def post(self, request):
        """Register a command component (`azureml:NAME:VERSION` in the team's pipelines)."""
        access.require_scope(request, Scope.WRITE)
        form = ComponentRegisterSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        team = access.team_named(request, data["team"])
        access.require(request, team, Scope.WRITE)
        if data["visibility"] == Visibility.INSTANCE:
            access.require(request, team, Scope.ADMIN)  # sharing with every team, as publishing a template
        try:
            with transaction.atomic():
                registered = component_register_upload(
                    team=team,
                    uploaded=data["file"],
                    user=request.user,
                    name=(data.get("name") or "").strip(),
                    version=(data.get("version") or "").strip(),
                    visibility=data["visibility"],
                )
        except UploadError as exc:
            return error_response(str(exc), [field_error("file", str(exc))])
        except SpecError as exc:
            problems = [p for p in exc.problems if p.severity == "error"]
            return error_response("the component is invalid", [problem_json(p) for p in problems])
        except ComponentRoleError as exc:
            raise PermissionDenied(str(exc)) from None
        except ComponentError as exc:
            return error_response(str(exc), [field_error("version", str(exc))])
        body = ComponentSerializer(registered.component).data
        return Response(body, status=status.HTTP_201_CREATED if registered.created else status.HTTP_200_OK)
