"""The REST API's resources (design.md, REST API). Thin: access rules in `access`, work in services."""

from __future__ import annotations

import tempfile
from collections.abc import Collection
from pathlib import Path

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import Http404, HttpResponse
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from pipelines_ui import services
from pipelines_ui.api import access, endpoints
from pipelines_ui.api import serializers as s
from pipelines_ui.api.errors import error_response, field_error, problem_json
from pipelines_ui.api.models import Scope
from pipelines_ui.api.pagination import MetricPages, paginate
from pipelines_ui.api.params import DIGITS, one, positive_int, text_equals
from pipelines_ui.api.parsers import JSONParser
from pipelines_ui.models import Membership, Pipeline, PipelineVersion
from pipelines_ui.uploads import UploadError, relative_problems, save_upload
from runs import downloads
from runs import selectors as run_selectors
from runs.management.commands.pipelines import run_summary
from runs.models import Metric, Run, RunState, StepRun
from runs.services import RunInputError, force_steps_clean, run_cancel, run_create, run_rerun
from runs.specs import version_spec
from stepwise.spec import SpecError, to_json, to_zip_bytes

ERRORS = {
    400: OpenApiResponse(s.ErrorSerializer, description="bad input: `errors` names each problem"),
    401: OpenApiResponse(s.ErrorSerializer, description="no token, or an unknown, expired or revoked one"),
    403: OpenApiResponse(s.ErrorSerializer, description="a scope or role that does not allow it"),
    404: OpenApiResponse(s.ErrorSerializer, description="no such object, or another team's"),
    429: OpenApiResponse(s.ErrorSerializer, description="throttled: see Retry-After"),
}
READ_ERRORS = {k: v for k, v in ERRORS.items() if k != 400}


def _errors(*codes: int) -> dict:
    return {code: ERRORS[code] for code in codes}


# ---- objects, each looked up as its page looks it up ------------------------------------


def _pipeline(request, pipeline_id: int, scope: str = Scope.READ) -> Pipeline:
    pipeline = (
        Pipeline.objects.filter(pk=pipeline_id, team_id__in=access.visible_team_ids(request))
        .select_related("team", "latest_version")
        .first()
    )
    if pipeline is None:
        raise Http404("No such pipeline")
    access.require(request, pipeline.team_id, scope)
    return pipeline


def _version(pipeline: Pipeline, number: int) -> PipelineVersion:
    version = pipeline.versions.select_related("author").filter(number=number).first()
    if version is None:
        raise Http404("No such version")
    return version


def _run(request, run_id: int, scope: str = Scope.READ) -> Run:
    run = (
        Run.objects.filter(pk=run_id, pipeline__team_id__in=access.visible_team_ids(request))
        .select_related("pipeline", "version", "created_by")
        .first()
    )
    if run is None:
        raise Http404("No such run")
    access.require(request, run.pipeline.team_id, scope)
    return run


def _step(run: Run, name: str) -> StepRun:
    if not run_selectors.valid_name(name):
        raise Http404("No such step")
    step = run.steps.filter(name=name).first()
    if step is None:
        raise Http404("No such step")
    return step


def run_json(request, run: Run) -> dict:
    summary = run_summary(run, request.build_absolute_uri(run.get_absolute_url()))
    return {
        "id": run.pk,
        "pipeline": run.pipeline_id,
        "version": run.version.number,
        "created_at": run.created_at,
        "created_by": run.created_by.get_username() if run.created_by else None,
        "inputs": run.inputs,
        "reason": run.reason,
        **summary,
    }


def run_summary_json(request, run: Run) -> dict:
    return {
        "id": run.pk,
        "pipeline": run.pipeline_id,
        "version": run.version.number,
        "state": run.state,
        "created_at": run.created_at,
        "created_by": run.created_by.get_username() if run.created_by else None,
        "url": request.build_absolute_uri(run.get_absolute_url()),
    }


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([])
def not_found(request, *args, **kwargs):
    return error_response("No such resource: see /api/v1/docs/", status_code=status.HTTP_404_NOT_FOUND)


# ---- teams -------------------------------------------------------------------------------


