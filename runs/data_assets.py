"""Data assets: named, versioned, content-hashed data, and their use as pipeline inputs.

A version's files are an Artifact in the content-addressed store, so equal data is stored
once and a version's hash is its manifest's. Versions are immutable: only `archived`,
`description` and `tags` change after creation, and a version that a run read cannot be
deleted (RunDataInput protects it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from pipelines_ui.models import Team
from runs import artifacts, signals
from runs.artifact_files import ArtifactError
from runs.models import (
    DataAsset,
    Datastore,
    DataType,
    DataVersion,
    Run,
    RunDataInput,
    RunRemoteInput,
    StepOutput,
)
from runs.registry.models import ModelVersion, RunModelInput
from runs.registry.selectors import model_resolve
from runs.secrets import SecretError, secrets_decrypt, secrets_encrypt
from runs.specs import version_spec
from stepwise.spec import DataLookupError, DataResolver
from stepwise.spec.bindings import parse_asset_ref, parse_remote_ref
from stepwise.spec.model import Pipeline

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}")
VERSION_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MUTABLE_FIELDS = frozenset({"archived", "description", "tags"})


class DataError(ValueError):
    """Bad input for a data asset; the message names what is wrong."""


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.fullmatch(name):
        raise DataError(
            f"invalid data asset name {name[:100]!r}: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    return name


def _check_version(version: str) -> str:
    version = str(version).strip()
    if not VERSION_RE.fullmatch(version) or version == "latest":
        raise DataError(f"invalid version {version[:100]!r}: use letters, digits, '_', '-' and '.' (not 'latest')")
    return version


def _check_type(type_: str) -> str:
    if type_ not in DataType.values:
        raise DataError(f"unknown data type {type_!r} (use {', '.join(DataType.values)})")
    return type_


def store_copy(source: Path, type_: str) -> artifacts.Artifact:
    """Copy `source` into the artifact store (the store moves what it takes, so it gets a copy)."""
    if type_ == DataType.URI_FILE and not source.is_file():
        raise DataError(f"uri_file path '{source}' is not a file")
    if type_ == DataType.URI_FOLDER and not source.is_dir():
        raise DataError(f"uri_folder path '{source}' is not a folder")
    with tempfile.TemporaryDirectory(prefix="stepwise-data-") as tmp:
        staged = Path(tmp) / (source.name or "data")
        try:
            if type_ == DataType.URI_FILE:
                shutil.copy2(source, staged)
            else:
                shutil.copytree(source, staged, symlinks=True)
            manifest = artifacts.store_files(staged, type_)
        except (OSError, ArtifactError) as exc:
            raise DataError(f"cannot store '{source}': {exc}") from None
    return artifacts.register(manifest, type_)


@transaction.atomic
def _version_create(
    *,
    team: Team,
    name: str,
    artifact: artifacts.Artifact,
    type_: str,
    version: str | None,
    description: str,
    tags: dict[str, str] | None,
    user,
    source: str,
    datastore: Datastore | None = None,
    source_path: str = "",
    step_output: StepOutput | None = None,
) -> DataVersion:
    asset, _ = DataAsset.objects.get_or_create(team=team, name=name)
    # Serializes version numbering per asset (a no-op on SQLite, whose writes are serialized anyway).
    DataAsset.objects.select_for_update().filter(pk=asset.pk).first()
    seq = (asset.versions.aggregate(m=Max("seq"))["m"] or 0) + 1
    if version is None:
        taken = set(asset.versions.values_list("version", flat=True))
        numbers = [int(v) for v in taken if v.isdigit()]
        version = str(max(numbers, default=0) + 1)
    elif asset.versions.filter(version=version).exists():
        raise DataError(f"data asset {name} already has a version {version}: versions are immutable, pick another")
    if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        raise DataError("tags must map names to text")
    try:
        with transaction.atomic():
            created = DataVersion.objects.create(
                asset=asset,
                version=version,
                seq=seq,
                type=type_,
                artifact=artifact,
                size=artifact.size,
                file_count=artifact.file_count,
                description=description,
                tags=tags or {},
                source=source,
                datastore=datastore,
                source_path=source_path[:1000],
                step_output=step_output,
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
    except IntegrityError:
        raise DataError(f"data asset {name} already has a version {version}") from None
    transaction.on_commit(lambda: signals.data_version_created.send(sender=DataVersion, version_id=created.pk))
    return created


def data_create_from_path(
    *,
    team: Team,
    name: str,
    path: Path,
    type_: str = DataType.URI_FOLDER,
    version: str | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
    user=None,
    source: str = DataVersion.Source.PATH,
) -> DataVersion:
    """A new version of `name` holding a copy of the local file or folder at `path`."""
    name = _check_name(name)
    version = None if version in (None, "") else _check_version(version)  # type: ignore[arg-type]
    type_ = _check_type(type_)
    artifact = store_copy(Path(path), type_)
    return _version_create(
        team=team,
        name=name,
        artifact=artifact,
        type_=type_,
        version=version,
        description=description,
        tags=tags,
        user=user,
        source=source,
        source_path=str(path) if source == DataVersion.Source.PATH else "",
    )


def data_create_from_step_output(
    *,
    step_output: StepOutput,
    name: str,
    version: str | None = None,
    description: str = "",
    user=None,
) -> DataVersion:
    """Register a step's output as data: the same stored files, nothing copied."""
    name = _check_name(name)
    version = None if version in (None, "") else _check_version(version)  # type: ignore[arg-type]
    artifact = step_output.artifact
    return _version_create(
        team=step_output.step_run.run.pipeline.team,
        name=name,
        artifact=artifact,
        type_=artifact.kind,
        version=version,
        description=description,
        tags=None,
        user=user,
        source=DataVersion.Source.STEP_OUTPUT,
        step_output=step_output,
    )


