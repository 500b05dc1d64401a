"""Deployments: create, swap to another version of the same model, roll back; and the numbers
the deployment page shows (request count, latency percentiles, errors)."""

from __future__ import annotations

import importlib.util

from django.db import IntegrityError, transaction

from pipelines_ui.models import Team
from runs.data_assets import NAME_RE, DataError
from runs.registry.models import Deployment, Flavour, ModelVersion, ScoringRequest

STATS_WINDOW = 1000


def _check_servable(version: ModelVersion) -> None:
    if version.flavour == Flavour.MLFLOW and importlib.util.find_spec("mlflow") is None:
        raise DataError(
            f"model {version} is an mlflow_model, and mlflow is not installed here: install mlflow "
            "(pip install mlflow) to serve it, or register the model as a custom_model (joblib or pickle)"
        )


def deployment_create(*, team: Team, name: str, model_version: ModelVersion, user=None) -> Deployment:
    name = (name or "").strip()
    if not NAME_RE.fullmatch(name) or len(name) > 100:
        raise DataError(f"invalid deployment name {name[:100]!r}: use letters, digits, '_', '-' and '.'")
    if model_version.model.team_id != team.pk:
        raise DataError(f"model {model_version} belongs to another team")
    _check_servable(model_version)
    try:
        with transaction.atomic():
            return Deployment.objects.create(
                team=team,
                name=name,
                model_version=model_version,
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
    except IntegrityError:
        raise DataError(f"team {team.name} already has a deployment named {name}") from None


@transaction.atomic
def deployment_swap(*, deployment: Deployment, model_version: ModelVersion) -> Deployment:
    """Serve `model_version` from now on; the deployer starts it and switches when it answers."""
    if model_version.model_id != deployment.model_version.model_id:
        raise DataError(
            f"{model_version} is another model's version: "
            f"a deployment swaps versions of {deployment.model_version.model.name}"
        )
    if model_version.pk == deployment.model_version_id:
        raise DataError(f"{deployment.name} already serves {model_version}")
    _check_servable(model_version)
    Deployment.objects.filter(pk=deployment.pk).update(
        model_version=model_version, previous_version=deployment.model_version_id
    )
    deployment.refresh_from_db()
    return deployment


def deployment_rollback(*, deployment: Deployment) -> Deployment:
    if deployment.previous_version_id is None:
        raise DataError(f"{deployment.name} has served no other version to roll back to")
    return deployment_swap(deployment=deployment, model_version=deployment.previous_version)


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def deployment_stats(deployment: Deployment) -> dict:
    recent = list(
        ScoringRequest.objects.filter(deployment=deployment)
        .order_by("-id")
        .values_list("latency_ms", "status")[:STATS_WINDOW]
    )
    ok = sorted(latency for latency, status in recent if status < 400)
    return {
        "count": ScoringRequest.objects.filter(deployment=deployment).count(),
        "errors": ScoringRequest.objects.filter(deployment=deployment, status__gte=400).count(),
        "p50": percentile(ok, 50),
        "p95": percentile(ok, 95),
        "window": len(recent),
    }