class TeamList(APIView):
    @extend_schema(responses={200: s.TeamPage, **_errors(400, 401, 403, 429)}, tags=["teams"])
    def get(self, request):
        """The teams this caller may see, with the user's role in each."""
        access.require_scope(request, Scope.READ)
        rows = (
            Membership.objects.filter(user=request.user, team_id__in=access.visible_team_ids(request))
            .select_related("team")
            .order_by("team__name", "pk")
        )
        return paginate(request, rows, None, represent=lambda m: {"id": m.team_id, "name": m.team.name, "role": m.role})


# ---- pipelines ---------------------------------------------------------------------------


def _refused_upload(exc: UploadError | SpecError, tmp: Path) -> Response:
    """A pipeline upload's 400: the file's own problem, or each error of its spec, named by the
    path inside the upload (never the server's temporary folder)."""
    if isinstance(exc, UploadError):
        return error_response(str(exc), [field_error("file", str(exc))])
    problems = [p for p in relative_problems(exc.problems, tmp / "upload") if p.severity == "error"]
    return error_response("the pipeline is invalid", [problem_json(p) for p in problems])


class PipelineList(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        parameters=[OpenApiParameter("team", str, description="only this team's pipelines (its name)")],
        responses={200: s.PipelinePage, **_errors(401, 403, 429)},
        tags=["pipelines"],
        operation_id="pipelines_list",
    )
    def get(self, request):
        access.require_scope(request, Scope.READ)
        qs = Pipeline.objects.filter(team_id__in=access.visible_team_ids(request)).select_related(
            "team", "latest_version"
        )
        if team := one(request.query_params, "team"):
            qs = text_equals(qs, "team__name", team)
        return paginate(request, qs.order_by("name", "pk"), s.PipelineSerializer)

    @extend_schema(
        request={"multipart/form-data": s.PipelineImportSerializer},
        responses={201: s.PipelineSerializer, **_errors(400, 401, 403, 404, 429)},
        tags=["pipelines"],
    )
    def post(self, request):
        """Import a pipeline (a new one, or a new version of the team's pipeline of that name)."""
        access.require_scope(request, Scope.WRITE)
        form = s.PipelineImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        team = access.team_named(request, data["team"])
        access.require(request, team, Scope.WRITE)
        with tempfile.TemporaryDirectory(prefix="stepwise-api-import-") as tmp:
            try:
                yaml_path = save_upload(data["file"], Path(tmp))
                with transaction.atomic():
                    version = services.pipeline_import(
                        team=team, path=yaml_path, user=request.user, name=(data.get("name") or "").strip() or None
                    )
            except (UploadError, SpecError) as exc:
                return _refused_upload(exc, Path(tmp))
            except IntegrityError:
                clash = "this team already has a pipeline with this name"
                return error_response(clash, [field_error("name", clash)])
        pipeline = Pipeline.objects.select_related("team", "latest_version").get(pk=version.pipeline_id)
        body = s.PipelineSerializer(pipeline, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)


class PipelineValidate(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": s.PipelineValidateSerializer},
        responses={200: s.ValidationSerializer, **_errors(400, 401, 403, 404, 429)},
        tags=["pipelines"],
    )
    def post(self, request):
        """Check a pipeline as an import would (this instance's compute targets; the team's registered
        components and data assets), storing nothing: 200 with its warnings, or 400 naming each problem."""
        access.require_scope(request, Scope.READ)
        form = s.PipelineValidateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        team = access.team_named(request, data["team"]) if data.get("team") else None
        with tempfile.TemporaryDirectory(prefix="stepwise-api-validate-") as tmp:
            try:
                yaml_path = save_upload(data["file"], Path(tmp))
                spec, warnings = services.pipeline_load(path=yaml_path, team=team)
            except (UploadError, SpecError) as exc:
                return _refused_upload(exc, Path(tmp))
            warnings = relative_problems(warnings, Path(tmp) / "upload")
        return Response(
            {
                "valid": True,
                "steps": list(spec.jobs),
                "inputs": to_json(spec)["inputs"],
                "warnings": [problem_json(p) for p in warnings],
            },
        )