def data_create_from_datastore(
    *,
    datastore: Datastore,
    path: str,
    name: str,
    type_: str = DataType.URI_FOLDER,
    version: str | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
    user=None,
) -> DataVersion:
    """A new version holding a copy of `path` inside `datastore` (a path outside it is refused)."""
    name = _check_name(name)
    version = None if version in (None, "") else _check_version(version)  # type: ignore[arg-type]
    type_ = _check_type(type_)
    with tempfile.TemporaryDirectory(prefix="stepwise-ds-") as tmp:
        local = datastore_fetch(datastore, path, Path(tmp))
        artifact = store_copy(local, type_)
    return _version_create(
        team=datastore.team,
        name=name,
        artifact=artifact,
        type_=type_,
        version=version,
        description=description,
        tags=tags,
        user=user,
        source=DataVersion.Source.DATASTORE,
        datastore=datastore,
        source_path=path,
    )


def data_archive(*, version: DataVersion, archived: bool = True) -> DataVersion:
    """Archive (or restore) a version: `@latest` skips archived versions; `:VERSION` still finds them."""
    DataVersion.objects.filter(pk=version.pk).update(archived=archived)
    version.archived = archived
    return version


def data_version_delete(*, version: DataVersion) -> None:
    """Delete a version no run has read; DataError otherwise (archive it instead)."""
    if RunDataInput.objects.filter(data_version=version).exists():
        raise DataError(f"{version} was read by a run and cannot be deleted: archive it instead")
    version.delete()


def data_resolve(*, team: Team, name: str, version: str | None) -> DataVersion:
    """The version `name:version`, or for None the newest version not archived; DataLookupError naming both."""
    qs = DataVersion.objects.filter(asset__team=team, asset__name=name).select_related("artifact", "asset")
    if version is None:
        found = qs.filter(archived=False).order_by("-seq").first()
        if found is None:
            why = "has only archived versions" if qs.exists() else "is not registered"
            raise DataLookupError(f"data asset '{name}@latest' {why} in team {team.name}")
        return found
    found = qs.filter(version=version).first()
    if found is None:
        if not qs.exists():
            raise DataLookupError(f"data asset '{name}' (version {version}) is not registered in team {team.name}")
        raise DataLookupError(f"data asset '{name}' has no version '{version}' in team {team.name}")
    return found


def data_resolver(team: Team) -> DataResolver:
    """A `resolve_data` for the spec loader: checks that references exist when a pipeline is imported."""

    def resolve(name: str, version: str | None) -> None:
        data_resolve(team=team, name=name, version=version)

    return resolve


