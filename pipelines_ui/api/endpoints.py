"""Published endpoints: a stable name that starts runs of a chosen pipeline version.

Like Azure ML's PipelineEndpoint: an endpoint holds several versions of one pipeline, one of
them the default; callers start runs by the endpoint's team and name, not by ids that change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from pipelines_ui.api.models import ApiToken, Endpoint, EndpointCall, EndpointVersion
from pipelines_ui.models import Pipeline, PipelineVersion, Team
from runs.models import Run
from runs.services import run_create

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_IDEMPOTENCY_KEY = 255


class EndpointError(ValueError):
    """A request about an endpoint that cannot be done; `field` names the part that is wrong."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Call:
    run: Run
    created: bool  # False: an earlier call with the same Idempotency-Key started it


def _version_of(pipeline: Pipeline, number: int | None) -> PipelineVersion:
    if number is None:
        if pipeline.latest_version is None:
            raise EndpointError("version", f"pipeline {pipeline.name!r} has no version yet")
        return pipeline.latest_version
    version = pipeline.versions.filter(number=number).first()
    if version is None:
        raise EndpointError("version", f"pipeline {pipeline.name!r} has no version {number}")
    return version


@transaction.atomic
def endpoint_create(
    *, team: Team, name: str, pipeline: Pipeline, user, version: int | None = None, description: str = ""
) -> Endpoint:
    if not NAME.fullmatch(name or ""):
        raise EndpointError("name", "lowercase letters, digits, - and _, starting with a letter or digit (at most 100)")
    if pipeline.team_id != team.pk:
        raise EndpointError("pipeline", f"pipeline {pipeline.name!r} is not in team {team.name}")
    chosen = _version_of(pipeline, version)
    if Endpoint.objects.filter(team=team, name=name).exists():
        raise EndpointError("name", f"team {team.name} already has an endpoint named {name!r}")
    try:
        with transaction.atomic():
            endpoint = Endpoint.objects.create(
                team=team,
                name=name,
                pipeline=pipeline,
                default_version=chosen,
                description=description,
                created_by=user,
            )
    except IntegrityError:  # created meanwhile by someone else
        raise EndpointError("name", f"team {team.name} already has an endpoint named {name!r}") from None
    EndpointVersion.objects.create(endpoint=endpoint, version=chosen, added_by=user)
    return endpoint


def endpoint_add_version(*, endpoint: Endpoint, number: int, user, make_default: bool = False) -> EndpointVersion:
    version = _version_of(endpoint.pipeline, number)
    with transaction.atomic():
        added, _ = EndpointVersion.objects.get_or_create(
            endpoint=endpoint, version=version, defaults={"added_by": user}
        )
        if make_default:
            Endpoint.objects.filter(pk=endpoint.pk).update(default_version=version)
            endpoint.default_version = version
    return added


def endpoint_set_default(*, endpoint: Endpoint, number: int) -> PipelineVersion:
    version = endpoint.versions.filter(version__number=number).select_related("version").first()
    if version is None:
        raise EndpointError("version", f"version {number} is not one of this endpoint's versions: add it first")
    Endpoint.objects.filter(pk=endpoint.pk).update(default_version=version.version)
    endpoint.default_version = version.version
    return version.version


def endpoint_call(
    *,
    endpoint: Endpoint,
    user,
    inputs: dict | None = None,
    version: int | None = None,
    token: ApiToken | None = None,
    idempotency_key: str | None = None,
    schedule=None,
) -> Call:
    """Start a run of the endpoint's default version (or `version`, one of its versions).

    With an idempotency key, the first call claims the key by inserting its row; a second call
    with that key (even at the same moment: the unique constraint orders them) gets the first
    call's run and starts nothing. Raises EndpointError, or RunInputError for bad inputs
    (nothing is recorded then, and the key stays free).
    """
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise EndpointError("Idempotency-Key", f"1 to {MAX_IDEMPOTENCY_KEY} characters")
    if idempotency_key is not None and not idempotency_key.isprintable():
        # NUL and other control characters: no database text holds NUL (a 500 on PostgreSQL).
        raise EndpointError("Idempotency-Key", "printable characters only (a UUID, say)")
    if version is None:
        chosen = endpoint.default_version
    else:
        row = endpoint.versions.filter(version__number=version).select_related("version").first()
        if row is None:
            raise EndpointError("version", f"version {version} is not one of this endpoint's versions")
        chosen = row.version
    if idempotency_key is not None:
        earlier = _earlier_call(endpoint, idempotency_key)
        if earlier is not None:
            return earlier
    try:
        with transaction.atomic():
            call = EndpointCall.objects.create(
                endpoint=endpoint,
                version=chosen,
                user=user if getattr(user, "is_authenticated", False) else None,
                token=token,
                token_name=token.name if token else "",
                schedule=schedule,
                idempotency_key=idempotency_key,
            )
            run = run_create(version=chosen, user=user, inputs=inputs or {})
            EndpointCall.objects.filter(pk=call.pk).update(run=run)
    except IntegrityError:
        earlier = _earlier_call(endpoint, idempotency_key) if idempotency_key is not None else None
        if earlier is None:
            raise
        return earlier
    return Call(run=run, created=True)


def _earlier_call(endpoint: Endpoint, key: str) -> Call | None:
    # A key older than the window is released (its row keeps its run, without the key).
    EndpointCall.objects.filter(
        endpoint=endpoint, idempotency_key=key, created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW
    ).update(idempotency_key=None)
    earlier = EndpointCall.objects.filter(endpoint=endpoint, idempotency_key=key).select_related("run").first()
    if earlier is None or earlier.run is None:
        return None
    return Call(run=earlier.run, created=False)


def endpoint_by_name(*, team_ids: list[int], team: str, name: str) -> Endpoint | None:
    return (
        Endpoint.objects.filter(team__name=team, name=name, team_id__in=team_ids)
        .select_related("team", "pipeline", "default_version")
        .first()
    )


def endpoints_visible(team_ids: list[int]):
    return Endpoint.objects.filter(team_id__in=team_ids).select_related("team", "pipeline", "default_version")
