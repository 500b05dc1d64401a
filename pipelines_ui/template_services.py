"""Templates: publish a pipeline version for others to start from, use it, follow its new versions.

Authorization (who may call these) is the views' job; these enforce the templates' own rules
and write in one transaction each, so a refused request leaves nothing half-saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from django.db import IntegrityError, transaction
from django.db.models import F

from pipelines_ui.concurrent_edits import part_change_text, part_label, spec_conflicts, spec_merge
from pipelines_ui.models import Pipeline, PipelineVersion, Team, Template, TemplateVersion, Visibility
from pipelines_ui.services import (
    ConflictPart,
    pipeline_create,
    pipeline_save_version,
    pipeline_working_spec,
    spec_validate,
    version_spec_with_files,
)
from stepwise.spec import SpecError
from stepwise.spec.bindings import coerce_literal
from stepwise.spec.model import DATA_TYPES, SECRET_TYPE, InputDecl, Problem
from stepwise.spec.model import Pipeline as PipelineSpec

TITLE_MAX = 200
TAG_MAX = 30
TAGS_MAX = 10
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
PARAMETER_DESCRIPTION_MAX = 500
NAME_MAX = 255


class TemplateError(Exception):
    """A request the templates' rules refuse; `field` names the form field it is about, if any."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class TemplateConflict(Exception):
    """The template's newer version and the clone's own changes touch the same parts: nothing was saved."""

    def __init__(
        self,
        *,
        origin: TemplateVersion,
        newer: TemplateVersion,
        parts: list[ConflictPart],
        mine: list[ConflictPart],
        problems: list[Problem] | None = None,
    ):
        self.origin = origin
        self.newer = newer
        self.parts = parts  # what the template's newer version did to each colliding part
        self.mine = mine  # what this pipeline did to the same parts
        self.problems = problems or []
        what = ", ".join(p.label for p in parts) or "; ".join(p.message for p in self.problems)
        super().__init__(f"{newer} and this pipeline both changed {what}")


@dataclass(frozen=True)
class Applied:
    version: PipelineVersion
    template_version: TemplateVersion
    created: bool  # False when the merge changed nothing in the pipeline (only its origin moved)


# ---- cleaning ------------------------------------------------------------------------


def tags_clean(raw: str | list[str]) -> list[str]:
    """Tags from "ml, vision" or a list: lower case, no duplicates, in the order given."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    tags: list[str] = []
    for item in items:
        tag = str(item).strip().lower()
        if not tag:
            continue
        if len(tag) > TAG_MAX:
            raise TemplateError(f"The tag “{tag[:40]}” is longer than {TAG_MAX} characters.", field="tags")
        if not TAG_RE.match(tag):
            raise TemplateError(
                f"The tag “{tag}” may hold only letters, digits, '.', '_' and '-', starting with a letter or digit.",
                field="tags",
            )
        if tag not in tags:
            tags.append(tag)
    if len(tags) > TAGS_MAX:
        raise TemplateError(f"At most {TAGS_MAX} tags: remove {len(tags) - TAGS_MAX}.", field="tags")
    return tags


def parameter_inputs(spec: PipelineSpec) -> dict[str, InputDecl]:
    """The pipeline inputs a template's user sets: literals, not data and not secrets."""
    return {
        name: decl
        for name, decl in spec.inputs.items()
        if decl.data is None and decl.type not in DATA_TYPES and decl.type != SECRET_TYPE
    }


def _descriptions_clean(spec: PipelineSpec, descriptions: dict[str, str]) -> dict[str, str]:
    cleaned = {}
    for name, text in (descriptions or {}).items():
        if name not in spec.inputs:
            raise TemplateError(f"The pipeline has no input named “{name}”.", field="parameters")
        text = str(text or "").strip()
        if len(text) > PARAMETER_DESCRIPTION_MAX:
            raise TemplateError(
                f"The description of {name} is longer than {PARAMETER_DESCRIPTION_MAX} characters.", field=name
            )
        if text:
            cleaned[name] = text
    return cleaned


def _metadata_clean(*, title: str, tags, visibility: str) -> tuple[str, list[str], str]:
    title = (title or "").strip()
    if not title:
        raise TemplateError("Give the template a title.", field="title")
    if len(title) > TITLE_MAX:
        raise TemplateError(f"The title is longer than {TITLE_MAX} characters.", field="title")
    if visibility not in Visibility.values:
        raise TemplateError(f"“{visibility}” is not a visibility: choose team or instance.", field="visibility")
    return title, tags_clean(tags), visibility