class PipelineDetail(APIView):
    @extend_schema(responses={200: s.PipelineSerializer, **READ_ERRORS}, tags=["pipelines"])
    def get(self, request, pipeline_id: int):
        pipeline = _pipeline(request, pipeline_id)
        return Response(s.PipelineSerializer(pipeline, context={"request": request}).data)


class VersionList(APIView):
    @extend_schema(responses={200: s.VersionPage, **READ_ERRORS}, tags=["pipelines"], operation_id="versions_list")
    def get(self, request, pipeline_id: int):
        pipeline = _pipeline(request, pipeline_id)
        qs = pipeline.versions.select_related("author").defer("spec", "files").order_by("-number")
        return paginate(request, qs, s.VersionSerializer)


class VersionDetail(APIView):
    @extend_schema(responses={200: s.VersionDetailSerializer, **READ_ERRORS}, tags=["pipelines"])
    def get(self, request, pipeline_id: int, number: int):
        version = _version(_pipeline(request, pipeline_id), number)
        return Response(s.VersionDetailSerializer(version).data)


class VersionExport(APIView):
    @extend_schema(
        responses={(200, "application/zip"): OpenApiTypes.BINARY, **READ_ERRORS},
        tags=["pipelines"],
        description="The version as a zip of its folder: pipeline.yml, components and code.",
    )
    def get(self, request, pipeline_id: int, number: int):
        pipeline = _pipeline(request, pipeline_id)
        version = _version(pipeline, number)
        response = HttpResponse(to_zip_bytes(services.version_spec_with_files(version)), content_type="application/zip")
        filename = f"{slugify(pipeline.name) or 'pipeline'}-v{version.number}.zip"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


# ---- runs ---------------------------------------------------------------------------------


class PipelineRuns(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        request=s.RunCreateSerializer,
        responses={201: s.RunSerializer, **ERRORS},
        tags=["runs"],
        description="Start a run of the latest version (or `version`); secret inputs are accepted, never echoed.",
    )
    def post(self, request, pipeline_id: int):
        pipeline = _pipeline(request, pipeline_id, Scope.RUN)
        form = s.RunCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        if data.get("version") is not None:
            # A wrong number in the body is a bad request, as for an endpoint's run; 404 is for the URL.
            version = pipeline.versions.filter(number=data["version"]).first()
            if version is None:
                message = f"{pipeline.name} has no version {data['version']}"
                return error_response(message, [field_error("version", message)])
        elif pipeline.latest_version is not None:
            version = pipeline.latest_version
        else:
            message = "this pipeline has no version yet: save or import one first"
            return error_response(message, [field_error("version", message)])
        try:
            force_steps = force_steps_clean(version_spec(version), data["force_steps"])
        except RunInputError as exc:
            message = exc.errors["force_steps"]
            return error_response(message, [field_error("force_steps", message)])
        return start_run(request, version, data["inputs"], force_rerun=data["force_rerun"], force_steps=force_steps)


def start_run(
    request, version: PipelineVersion, inputs: dict, *, force_rerun: bool = False, force_steps: Collection[str] = ()
) -> Response:
    try:
        run = run_create(
            version=version, user=request.user, inputs=inputs, force_rerun=force_rerun, force_steps=force_steps
        )
    except RunInputError as exc:
        return error_response(
            "the run's inputs are invalid",
            [field_error(f"inputs.{k}", v) for k, v in exc.errors.items()],
        )
    run = Run.objects.select_related("pipeline", "version", "created_by").get(pk=run.pk)
    return Response(run_json(request, run), status=status.HTTP_201_CREATED)