def run_data_inputs_resolve(
    *,
    run: Run,
    spec: Pipeline,
    pinned: dict[str, DataVersion | ModelVersion] | None = None,
    refs: dict[str, str] | None = None,
) -> dict[str, str]:
    """Resolve the run's data asset and model inputs and record them; `pinned` (a rerun's) wins,
    `refs` replaces an input's reference for this run (a data trigger's version). Errors by input name.

    Datastore paths and web addresses are runs.remote_inputs' (read before the run's transaction)."""
    errors: dict[str, str] = {}
    rows = []
    model_rows = []
    for name, decl in spec.inputs.items():
        reference = (refs or {}).get(name, decl.asset)
        if reference is None or parse_remote_ref(reference) is not None:
            continue
        pin = (pinned or {}).get(name)
        if decl.asset_kind and isinstance(pin, ModelVersion):
            model_rows.append(RunModelInput(run=run, name=name, reference=reference, model_version=pin))
            continue
        if not decl.asset_kind and isinstance(pin, DataVersion):
            rows.append(RunDataInput(run=run, name=name, reference=reference, data_version=pin))
            continue
        parsed = parse_asset_ref(reference)
        if parsed is None:
            errors[name] = f"'{reference}' is not azureml:NAME:VERSION or azureml:NAME@latest"
            continue
        if decl.asset_kind:
            try:
                model = model_resolve(team=run.pipeline.team, name=parsed[0], version=parsed[1])
            except DataLookupError as exc:
                errors[name] = str(exc)
                continue
            if model.flavour != decl.asset_kind:
                errors[name] = f"model {model} is a {model.flavour} but the input is {decl.asset_kind}"
                continue
            model_rows.append(RunModelInput(run=run, name=name, reference=decl.asset, model_version=model))
            continue
        try:
            found = data_resolve(team=run.pipeline.team, name=parsed[0], version=parsed[1])
        except DataLookupError as exc:
            errors[name] = str(exc)
            continue
        if found.type != decl.type:
            errors[name] = f"data asset {found} is {found.type} but the input is {decl.type}"
            continue
        rows.append(RunDataInput(run=run, name=name, reference=reference, data_version=found))
    if not errors:
        RunDataInput.objects.bulk_create(rows)
        RunModelInput.objects.bulk_create(model_rows)
    return errors


def register_named_outputs(*, step_run) -> list[DataVersion]:
    """Azure ML's `outputs.X.name` (and `.version`): a succeeded or reused step's outputs become data versions.

    Called in the transaction that records the outputs. An output whose content is already the
    named version (or, without a version, the newest one) adds nothing, so reuse and reruns do
    not pile up equal versions; a version taken by other content is logged and skipped, as the
    step itself succeeded.
    """
    spec = version_spec(step_run.run.version)
    step = spec.jobs.get(step_run.name)
    if step is None or not any(d.asset_name for d in step.output_decls.values()):
        return []
    created = []
    for output in step_run.outputs.select_related("artifact"):
        decl = step.output_decls.get(output.name)
        # A model-typed output registers a model version (runs.registry.services).
        if decl is None or not decl.asset_name or decl.asset_kind:
            continue
        existing = DataVersion.objects.filter(asset__team=step_run.run.pipeline.team, asset__name=decl.asset_name)
        current = existing.filter(version=decl.asset_version) if decl.asset_version else existing.order_by("-seq")[:1]
        if any(v.artifact_id == output.artifact_id for v in current):
            continue
        try:
            created.append(
                data_create_from_step_output(
                    step_output=output,
                    name=decl.asset_name,
                    version=decl.asset_version or None,
                    user=step_run.run.created_by,
                )
            )
        except DataError as exc:
            log.warning(
                "step %s of run %s: output %s not registered: %s", step_run.name, step_run.run_id, output.name, exc
            )
    return created


def run_data_artifacts(run: Run) -> dict[str, artifacts.Artifact]:
    """`{pipeline input: Artifact}` of the data and model versions and remote inputs the run resolved."""
    found = {row.name: row.artifact for row in RunRemoteInput.objects.filter(run=run).select_related("artifact")}
    found.update(
        (row.name, row.data_version.artifact)
        for row in RunDataInput.objects.filter(run=run).select_related("data_version__artifact")
    )
    for row in RunModelInput.objects.filter(run=run).select_related("model_version__artifact"):
        found[row.name] = row.model_version.artifact
    return found


def run_data_pins(run: Run) -> dict[str, DataVersion | ModelVersion]:
    pins: dict[str, DataVersion | ModelVersion] = {
        row.name: row.data_version for row in RunDataInput.objects.filter(run=run).select_related("data_version")
    }
    for row in RunModelInput.objects.filter(run=run).select_related("model_version"):
        pins[row.name] = row.model_version
    return pins


def versions_referenced() -> set[str]:
    """Artifact hashes that data and model versions and runs' remote inputs hold: gc keeps them."""
    return (
        set(DataVersion.objects.values_list("artifact__sha256", flat=True))
        | set(ModelVersion.objects.values_list("artifact__sha256", flat=True))
        | set(RunRemoteInput.objects.values_list("artifact__sha256", flat=True))
    )