# ---- publishing ----------------------------------------------------------------------


@transaction.atomic
def template_publish(
    *,
    pipeline: Pipeline,
    user,
    title: str,
    description: str = "",
    tags: str | list[str] = (),
    visibility: str = Visibility.TEAM,
    parameter_descriptions: dict[str, str] | None = None,
    version: PipelineVersion | None = None,
) -> TemplateVersion:
    """Publish `version` (the latest by default) of `pipeline` as its template's next version.

    The first publish creates the template; a later one with a version already published only
    updates the title, description, tags, visibility and that version's parameter descriptions.
    """
    # The pipeline's row lock serializes two publishes of it, so version numbers never collide.
    locked = Pipeline.objects.select_for_update().select_related("team").get(pk=pipeline.pk)
    if version is None:
        version = locked.latest_version
    if version is None:
        raise TemplateError("This pipeline has no version yet: add a step before publishing it.", field="version")
    if version.pipeline_id != locked.pk:
        raise TemplateError(f"v{version.number} is not a version of {locked.name}.", field="version")
    title, tags, visibility = _metadata_clean(title=title, tags=tags, visibility=visibility)
    spec = version_spec_with_files(version)
    descriptions = _descriptions_clean(spec, parameter_descriptions or {})
    author = user if getattr(user, "is_authenticated", False) else None

    template = Template.objects.filter(pipeline=locked).first()
    if template is None:
        template = Template.objects.create(
            team=locked.team,
            pipeline=locked,
            title=title,
            description=description or "",
            tags=tags,
            visibility=visibility,
            created_by=author,
        )
    else:
        template.title, template.description, template.tags, template.visibility = (
            title,
            description or "",
            tags,
            visibility,
        )
    existing = template.versions.filter(pipeline_version=version).first()
    if existing is not None:
        existing.parameter_descriptions = descriptions
        existing.save(update_fields=["parameter_descriptions"])
        published = existing
    else:
        latest = template.versions.order_by("-number").first()
        if latest is not None and latest.pipeline_version.number > version.number:
            raise TemplateError(
                f"Template version {latest.number} is v{latest.pipeline_version.number} of the pipeline:"
                f" publish v{latest.pipeline_version.number} or a newer version, not v{version.number}.",
                field="version",
            )
        published = TemplateVersion.objects.create(
            template=template,
            number=(latest.number + 1) if latest else 1,
            pipeline_version=version,
            parameter_descriptions=descriptions,
            published_by=author,
        )
        template.latest_version = published
    template.save()
    return published


# ---- using ---------------------------------------------------------------------------


