"""Reads that span models: what a user may see and edit, the list page, compute names."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q, QuerySet

from pipelines_ui.models import Membership, Pipeline, PipelineVersion, Role, Team
from runs.models import ComputeTarget

EDIT_ROLES = frozenset({Role.EDITOR, Role.ADMIN})


def known_compute_names() -> set[str]:
    """Every name a spec may use for `compute`: target names and their aliases."""
    names: set[str] = set()
    for name, aliases in ComputeTarget.objects.values_list("name", "aliases"):
        names.add(name)
        names.update(a for a in (aliases or []) if isinstance(a, str) and a)
    return names


def unknown_compute_to_default() -> bool:
    """Whether a compute name no target answers to runs on the default target (a warning)."""
    return settings.STEPWISE_UNKNOWN_COMPUTE == "default"


def default_compute_name() -> str:
    """The target that runs steps naming no compute (and pipelines with no default_compute)."""
    target = ComputeTarget.objects.filter(is_default=True).order_by("name").first()
    return target.name if target else ""


def compute_choices() -> list[tuple[str, str]]:
    """(value, label) for a compute select: target names, aliases noted."""
    choices = []
    for target in ComputeTarget.objects.order_by("name"):
        label = target.name
        aliases = [a for a in (target.aliases or []) if isinstance(a, str) and a]
        if aliases:
            label += f" (also {', '.join(aliases)})"
        if target.description:
            label += f" – {target.description}"
        choices.append((target.name, label))
    return choices


def user_teams(user) -> QuerySet[Team]:
    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user).order_by("name")


def user_editable_teams(user) -> QuerySet[Team]:
    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user, memberships__role__in=EDIT_ROLES).order_by("name")


def user_role(user, team: Team) -> str | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, team=team).values_list("role", flat=True).first()


def user_can_edit(user, pipeline: Pipeline) -> bool:
    return user_role(user, pipeline.team) in EDIT_ROLES


def pipeline_list(*, user, query: str = "", team_id: int | None = None) -> QuerySet[Pipeline]:
    qs = (
        Pipeline.objects.for_user(user)
        .select_related("team", "latest_version", "latest_version__author", "created_by")
        .order_by("-updated_at", "-pk")
    )
    if query:
        qs = qs.filter(Q(name__icontains=query) | Q(description__icontains=query))
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    return qs


def pipeline_versions(*, pipeline: Pipeline) -> QuerySet[PipelineVersion]:
    return pipeline.versions.select_related("author").order_by("-number")


def spec_step_count(spec: dict | None) -> int:
    """Steps in a stored spec (the `to_json` form), without building the dataclasses."""
    if not isinstance(spec, dict):
        return 0
    jobs = spec.get("jobs")
    return len(jobs) if isinstance(jobs, (dict, list)) else 0