class RunList(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "pipeline", DIGITS, description="only this pipeline's runs (its id); empty: every pipeline's"
            ),
            OpenApiParameter(
                "state", str, enum=["", *RunState.values], description="only runs in this state; empty: every state"
            ),
        ],
        responses={200: s.RunPage, **_errors(400, 401, 403, 429)},
        tags=["runs"],
        operation_id="runs_list",
    )
    def get(self, request):
        access.require_scope(request, Scope.READ)
        pipeline_id = positive_int(one(request.query_params, "pipeline"), "pipeline")
        state = one(request.query_params, "state")
        if state is not None and state not in RunState.values:
            raise ValidationError({"state": f"one of {', '.join(RunState.values)}"})
        qs = Run.objects.filter(pipeline__team_id__in=access.visible_team_ids(request)).select_related(
            "version", "created_by"
        )
        if pipeline_id is not None:
            qs = qs.filter(pipeline_id=pipeline_id)
        if state:
            qs = qs.filter(state=state)
        qs = qs.defer("inputs", "version__spec", "version__files").order_by("-id")
        return paginate(request, qs, None, represent=lambda run: run_summary_json(request, run))


class RunDetail(APIView):
    @extend_schema(responses={200: s.RunSerializer, **READ_ERRORS}, tags=["runs"])
    def get(self, request, run_id: int):
        return Response(run_json(request, _run(request, run_id)))


class RunCancel(APIView):
    @extend_schema(
        request=None,
        responses={
            200: s.RunSerializer,
            409: OpenApiResponse(s.ErrorSerializer, description="the run has already finished"),
            **READ_ERRORS,
        },
        tags=["runs"],
    )
    def post(self, request, run_id: int):
        run = _run(request, run_id, Scope.RUN)
        if not run_cancel(run=run):
            return error_response(f"run #{run.pk} has already finished ({run.state})", status_code=409)
        run.refresh_from_db()
        return Response(run_json(request, run))


class RunRerun(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.RerunSerializer, responses={201: s.RunSerializer, **ERRORS}, tags=["runs"])
    def post(self, request, run_id: int):
        run = _run(request, run_id, Scope.RUN)
        form = s.RerunSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        mode = "from" if data.get("from_step") else "failed" if data.get("failed_only") else "all"
        try:
            new_run = run_rerun(run=run, user=request.user, mode=mode, from_step=data.get("from_step"))
        except RunInputError as exc:
            fields = {"step": "from_step"}
            errors = [field_error(fields.get(k, f"inputs.{k}"), v) for k, v in exc.errors.items()]
            return error_response(str(exc), errors)
        new_run = Run.objects.select_related("pipeline", "version", "created_by").get(pk=new_run.pk)
        return Response(run_json(request, new_run), status=status.HTTP_201_CREATED)


class StepLog(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "after_seq",
                DIGITS,
                description="only the lines after this one: the `next_seq` or the last `seq` already held"
                " (absent or empty: 0, every line)",
            )
        ],
        responses={200: s.LogSerializer, **ERRORS},
        tags=["runs"],
    )
    def get(self, request, run_id: int, step_name: str):
        """A page of the step's log, its lines numbered from 1 across attempts."""
        step = _step(_run(request, run_id), step_name)
        after = positive_int(one(request.query_params, "after_seq"), "after_seq") or 0
        # The store numbers lines from 0, the API from 1: the lines after line N start at stored
        # line N, and a page's stored `next_seq` is the API number of its last line.
        page = run_selectors.log_page(step, after_seq=after)
        lines = [{"seq": page.first_seq + 1 + i, "text": text} for i, text in enumerate(page.lines)]
        return Response({"lines": lines, "next_seq": page.next_seq})


class StepOutput(APIView):
    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, **READ_ERRORS},
        tags=["runs"],
        description="The output's file, or a zip of its folder.",
    )
    def get(self, request, run_id: int, step_name: str, output_name: str):
        run = _run(request, run_id)
        return downloads.output_response(run, _step(run, step_name), output_name)


class RunMetrics(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("step", str, description="only this step's metrics (its name)"),
            OpenApiParameter("name", str, description="only the metric of this name"),
            OpenApiParameter(
                "page_size",
                DIGITS,
                description=f"points per page, from 1 to {MetricPages.max_page_size};"
                f" absent or empty: {MetricPages.page_size}",
            ),
        ],
        responses={200: s.MetricPage, **ERRORS},
        tags=["runs"],
        operation_id="runs_metrics_list",
    )
    def get(self, request, run_id: int):
        """The run's metric points in the order logged, a page at a time."""
        run = _run(request, run_id)
        step_name = one(request.query_params, "step")
        name = one(request.query_params, "name")
        rows = Metric.objects.filter(step_run__run=run)
        # Empty means no filter, as for the other lists' text filters (state, team, name).
        if step_name:
            rows = text_equals(rows, "step_run__name", step_name)
        if name:
            rows = text_equals(rows, "name", name)
        points = rows.order_by("id").values("name", "step", "value", "created_at", step_name=F("step_run__name"))
        return paginate(request, points, s.MetricSerializer, pages=MetricPages)