# -- uploads ----------------------------------------------------------------------------------

# An upload nobody finished in this long is abandoned: gc removes its folder.
UPLOAD_MAX_AGE_S = 2 * 24 * 3600


def uploads_dir() -> Path:
    return Path(settings.STEPWISE_WORKDIR) / "uploads"


def uploads_clean(*, older_than_s: float = UPLOAD_MAX_AGE_S, dry_run: bool = False) -> list[str]:
    """Remove upload folders untouched for `older_than_s`; their ids."""
    removed = []
    cutoff = time.time() - older_than_s
    try:
        folders = list(uploads_dir().iterdir())
    except FileNotFoundError:
        return []
    for folder in folders:
        try:
            stamps = [folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.iterdir())]
        except OSError:
            continue
        if max(stamps) < cutoff:
            removed.append(folder.name)
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
    return removed


# -- datastores ------------------------------------------------------------------------------


def datastore_create(
    *,
    team: Team,
    name: str,
    kind: str,
    root: str,
    options: dict | None = None,
    credentials: dict[str, str] | None = None,
) -> Datastore:
    name = _check_name(name)
    if kind not in Datastore.Kind.values:
        raise DataError(f"unknown datastore kind {kind!r} (use {', '.join(Datastore.Kind.values)})")
    if kind == Datastore.Kind.S3 and not root.startswith("s3://"):
        raise DataError("an s3 datastore's root is s3://bucket/prefix")
    if kind == Datastore.Kind.LOCAL:
        if not Path(root).is_absolute():
            raise DataError("a local datastore's root is an absolute folder path")
        allowed = [Path(r).resolve() for r in settings.STEPWISE_DATASTORE_ROOTS]
        folder = Path(root).resolve()
        if not any(folder.is_relative_to(base) and folder != base for base in allowed):
            # Not the base itself: a team taking all of it would leave no folder for any other team.
            where = ", ".join(str(base) for base in allowed)
            raise DataError(
                f"a local datastore's root must be a folder inside {where} (STEPWISE_DATASTORE_ROOTS), not all of it"
            )
        if _overlaps_another_team(team, folder):
            # Its files would be the other team's: readable (and registered as data) by this one.
            raise DataError(
                f"{root} is, holds or lies inside another team's datastore folder: give this team a folder of its own"
            )
    if Datastore.objects.filter(team=team, name=name).exists():
        raise DataError(f"team {team.name} already has a datastore named {name}")
    return Datastore.objects.create(
        team=team,
        name=name,
        kind=kind,
        root=root.rstrip("/"),
        options=options or {},
        credentials=secrets_encrypt({k: v for k, v in (credentials or {}).items() if v}),
    )


def _overlaps_another_team(team: Team, folder: Path) -> bool:
    others = Datastore.objects.filter(kind=Datastore.Kind.LOCAL).exclude(team=team).values_list("root", flat=True)
    for other in others:
        theirs = Path(other).resolve()
        if folder.is_relative_to(theirs) or theirs.is_relative_to(folder):
            return True
    return False


def _fs(datastore: Datastore):
    import fsspec

    try:
        creds = secrets_decrypt(datastore.credentials)
    except SecretError as exc:
        raise DataError(f"datastore {datastore.name}: {exc}") from None
    options = dict(datastore.options)
    if "key" in creds:
        options["key"] = creds["key"]
    if "secret" in creds:
        options["secret"] = creds["secret"]
    return fsspec.filesystem("s3", **options)


def datastore_filesystem(datastore: Datastore, path: str = "") -> tuple[object, str]:
    """(fsspec filesystem, path in it) of `path` inside the datastore; its credentials stay in the filesystem."""
    import fsspec

    rel = _inside(datastore, path)
    if datastore.kind == Datastore.Kind.LOCAL:
        root = Path(datastore.root).resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise DataError(f"'{path}' leaves the datastore {datastore.name}")
        return fsspec.filesystem("file"), str(target)
    return _fs(datastore), f"{datastore.root.removeprefix('s3://')}/{rel}".rstrip("/")


def _inside(datastore: Datastore, path: str) -> str:
    if "\x00" in path:
        raise DataError(f"a path in datastore {datastore.name} cannot hold a NUL character")
    rel = path.strip().lstrip("/")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise DataError(f"'{path}' leaves the datastore {datastore.name}")
    return "/".join(parts)


