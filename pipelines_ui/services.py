"""Writes on the authoring side: pipelines, their immutable versions and file blobs.

Every function validates before it writes and writes in one transaction, so an invalid
spec leaves nothing behind (`SpecError` carries the problems to show).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from django.conf import settings
from django.db import transaction

from pipelines_ui import graph_prerender
from pipelines_ui.component_selectors import component_resolver
from pipelines_ui.concurrent_edits import part_change_text, part_label, spec_change, spec_conflicts, spec_merge
from pipelines_ui.models import FileBlob, Pipeline, PipelineVersion, Team
from pipelines_ui.selectors import known_compute_names, unknown_compute_to_default
from runs.data_assets import data_resolver
from stepwise import hashing
from stepwise.spec import SpecError, from_json, load_pipeline, to_json, validate_pipeline
from stepwise.spec.model import (
    DataPath,
    JobOutput,
    Problem,
    Step,
    code_key,
    data_key,
)
from stepwise.spec.model import Pipeline as PipelineSpec


def _errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def spec_validate(*, spec: PipelineSpec) -> list[Problem]:
    """Every problem with `spec` against the compute targets that exist now."""
    return validate_pipeline(
        spec, known_computes=known_compute_names(), unknown_compute_to_default=unknown_compute_to_default()
    )


def content_hash(*, spec_json: dict, files: dict[str, str]) -> str:
    """sha256 over the canonical JSON of the spec and the `{key: blob sha}` map (the SDK's hash too)."""
    return hashing.content_hash(spec_json=spec_json, files=files)


def file_blob_store(*, content: bytes) -> str:
    sha = hashlib.sha256(content).hexdigest()
    # Content-addressed: an existing row with this key already holds these bytes.
    FileBlob.objects.get_or_create(sha256=sha, defaults={"content": content, "size": len(content)})
    return sha


@transaction.atomic
def pipeline_create(
    *,
    team: Team,
    name: str,
    user,
    spec: PipelineSpec | None = None,
    description: str = "",
    message: str = "",
) -> Pipeline:
    """A new pipeline in `team`; with `spec`, its version 1 (validated first)."""
    if spec is not None:
        problems = _errors(spec_validate(spec=spec))
        if problems:
            raise SpecError(problems)
    pipeline = Pipeline.objects.create(
        team=team,
        name=name,
        description=description or (spec.description if spec is not None else ""),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    if spec is not None:
        pipeline_save_version(pipeline=pipeline, spec=spec, author=user, message=message or "Created")
    return pipeline


@transaction.atomic
def pipeline_save_version(*, pipeline: Pipeline, spec: PipelineSpec, author, message: str = "") -> PipelineVersion:
    """Store `spec` as the pipeline's next version, or return the latest when nothing changed."""
    problems = _errors(spec_validate(spec=spec))
    if problems:
        raise SpecError(problems)
    spec_json = to_json(spec)
    files = {key: file_blob_store(content=data) for key, data in sorted(spec.files.items())}
    digest = content_hash(spec_json=spec_json, files=files)

    # The row lock serializes concurrent saves of one pipeline, so two editors never
    # both compute the same next number (SQLite has no row locks, but its IMMEDIATE
    # transactions serialize writers anyway).
    locked = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    latest = locked.versions.order_by("-number").first()
    if latest is not None and latest.content_hash == digest:
        latest.unchanged = True  # callers say so: saving the same content makes no version
        return latest
    version = PipelineVersion.objects.create(
        pipeline=locked,
        number=(latest.number + 1) if latest else 1,
        spec=spec_json,
        files=files,
        content_hash=digest,
        author=author if getattr(author, "is_authenticated", False) else None,
        message=message[:255],
    )
    locked.latest_version = version
    locked.save(update_fields=["latest_version", "updated_at"])
    # A big graph is laid out now, not when someone first opens a page showing it.
    transaction.on_commit(lambda: graph_prerender.version_graphs_prerender(version))
    pipeline.latest_version = version
    pipeline.updated_at = locked.updated_at
    return version


def version_spec_with_files(version: PipelineVersion) -> PipelineSpec:
    """The version as a spec, with the contents of every file."""
    shas = dict(version.files or {})
    blobs = {b.sha256: bytes(b.content) for b in FileBlob.objects.filter(sha256__in=set(shas.values()))}
    missing = sorted(k for k, sha in shas.items() if sha not in blobs)
    if missing:
        raise FileBlob.DoesNotExist(f"{version}: blobs missing for {', '.join(missing)}")
    return from_json(version.spec, {key: blobs[sha] for key, sha in shas.items()})


def _empty_spec(pipeline: Pipeline) -> PipelineSpec:
    return PipelineSpec(name=pipeline.name, display_name=pipeline.name, description=pipeline.description)


def pipeline_working_spec(*, pipeline: Pipeline) -> PipelineSpec:
    """What the editor starts from: the latest version, or an empty spec for a new pipeline."""
    if pipeline.latest_version_id:
        return version_spec_with_files(pipeline.latest_version)
    return _empty_spec(pipeline)


def pipeline_base_spec(*, pipeline: Pipeline, number: int) -> PipelineSpec:
    """The spec an editing form was opened on: version `number`, or (0) the empty spec of a new pipeline.

    Raises PipelineVersion.DoesNotExist for a number this pipeline has no version of.
    """
    if number == 0:
        return _empty_spec(pipeline)
    return version_spec_with_files(pipeline.versions.get(number=number))


def pipeline_load(*, path: Path, team: Team | None) -> tuple[PipelineSpec, list[Problem]]:
    """The uploaded YAML at `path` and its warnings, checked against this instance: its compute
    targets and `team`'s registered components and data assets (SpecError when invalid)."""
    return load_pipeline(
        Path(path),
        known_computes=known_compute_names(),
        unknown_compute_to_default=unknown_compute_to_default(),
        resolve_component=component_resolver(team),
        resolve_data=data_resolver(team) if team is not None else None,
        max_bytes=settings.STEPWISE_YAML_MAX_BYTES,
        max_files_bytes=settings.STEPWISE_UPLOAD_MAX_BYTES,
    )


@transaction.atomic
def pipeline_import(*, team: Team, path: Path, user, name: str | None = None) -> PipelineVersion:
    """Load the YAML at `path`; create the pipeline, or add a version to the one of that name."""
    spec, _warnings = pipeline_load(path=path, team=team)
    pipeline_name = (name or spec.display_name or spec.name or Path(path).stem).strip()[:255]
    message = f"Imported from {Path(path).name}"
    existing = Pipeline.objects.filter(team=team, name=pipeline_name).first()
    if existing is None:
        pipeline = pipeline_create(team=team, name=pipeline_name, user=user, spec=spec, message=message)
        assert pipeline.latest_version is not None
        return pipeline.latest_version
    return pipeline_save_version(pipeline=existing, spec=spec, author=user, message=message)


def _renamed_references(spec: PipelineSpec, old: str, new: str) -> None:
    for step in spec.jobs.values():
        for key, binding in list(step.inputs.items()):
            if isinstance(binding, JobOutput) and binding.job == old:
                step.inputs[key] = JobOutput(job=new, output=binding.output)


def spec_with_step(
    *,
    spec: PipelineSpec,
    step: Step,
    original_name: str | None = None,
    code_files: dict[str, bytes] | None = None,
) -> PipelineSpec:
    """A copy of `spec` with `step` added, or replacing `original_name` (renames follow through).

    `code_files` (relative path -> bytes) replaces the step's code folder; None keeps it.
    """
    jobs: dict[str, Step] = {}
    replaced = False
    for name, existing in spec.jobs.items():
        if original_name is not None and name == original_name:
            jobs[step.name] = step
            replaced = True
        else:
            jobs[name] = replace(existing, inputs=dict(existing.inputs))
    if not replaced:
        jobs[step.name] = step
    old_name = original_name or step.name
    old_code_prefix = code_key(old_name) + "/"
    old_code = {k[len(old_code_prefix) :]: v for k, v in spec.files.items() if k.startswith(old_code_prefix)}
    files = {k: v for k, v in spec.files.items() if not k.startswith(old_code_prefix)}
    for rel, data in (old_code if code_files is None else code_files).items():
        files[f"{code_key(step.name)}/{rel}"] = data
    step.has_code = any(k.startswith(code_key(step.name) + "/") for k in files)
    if old_name != step.name:
        # A job's local data lives under `data/<job>.<input>/`: it moves with the job.
        for input_name, binding in list(step.inputs.items()):
            if isinstance(binding, DataPath) and binding.key == data_key(input_name, old_name):
                new_key = data_key(input_name, step.name)
                step.inputs[input_name] = DataPath(type=binding.type, key=new_key)
                for k in [k for k in files if k.startswith(binding.key + "/")]:
                    files[new_key + k[len(binding.key) :]] = files.pop(k)
    result = replace(spec, jobs=jobs, files=files)
    if original_name is not None and original_name != step.name:
        _renamed_references(result, original_name, step.name)
    return result


def spec_without_step(*, spec: PipelineSpec, name: str) -> PipelineSpec:
    """A copy of `spec` without step `name` and its code; raises SpecError if others use its outputs."""
    users = sorted(down for up, _out, down, _in in spec.edges() if up == name and down != name)
    if users:
        raise SpecError(
            [
                Problem(
                    message=f"step '{name}' feeds {', '.join(sorted(set(users)))}: rebind or remove those inputs first",
                    job=name,
                )
            ]
        )
    jobs = {k: v for k, v in spec.jobs.items() if k != name}
    owned = [code_key(name) + "/"]
    owned += [b.key + "/" for b in spec.jobs[name].inputs.values() if isinstance(b, DataPath)]
    files = {k: v for k, v in spec.files.items() if not any(k.startswith(prefix) for prefix in owned)}
    return replace(spec, jobs=jobs, files=files)


@dataclass(frozen=True)
class ConflictPart:
    key: str
    label: str  # "step train"
    change: str  # what the newer versions did to it: "changed its command, code"


class EditConflict(Exception):
    """Versions saved since an edit's base changed what the edit changes: nothing was saved."""

    def __init__(
        self,
        *,
        base_number: int,
        latest: PipelineVersion,
        versions: list[PipelineVersion],
        parts: list[ConflictPart],
        problems: list[Problem] | None = None,
    ):
        self.base_number = base_number
        self.latest = latest
        self.versions = versions  # the saves whose changes collide, oldest first
        self.parts = parts
        self.problems = problems or []  # when both fit part by part but not together
        what = ", ".join(p.label for p in parts) or "; ".join(p.message for p in self.problems)
        super().__init__(f"v{latest.number} changed {what} since v{base_number}")

    @property
    def authors(self) -> list[str]:
        return list(dict.fromkeys(v.author.get_username() if v.author else "someone" for v in self.versions))


@dataclass(frozen=True)
class SavedEdit:
    """What an edit saved: its version (the latest one when nothing changed), and what it was merged with."""

    version: PipelineVersion
    created: bool
    merged_with: list[PipelineVersion] = field(default_factory=list)  # others' saves since the base
    their_changes: list[str] = field(default_factory=list)  # labels of the parts those saves changed


def _compare_spec(version: PipelineVersion | None, pipeline: Pipeline) -> PipelineSpec:
    """A version's spec with its sha map as `files`: enough to compare, no blob read."""
    if version is None:
        return _empty_spec(pipeline)
    return from_json(version.spec, dict(version.files or {}))


def _edit_conflict(
    *,
    pipeline: Pipeline,
    base: PipelineVersion | None,
    base_spec: PipelineSpec,
    theirs: PipelineSpec,
    others: list[PipelineVersion],
    parts: list[str],
    problems: list[Problem] | None = None,
) -> EditConflict:
    """The conflict, naming the versions since `base` whose own change touched `parts`."""
    culprits = []
    previous = _compare_spec(base, pipeline)
    for version in others:
        current = _compare_spec(version, pipeline)
        change = spec_change(previous, current)
        if (change.changed | change.wiring) & set(parts):
            culprits.append(version)
        previous = current
    return EditConflict(
        base_number=base.number if base else 0,
        latest=others[-1],
        versions=culprits or others[-1:],
        parts=[ConflictPart(key=p, label=part_label(p), change=part_change_text(base_spec, theirs, p)) for p in parts],
        problems=problems,
    )


@transaction.atomic
def pipeline_edit(
    *,
    pipeline: Pipeline,
    base_version: int | None,
    author,
    message: str,
    change: Callable[[PipelineSpec], PipelineSpec],
) -> SavedEdit:
    """Apply `change` to the version an editor opened (`base_version`) and save the result.

    `base_version` None means the latest, 0 the empty spec of a pipeline that had no version
    yet. When others saved since the base, their versions and this change merge if they
    touched different parts (`spec_conflicts`); otherwise EditConflict is raised and nothing
    is saved. Raises PipelineVersion.DoesNotExist for a base this pipeline does not have.
    """
    # The row lock makes check-and-save one step: a second save of this pipeline waits here
    # until the first commits, then finds the first one's version as the latest.
    locked = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    latest = locked.versions.select_related("author").order_by("-number").first()
    latest_number = latest.number if latest else 0
    if base_version is None:
        base = latest
    else:
        base = locked.versions.get(number=base_version) if base_version else None
    base_number = base.number if base else 0
    base_spec = version_spec_with_files(base) if base else _empty_spec(locked)
    mine = change(base_spec)
    if base_number == latest_number:
        version = pipeline_save_version(pipeline=pipeline, spec=mine, author=author, message=message)
        return SavedEdit(version=version, created=version.number > latest_number)

    assert latest is not None  # a base behind the latest means there is a latest
    theirs = version_spec_with_files(latest)
    others = list(locked.versions.filter(number__gt=base_number).select_related("author").order_by("number"))
    parts = spec_conflicts(base=base_spec, theirs=theirs, mine=mine)
    if parts:
        raise _edit_conflict(pipeline=locked, base=base, base_spec=base_spec, theirs=theirs, others=others, parts=parts)
    merged = spec_merge(base=base_spec, theirs=theirs, mine=mine)
    try:
        version = pipeline_save_version(pipeline=pipeline, spec=merged, author=author, message=message)
    except SpecError as exc:
        own = _errors(spec_validate(spec=mine))
        if own:
            raise SpecError(own)  # the edit is wrong in itself: say so as if nobody else had saved
        # Each side is valid alone but not together (say, two new bindings closing a cycle).
        jobs = sorted({f"step:{p.job}" for p in _errors(exc.problems) if p.job in merged.jobs})
        raise _edit_conflict(
            pipeline=locked,
            base=base,
            base_spec=base_spec,
            theirs=theirs,
            others=others,
            parts=jobs,
            problems=_errors(exc.problems),
        )
    return SavedEdit(
        version=version,
        created=version.number > latest_number,
        merged_with=others,
        their_changes=[part_label(p) for p in sorted(spec_change(base_spec, theirs).changed)],
    )


def _step_name_taken(name: str) -> SpecError:
    return SpecError([Problem(message=f"a step named '{name}' already exists", job=name, field="name")])


def pipeline_step_save(
    *,
    pipeline: Pipeline,
    step: Step,
    author,
    original_name: str | None = None,
    code_files: dict[str, bytes] | None = None,
    base_version: int | None = None,
) -> SavedEdit:
    """Add `step`, or replace step `original_name` with it (a rename follows through to its readers)."""

    def change(base: PipelineSpec) -> PipelineSpec:
        if step.name in base.jobs and step.name != original_name:
            raise _step_name_taken(step.name)
        return spec_with_step(spec=base, step=step, original_name=original_name, code_files=code_files)

    verb = "Added" if original_name is None else "Edited"
    return pipeline_edit(
        pipeline=pipeline, base_version=base_version, author=author, message=f"{verb} step {step.name}", change=change
    )


def pipeline_step_remove(*, pipeline: Pipeline, name: str, author, base_version: int | None = None) -> SavedEdit:
    return pipeline_edit(
        pipeline=pipeline,
        base_version=base_version,
        author=author,
        message=f"Removed step {name}",
        change=lambda base: spec_without_step(spec=base, name=name),
    )


@transaction.atomic
def pipeline_update(
    *,
    pipeline: Pipeline,
    spec: PipelineSpec,
    author,
    name: str | None = None,
    description: str | None = None,
    message: str = "",
    base_version: int | None = None,
) -> SavedEdit | None:
    """Save pipeline-level changes (settings, inputs, outputs) and the row's name/description.

    `spec` is the edit applied to version `base_version` (None: the latest). A pipeline
    without steps has no version yet (a version is a runnable spec); then only the row
    changes and None is returned.
    """
    locked = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    saved = None
    if spec.jobs or locked.latest_version_id:
        saved = pipeline_edit(
            pipeline=pipeline, base_version=base_version, author=author, message=message, change=lambda _base: spec
        )
    # The row changes only after the spec validated, so a failed save leaves it as it was.
    changes = {}
    if name is not None and name != pipeline.name:
        changes["name"] = name
    if description is not None and description != pipeline.description:
        changes["description"] = description
    if changes:
        for field_name, value in changes.items():
            setattr(pipeline, field_name, value)
        pipeline.save(update_fields=[*changes, "updated_at"])
    return saved


@transaction.atomic
def pipeline_restore_version(
    *, pipeline: Pipeline, version: PipelineVersion, author, base_version: int | None = None
) -> PipelineVersion:
    """Save `version` again as the newest.

    With `base_version` (the latest when the user chose to restore), refuse with
    EditConflict when others saved since: restoring would silently undo their saves.
    """
    locked = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    latest = locked.versions.select_related("author").order_by("-number").first()
    if base_version is not None and latest is not None and latest.number != base_version:
        base = locked.versions.get(number=base_version) if base_version else None
        base_spec = _compare_spec(base, locked)
        theirs = _compare_spec(latest, locked)
        others = list(locked.versions.filter(number__gt=base_version).select_related("author").order_by("number"))
        raise _edit_conflict(
            pipeline=locked,
            base=base,
            base_spec=base_spec,
            theirs=theirs,
            others=others,
            parts=sorted(spec_change(base_spec, theirs).changed),
        )
    return pipeline_save_version(
        pipeline=pipeline, spec=version_spec_with_files(version), author=author, message=f"Restored v{version.number}"
    )
