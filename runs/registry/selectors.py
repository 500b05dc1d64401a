"""Reads of the model registry that execution needs (kept apart from services, which import
runs.data_assets, so runs.data_assets can resolve model inputs without a cycle)."""

from __future__ import annotations

from pipelines_ui.models import Team
from runs.registry.models import ModelVersion
from stepwise.spec import DataLookupError


def model_resolve(*, team: Team, name: str, version: str | None) -> ModelVersion:
    """The version `name:version`, or for None the newest version not archived; DataLookupError naming both."""
    qs = ModelVersion.objects.filter(model__team=team, model__name=name).select_related("artifact", "model")
    if version is None:
        found = qs.filter(archived=False).order_by("-seq").first()
        if found is None:
            why = "has only archived versions" if qs.exists() else "is not registered"
            raise DataLookupError(f"model '{name}@latest' {why} in team {team.name}")
        return found
    found = qs.filter(version=version).first()
    if found is None:
        if not qs.exists():
            raise DataLookupError(f"model '{name}' (version {version}) is not registered in team {team.name}")
        raise DataLookupError(f"model '{name}' has no version '{version}' in team {team.name}")
    return found
