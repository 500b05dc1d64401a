"""Registering command and parallel components: from a component YAML file (with its code), an
upload, or a pipeline's step.

Every path reads the component through the spec loader's own component reader, so what
registers is what a pipeline's `component: azureml:NAME:VERSION` can use. A version is
immutable: registering an existing NAME:VERSION again is a no-op when the content is the
same and an error when it differs.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from django.conf import settings
from django.db import transaction

from pipelines_ui.component_selectors import component_versions
from pipelines_ui.models import Component, PipelineVersion, Role, Team, Visibility
from pipelines_ui.selectors import user_role
from pipelines_ui.services import file_blob_store, version_spec_with_files
from pipelines_ui.uploads import (
    YAML_SUFFIXES,
    UploadError,
    extract_zip,
    fit_filename,
    max_bytes,
    relative_problems,
)
from stepwise.spec import SpecError, component_mapping, load_component
from stepwise.spec.model import Step

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,254}")
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ComponentError(ValueError):
    """A registration that cannot be done as asked (bad name, a version taken by other content)."""


class ComponentRoleError(ComponentError):
    """The registering user's role does not allow it (sharing beyond the team needs its admin)."""


@dataclass(frozen=True)
class Registered:
    component: Component
    created: bool  # False: that name and version already held this content

    @property
    def message(self) -> str:
        c = self.component
        if self.created:
            return f"registered component {c.name} version {c.version} in team {c.team.name}"
        return (
            f"component {c.name} version {c.version} is already registered in team {c.team.name}"
            " with this content: nothing changed"
        )


def component_register_file(
    *,
    team: Team,
    path: Path,
    user,
    name: str = "",
    version: str = "",
    visibility: str = Visibility.TEAM,
    root: Path | None = None,
) -> Registered:
    """Register the component file at `path` with its `code` folder (inside `root`, default the file's folder)."""
    step, files, _warnings = load_component(
        Path(path),
        root=root,
        max_bytes=settings.STEPWISE_YAML_MAX_BYTES,
        max_files_bytes=settings.STEPWISE_UPLOAD_MAX_BYTES,
    )
    return _register(team=team, step=step, files=files, user=user, name=name, version=version, visibility=visibility)


def component_register_upload(
    *, team: Team, uploaded, user, name: str = "", version: str = "", visibility: str = Visibility.TEAM
) -> Registered:
    """Register an uploaded `.yml` (no code) or `.zip` (the YAML with its code folder).

    Raises UploadError for an unsafe or unreadable upload, SpecError with problems naming
    files inside the upload, ComponentError for a name or version that cannot be registered.
    """
    with tempfile.TemporaryDirectory(prefix="stepwise-component-") as tmp:
        root = Path(tmp) / "upload"
        yaml_path = _save_upload(uploaded, root)
        try:
            return component_register_file(
                team=team, path=yaml_path, user=user, name=name, version=version, visibility=visibility, root=root
            )
        except SpecError as exc:
            raise SpecError(relative_problems(exc.problems, root)) from None


def component_register_step(
    *,
    team: Team,
    version: PipelineVersion,
    step_name: str,
    user,
    name: str = "",
    component_version: str = "",
    visibility: str = Visibility.TEAM,
) -> Registered:
    """Register a step of a pipeline version (its command, inputs, outputs, environment and code)."""
    spec = version_spec_with_files(version)
    step = spec.jobs.get(step_name)
    if step is None:
        raise ComponentError(f"{version} has no step '{step_name}'")
    # Bindings belong to the pipeline, not the component: only the declarations travel.
    bare = Step(
        name=step.name,
        command=step.command,
        display_name=step.display_name,
        description=step.description,
        component_name=name or step.component_name or step.name,
        component_version="",
        input_decls=step.input_decls,
        output_decls=step.output_decls,
        has_code=step.has_code,
        environment=step.environment,
        is_deterministic=step.is_deterministic,
        distribution=step.distribution,
        # A parallel step registers as a parallel component: its settings as values, since a
        # setting bound to the pipeline's inputs is the job's to bind again.
        parallel=replace(step.parallel, bound={}, from_component=True) if step.parallel is not None else None,
    )
    return _register(
        team=team,
        step=bare,
        files=spec.step_files(step_name),
        user=user,
        name=name,
        version=component_version,
        visibility=visibility,
    )


