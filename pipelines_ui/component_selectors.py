"""Reads of registered components: who sees which, what `azureml:NAME:VERSION` resolves to, who uses one.

Resolution is per name: a team's own component of that name wins; otherwise the one team
that shares a component of that name with the whole instance. `@latest` (or no version)
is the version registered most recently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from pipelines_ui.models import Component, FileBlob, Pipeline, Team, Visibility
from pipelines_ui.selectors import EDIT_ROLES
from stepwise.spec import ComponentLookupError, ComponentResolver, InputDecl, OutputDecl, Step
from stepwise.spec.bindings import JOB_NAME
from stepwise.spec.distribution import read_distribution


def components_visible_to(user) -> QuerySet[Component]:
    """Components of the user's teams, and those every user of the instance may see."""
    if not user.is_authenticated:
        return Component.objects.none()
    mine = Team.objects.filter(memberships__user=user).values("pk")
    return Component.objects.filter(Q(team__in=mine) | Q(visibility=Visibility.INSTANCE)).select_related(
        "team", "created_by"
    )


def user_can_register(user, team: Team) -> bool:
    return (
        user.is_authenticated and team.memberships.filter(user=user, role__in=EDIT_ROLES).exists()  # type: ignore[attr-defined]
    )


def _newest_first(qs: QuerySet[Component]) -> QuerySet[Component]:
    return qs.order_by("-created_at", "-pk")


def component_versions(*, team: Team, name: str) -> list[Component]:
    """Every version of `name` in `team`, newest first."""
    return list(_newest_first(Component.objects.filter(team=team, name=name)))


def component_resolve(*, team: Team | None, name: str, version: str | None) -> Component:
    """The component `azureml:name:version` (or `@latest` when version is None) means for `team`.

    `team` None (a check run with no team) sees only instance-wide components. Raises
    ComponentLookupError naming the name, and the version, that did not resolve.
    """
    own = Component.objects.filter(team=team, name=name) if team is not None else Component.objects.none()
    candidates = _newest_first(own)
    if not candidates.exists():
        shared = Component.objects.filter(name=name, visibility=Visibility.INSTANCE)
        if team is not None:
            shared = shared.exclude(team=team)
        teams = sorted(set(shared.values_list("team__name", flat=True)))
        if len(teams) > 1:
            raise ComponentLookupError(
                f"component '{name}' is shared by several teams ({', '.join(teams)}): "
                "register it in your own team to choose one"
            )
        candidates = _newest_first(shared)
    if not candidates.exists():
        where = f"team {team.name}" if team is not None else "no team given: pass --team"
        raise ComponentLookupError(f"component '{name}' is not registered ({where})")
    if version is None:
        found = candidates.first()
        assert found is not None
        return found
    found = candidates.filter(version=version).first()
    if found is None:
        versions = [c.version for c in reversed(candidates)]
        raise ComponentLookupError(f"component '{name}' has no version '{version}' (versions: {', '.join(versions)})")
    return found


def component_code(component: Component) -> dict[str, bytes]:
    """The component's code files, relative path -> bytes."""
    shas = dict(component.files or {})
    blobs = {b.sha256: bytes(b.content) for b in FileBlob.objects.filter(sha256__in=set(shas.values()))}
    missing = sorted(rel for rel, sha in shas.items() if sha not in blobs)
    if missing:
        raise FileBlob.DoesNotExist(f"{component}: blobs missing for {', '.join(missing)}")
    return {rel: blobs[sha] for rel, sha in sorted(shas.items())}


def component_body(component: Component) -> dict:
    """What the spec loader takes for a registered component: its mapping, `_files` its code."""
    body = dict(component.spec)
    body["name"], body["version"] = component.name, component.version
    if component.files:
        body["_files"] = component_code(component)
    return body


def component_resolver(team: Team | None) -> ComponentResolver:
    """A `resolve_component` for the spec loader, reading `team`'s view of the registry."""
    cache: dict[tuple[str, str | None], dict] = {}

    def resolve(name: str, version: str | None) -> dict:
        key = (name, version)
        if key not in cache:
            cache[key] = component_body(component_resolve(team=team, name=name, version=version))
        return cache[key]

    return resolve


@dataclass(frozen=True)
class ComponentRow:
    """One line of the list page: a team's component name with its newest version."""

    latest: Component
    versions: int


def component_list(*, user, query: str = "") -> list[ComponentRow]:
    qs = components_visible_to(user)
    if query:
        qs = qs.filter(Q(name__icontains=query) | Q(display_name__icontains=query) | Q(description__icontains=query))
    rows: dict[tuple[int, str], list[Component]] = {}
    for component in _newest_first(qs):
        rows.setdefault((component.team_id, component.name), []).append(component)
    result = [ComponentRow(latest=versions[0], versions=len(versions)) for versions in rows.values()]
    return sorted(result, key=lambda r: (r.latest.name, r.latest.team.name))


def component_used_by(*, component: Component, user) -> list[Pipeline]:
    """Pipelines the user can see whose latest version has a step made from this component version."""
    used = []
    pipelines = Pipeline.objects.for_user(user).select_related("team", "latest_version").order_by("name", "pk")
    for pipeline in pipelines:
        version = pipeline.latest_version
        jobs = (version.spec or {}).get("jobs") if version is not None else None
        if not isinstance(jobs, dict):
            continue
        steps = [
            name
            for name, job in jobs.items()
            if isinstance(job, dict)
            and job.get("component_name") == component.name
            and str(job.get("component_version")) == component.version
        ]
        if steps:
            pipeline.component_steps = steps  # type: ignore[attr-defined]
            used.append(pipeline)
    return used


def component_step(component: Component) -> Step:
    """A new step made from the component (no bindings yet), named after it where the name is a valid job name."""
    body = component.spec or {}
    name = re.sub(r"[^a-z0-9_]", "_", component.name.lower())
    if not JOB_NAME.fullmatch(name):
        name = f"step_{name}"
    return Step(
        name=name,
        command=str(body.get("command", "")),
        display_name=str(body.get("display_name", "")),
        description=str(body.get("description", "")),
        component_name=component.name,
        component_version=component.version,
        input_decls={
            k: InputDecl(
                type=v.get("type", "string"),
                default=v.get("default"),
                optional=bool(v.get("optional", False)),
                description=v.get("description", ""),
                enum=v.get("enum"),
                min=v.get("min"),
                max=v.get("max"),
            )
            for k, v in (body.get("inputs") or {}).items()
        },
        output_decls={
            k: OutputDecl(type=v.get("type", "uri_folder"), description=v.get("description", ""))
            for k, v in (body.get("outputs") or {}).items()
        },
        has_code=bool(component.files),
        environment=body.get("environment", ""),
        is_deterministic=body.get("is_deterministic", True) is not False,
        # Read when the component was registered: only its value is wanted here.
        distribution=read_distribution(body.get("distribution") or {})[0],
    )


def component_for_user(user, pk: object) -> Component | None:
    """The component with id `pk` if the user may see it (a bad or foreign id: None)."""
    raw = str(pk or "")
    if not raw.isdigit() or len(raw) > 18:
        return None
    return components_visible_to(user).filter(pk=int(raw)).first()