def _name_clean(team: Team, name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise TemplateError("Give the new pipeline a name.", field="name")
    if len(name) > NAME_MAX:
        raise TemplateError(f"The name is longer than {NAME_MAX} characters.", field="name")
    if Pipeline.objects.filter(team=team, name=name).exists():
        raise TemplateError(f"{team.name} already has a pipeline named “{name}”: pick another name.", field="name")
    return name


def _create(*, team: Team, name: str, user, spec: PipelineSpec | None, description: str, message: str) -> Pipeline:
    try:
        # A savepoint: a concurrent create of the same name fails here alone, as a form error.
        with transaction.atomic():
            return pipeline_create(team=team, name=name, user=user, spec=spec, description=description, message=message)
    except IntegrityError:
        raise TemplateError(
            f"{team.name} already has a pipeline named “{name}”: pick another name.", field="name"
        ) from None


def spec_with_defaults(spec: PipelineSpec, values: dict[str, object]) -> PipelineSpec:
    """A copy of `spec` whose parameters in `values` default to those values (typed and checked)."""
    settable = parameter_inputs(spec)
    inputs = dict(spec.inputs)
    errors = []
    for name, value in values.items():
        decl = settable.get(name)
        if decl is None:
            errors.append(Problem(message=f"the template has no parameter named '{name}'", field=name))
            continue
        if value is None or value == "":
            continue
        try:
            inputs[name] = replace(
                decl, default=coerce_literal(decl.type, value, enum=decl.enum, minimum=decl.min, maximum=decl.max)
            )
        except ValueError as exc:
            errors.append(Problem(message=f"expected {decl.type}: {exc}", field=name))
    if errors:
        raise SpecError(errors)
    return replace(spec, inputs=inputs)


@transaction.atomic
def template_use(
    *, template_version: TemplateVersion, team: Team, name: str, values: dict[str, object], user
) -> Pipeline:
    """A new pipeline in `team` from `template_version`, its parameters defaulting to `values`."""
    template = template_version.template
    name = _name_clean(team, name)
    spec = spec_with_defaults(version_spec_with_files(template_version.pipeline_version), values)
    pipeline = _create(
        team=team,
        name=name,
        user=user,
        spec=spec,
        description=template.pipeline.description,
        message=f"Created from template {template.title} v{template_version.number}",
    )
    pipeline.origin = template_version
    pipeline.save(update_fields=["origin", "updated_at"])
    # F(): two uses at once each count.
    Template.objects.filter(pk=template.pk).update(times_used=F("times_used") + 1)
    return pipeline


@transaction.atomic
def pipeline_duplicate(*, pipeline: Pipeline, team: Team, name: str, user) -> Pipeline:
    """A copy of `pipeline`'s latest version as a new pipeline in `team` (it keeps the template it follows)."""
    name = _name_clean(team, name)
    spec = version_spec_with_files(pipeline.latest_version) if pipeline.latest_version_id else None
    copy = _create(
        team=team,
        name=name,
        user=user,
        spec=spec,
        description=pipeline.description,
        message=f"Duplicated from {pipeline.name}"
        + (f" v{pipeline.latest_version.number}" if pipeline.latest_version_id else ""),
    )
    if pipeline.origin_id:
        copy.origin_id = pipeline.origin_id
        copy.save(update_fields=["origin", "updated_at"])
    return copy


# ---- following the template ----------------------------------------------------------


def newer_version_for(pipeline: Pipeline) -> TemplateVersion | None:
    """The template's latest version when it is newer than the one `pipeline` was made from."""
    if not pipeline.origin_id:
        return None
    origin = TemplateVersion.objects.select_related("template__latest_version").get(pk=pipeline.origin_id)
    latest = origin.template.latest_version
    if latest is None or latest.number <= origin.number:
        return None
    return latest


def _parts(before: PipelineSpec, after: PipelineSpec, keys: list[str]) -> list[ConflictPart]:
    return [ConflictPart(key=k, label=part_label(k), change=part_change_text(before, after, k)) for k in keys]


@transaction.atomic
def template_update_apply(*, pipeline: Pipeline, user) -> Applied:
    """Merge the template's newer version into `pipeline` (three-way, base: the version it came from).

    Raises TemplateError when there is nothing newer, TemplateConflict when both sides changed
    the same parts (nothing is saved then).
    """
    locked = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    newer = newer_version_for(locked)
    if newer is None:
        raise TemplateError("This pipeline already follows the template's latest version.")
    origin = TemplateVersion.objects.select_related("template", "pipeline_version").get(pk=locked.origin_id)
    base = version_spec_with_files(origin.pipeline_version)
    theirs = version_spec_with_files(newer.pipeline_version)
    mine = pipeline_working_spec(pipeline=locked)
    message = f"Applied template {origin.template.title} v{newer.number}"[:255]

    keys = spec_conflicts(base=base, theirs=theirs, mine=mine)
    if keys:
        raise TemplateConflict(
            origin=origin, newer=newer, parts=_parts(base, theirs, keys), mine=_parts(base, mine, keys)
        )
    merged = spec_merge(base=base, theirs=theirs, mine=mine)
    before = locked.latest_version.number if locked.latest_version_id else 0
    try:
        version = pipeline_save_version(pipeline=locked, spec=merged, author=user, message=message)
    except SpecError as exc:
        problems = [p for p in exc.problems if p.severity == "error"]
        own = [p for p in spec_validate(spec=mine) if p.severity == "error"]
        if own:
            raise SpecError(own) from None
        keys = sorted({f"step:{p.job}" for p in problems if p.job in merged.jobs})
        raise TemplateConflict(
            origin=origin,
            newer=newer,
            parts=_parts(base, theirs, keys),
            mine=_parts(base, mine, keys),
            problems=problems,
        ) from None
    locked.origin = newer
    locked.save(update_fields=["origin", "updated_at"])
    pipeline.origin = newer
    pipeline.latest_version = version
    return Applied(version=version, template_version=newer, created=version.number > before)