# ---- published endpoints ------------------------------------------------------------------


def _endpoint(request, team: str, name: str, scope: str = Scope.READ):
    endpoint = endpoints.endpoint_by_name(team_ids=access.visible_team_ids(request), team=team, name=name)
    if endpoint is None:
        raise Http404("No such endpoint")
    access.require(request, endpoint.team_id, scope)
    return endpoint


def _endpoint_error(exc: endpoints.EndpointError) -> Response:
    return error_response(str(exc), [field_error(exc.field, str(exc))])


class EndpointList(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        responses={200: s.EndpointPage, **_errors(401, 403, 429)}, tags=["endpoints"], operation_id="endpoints_list"
    )
    def get(self, request):
        access.require_scope(request, Scope.READ)
        qs = endpoints.endpoints_visible(access.visible_team_ids(request)).order_by("team__name", "name")
        return paginate(request, qs, s.EndpointSerializer)

    @extend_schema(
        request=s.EndpointCreateSerializer, responses={201: s.EndpointSerializer, **ERRORS}, tags=["endpoints"]
    )
    def post(self, request):
        """Publish a pipeline version as an endpoint (team admins)."""
        access.require_scope(request, Scope.ADMIN)
        form = s.EndpointCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        team = access.team_named(request, data["team"])
        access.require(request, team, Scope.ADMIN)
        pipeline = Pipeline.objects.filter(pk=data["pipeline"], team=team).select_related("latest_version").first()
        if pipeline is None:
            return error_response(
                f"team {team.name} has no pipeline {data['pipeline']}",
                [field_error("pipeline", f"team {team.name} has no pipeline {data['pipeline']}")],
            )
        try:
            endpoint = endpoints.endpoint_create(
                team=team,
                name=data["name"],
                pipeline=pipeline,
                user=request.user,
                version=data.get("version"),
                description=data.get("description", ""),
            )
        except endpoints.EndpointError as exc:
            return _endpoint_error(exc)
        body = s.EndpointSerializer(endpoint, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)


class EndpointDetail(APIView):
    @extend_schema(responses={200: s.EndpointSerializer, **READ_ERRORS}, tags=["endpoints"])
    def get(self, request, team: str, name: str):
        endpoint = _endpoint(request, team, name)
        return Response(s.EndpointSerializer(endpoint, context={"request": request}).data)


class EndpointRuns(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        request=s.EndpointRunSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                location=OpenApiParameter.HEADER,
                description="the same key within 24 h returns the first call's run (200) and starts nothing",
            )
        ],
        responses={
            201: s.RunSerializer,
            200: OpenApiResponse(s.RunSerializer, description="an earlier call with this Idempotency-Key"),
            **ERRORS,
        },
        tags=["endpoints"],
    )
    def post(self, request, team: str, name: str):
        """Start a run of the endpoint's default version (or `version`, one of its versions)."""
        endpoint = _endpoint(request, team, name, Scope.RUN)
        form = s.EndpointRunSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            call = endpoints.endpoint_call(
                endpoint=endpoint,
                user=request.user,
                inputs=data["inputs"],
                version=data.get("version"),
                token=access.token_of(request),
                idempotency_key=request.headers.get("Idempotency-Key"),
            )
        except endpoints.EndpointError as exc:
            return _endpoint_error(exc)
        except RunInputError as exc:
            return error_response(
                "the run's inputs are invalid", [field_error(f"inputs.{k}", v) for k, v in exc.errors.items()]
            )
        run = Run.objects.select_related("pipeline", "version", "created_by").get(pk=call.run.pk)
        return Response(run_json(request, run), status=status.HTTP_201_CREATED if call.created else status.HTTP_200_OK)