def _next_version(existing: list[Component]) -> str:
    numbers = [int(c.version) for c in existing if c.version.isascii() and c.version.isdigit()]
    return str(max(numbers, default=0) + 1)


def _may_share_widely(user, team: Team) -> bool:
    # The server's command line acts as a superuser unless --user names another: its operator may.
    return user is None or user.is_superuser or user_role(user, team) == Role.ADMIN


@transaction.atomic
def _register(
    *, team: Team, step: Step, files: dict[str, bytes], user, name: str, version: str, visibility: str
) -> Registered:
    name = (name or step.component_name).strip()
    version = str(version or step.component_version or "").strip()
    if not name:
        raise ComponentError("the component has no name: add 'name:' to its YAML or give one")
    if not NAME.fullmatch(name):
        raise ComponentError(
            f"invalid component name '{name}': start with a letter; use letters, digits, '_', '.' and '-'"
        )
    if version and not VERSION.fullmatch(version):
        raise ComponentError(
            f"invalid version '{version}' of component '{name}': use letters, digits, '_', '.' and '-'"
        )
    if visibility not in Visibility.values:
        raise ComponentError(f"visibility must be one of {', '.join(Visibility.values)}, not '{visibility}'")
    if visibility == Visibility.INSTANCE and not _may_share_widely(user, team):
        # Every team of the instance would see its command and code: the team's admins decide
        # that, as for a template.
        raise ComponentRoleError("sharing a component with every team needs the admin role of the team")
    # The team's row lock serializes registrations in the team: two of one name never both
    # take the same next version, nor both find a version free.
    Team.objects.select_for_update().filter(pk=team.pk).first()
    existing = component_versions(team=team, name=name)
    shas = {rel: file_blob_store(content=data) for rel, data in sorted(files.items())}

    def body(for_version: str) -> dict:
        return component_mapping(replace(step, component_name=name, component_version=for_version))

    if not version:
        latest = existing[0] if existing else None
        if latest is not None and latest.spec == body(latest.version) and latest.files == shas:
            return Registered(component=latest, created=False)
        version = _next_version(existing)
    same = next((c for c in existing if c.version == version), None)
    if same is not None:
        if same.spec == body(version) and same.files == shas:
            return Registered(component=same, created=False)
        raise ComponentError(
            f"component '{name}' version '{version}' is already registered in team {team.name} with other content:"
            " versions never change; give a new version"
        )
    component = Component.objects.create(
        team=team,
        name=name,
        version=version,
        display_name=step.display_name[:255],
        description=step.description,
        spec=body(version),
        files=shas,
        visibility=visibility,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    return Registered(component=component, created=True)


def _save_upload(uploaded, root: Path) -> Path:
    """Write the upload under `root`; return the component YAML's path."""
    filename = fit_filename(getattr(uploaded, "name", "") or "", "component.yml")
    size = getattr(uploaded, "size", None)
    if size is not None and size > max_bytes():
        raise UploadError(f"{filename}: larger than {max_bytes()} bytes")
    suffix = Path(filename).suffix.lower()
    if suffix == ".zip":
        extract_zip(uploaded, root)
        return _find_component_yaml(root)
    if suffix not in YAML_SUFFIXES:
        raise UploadError(f"{filename}: upload a .yml, .yaml or .zip file")
    if size is not None and size > int(settings.STEPWISE_YAML_MAX_BYTES):
        raise UploadError(f"{filename}: larger than {settings.STEPWISE_YAML_MAX_BYTES} bytes")
    root.mkdir(parents=True, exist_ok=True)
    target = root / filename
    with open(target, "wb") as out:
        for chunk in uploaded.chunks() if hasattr(uploaded, "chunks") else [uploaded.read()]:
            out.write(chunk)
    return target


def _find_component_yaml(root: Path) -> Path:
    """The one YAML file at the zip's top level, or in its one top-level folder."""
    folders = [root]
    entries = list(root.iterdir()) if root.is_dir() else []
    if len(entries) == 1 and entries[0].is_dir():
        folders.append(entries[0])
    for folder in folders:
        ymls = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in YAML_SUFFIXES)
        if len(ymls) == 1:
            return ymls[0]
        if len(ymls) > 1:
            names = ", ".join(p.name for p in ymls)
            raise UploadError(f"the zip holds several YAML files at its top level ({names}): keep only the component's")
    raise UploadError("the zip has no component YAML (.yml) at its top level")