def datastore_browse(datastore: Datastore, path: str = "", *, limit: int = 500) -> list[dict]:
    """Entries under `path` (name, is_dir, size), at most `limit`."""
    rel = _inside(datastore, path)
    rows: list[dict] = []
    try:
        if datastore.kind == Datastore.Kind.LOCAL:
            root = Path(datastore.root).resolve()
            folder = (root / rel).resolve()
            if not folder.is_relative_to(root):
                raise DataError(f"'{path}' leaves the datastore {datastore.name}")
            for entry in sorted(folder.iterdir())[:limit]:
                if entry.is_symlink():
                    continue
                rows.append({"name": entry.name, "is_dir": entry.is_dir(), "size": entry.stat().st_size})
        else:
            fs = _fs(datastore)
            for info in fs.ls(f"{datastore.root.removeprefix('s3://')}/{rel}".rstrip("/"), detail=True)[:limit]:
                rows.append(
                    {
                        "name": info["name"].rsplit("/", 1)[-1],
                        "is_dir": info["type"] == "directory",
                        "size": info.get("size") or 0,
                    }
                )
    except OSError as exc:
        raise DataError(f"cannot list '{path}' in datastore {datastore.name}: {exc.strerror or exc}") from None
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore and aiohttp errors are not OSErrors
        raise DataError(f"cannot list '{path}' in datastore {datastore.name}: {str(exc)[:300]}") from None
    return rows


def datastore_fetch(datastore: Datastore, path: str, dest: Path) -> Path:
    """A local copy of `path` (file or folder) from the datastore, under dest."""
    rel = _inside(datastore, path)
    if datastore.kind == Datastore.Kind.LOCAL:
        root = Path(datastore.root).resolve()
        try:
            source = (root / rel).resolve()
            found = source.exists()
        except OSError as exc:  # a name too long: nothing such can exist
            raise DataError(f"'{path[:300]}' is not a path in datastore {datastore.name}: {exc.strerror}") from None
        if not source.is_relative_to(root):
            raise DataError(f"'{path}' leaves the datastore {datastore.name}")
        if not found:
            raise DataError(f"'{path}' does not exist in datastore {datastore.name}")
        return source
    fs = _fs(datastore)
    remote = f"{datastore.root.removeprefix('s3://')}/{rel}".rstrip("/")
    target = dest / (rel.rsplit("/", 1)[-1] or "data")
    try:
        if fs.isdir(remote):
            fs.get(remote + "/", str(target) + "/", recursive=True)
        elif fs.isfile(remote):
            fs.get(remote, str(target))
        else:
            raise DataError(f"'{path}' does not exist in datastore {datastore.name}")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore and aiohttp errors are not OSErrors
        raise DataError(f"cannot read '{path}' from datastore {datastore.name}: {str(exc)[:300]}") from None
    return target


def datastore_path_state(datastore: Datastore, path: str) -> str:
    """A hash of what `path` holds now (names, sizes, and modification times or ETags), "" when it
    is missing: cheap to compare between polls, nothing is read."""
    rel = _inside(datastore, path)
    entries: list[tuple[str, int, str]] = []
    try:
        if datastore.kind == Datastore.Kind.LOCAL:
            root = Path(datastore.root).resolve()
            target = (root / rel).resolve()
            if not target.is_relative_to(root):
                raise DataError(f"'{path}' leaves the datastore {datastore.name}")
            if not target.exists():
                return ""
            files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
            for f in files:
                st = f.stat()
                entries.append((str(f.relative_to(target)) if f != target else f.name, st.st_size, str(st.st_mtime_ns)))
        else:
            fs = _fs(datastore)
            remote = f"{datastore.root.removeprefix('s3://')}/{rel}".rstrip("/")
            fs.invalidate_cache()
            if not fs.exists(remote):
                return ""
            for name, info in sorted(fs.find(remote, detail=True).items()):
                entries.append((name, info.get("size") or 0, str(info.get("ETag") or info.get("LastModified") or "")))
    except OSError as exc:
        raise DataError(f"cannot list '{path}' in datastore {datastore.name}: {exc.strerror or exc}") from None
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore and aiohttp errors are not OSErrors
        raise DataError(f"cannot list '{path}' in datastore {datastore.name}: {str(exc)[:300]}") from None
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def datastore_path_check(datastore: Datastore, path: str) -> str:
    """`path` cleaned (relative, no '..'); DataError naming the problem."""
    rel = _inside(datastore, path)
    if not rel:
        raise DataError("give a path inside the datastore")
    return rel
