"""Model versions: register from a local path (upload, command line) or a step output; archive; delete.

Files go to the content-addressed artifact store as data versions' do, so a step output
registered as a model is not copied. The producing run's metrics and parameters are copied
onto the version: they are why this model was chosen, and must outlive the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.db import IntegrityError, transaction
from django.db.models import F, Max, Min, QuerySet, Window
from django.db.models.functions import FirstValue, RowNumber

from pipelines_ui.models import Team
from runs import artifacts
from runs.data_assets import NAME_RE, DataError, _check_version, store_copy
from runs.models import DataType, Metric, Param, StepOutput
from runs.registry.deployments import deployment_create, deployment_swap
from runs.registry.models import Deployment, Flavour, ModelAsset, ModelVersion, RunModelInput
from runs.specs import version_spec
from stepwise.spec.bindings import parse_expression
from stepwise.spec.model import ParentInput

log = logging.getLogger(__name__)


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.fullmatch(name):
        raise DataError(
            f"invalid model name {name[:100]!r}: use letters, digits, '_', '-' and '.', starting with a letter or digit"
        )
    return name


def _check_flavour(flavour: str) -> str:
    if flavour not in Flavour.values:
        raise DataError(f"unknown model flavour {flavour!r} (use {', '.join(Flavour.values)})")
    return flavour


def _last_values(rows: QuerySet[Metric]) -> dict[str, float]:
    """Per name the value of its row with the highest (step, id), names in the order of their first
    row by (step, id): a dict filled from the rows in that order, worked out in the database, as a
    step may log a million points."""
    by_name = {"partition_by": [F("name")]}
    last = rows.annotate(
        rank=Window(RowNumber(), order_by=[F("step").desc(), F("id").desc()], **by_name),
        first_step=Window(Min("step"), **by_name),
        first_id=Window(FirstValue("id"), order_by=[F("step").asc(), F("id").asc()], **by_name),
    ).filter(rank=1)
    return {name: value for *_, name, value in sorted(last.values_list("first_step", "first_id", "name", "value"))}


def run_metrics_params(step_output: StepOutput) -> tuple[dict[str, float], dict[str, str]]:
    """The producing run's last value of each metric and its parameters; the producing step's win on a clash."""
    step_run = step_output.step_run
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    # Other steps first, so the producing step's values overwrite theirs.
    for producing in (False, True):
        scope = {"step_run": step_run} if producing else {"step_run__run": step_run.run_id}
        exclude = {} if producing else {"step_run": step_run}
        metrics.update(_last_values(Metric.objects.filter(**scope).exclude(**exclude)))
        for p in Param.objects.filter(**scope).exclude(**exclude).order_by("id"):
            params[p.name] = p.value
    return metrics, params


@transaction.atomic
def _version_create(
    *,
    team: Team,
    name: str,
    artifact: artifacts.Artifact,
    flavour: str,
    version: str | None,
    description: str,
    tags: dict[str, str] | None,
    user,
    source: str,
    step_output: StepOutput | None = None,
    metrics: dict | None = None,
    params: dict | None = None,
) -> ModelVersion:
    if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        raise DataError("tags must map names to text")
    model, _ = ModelAsset.objects.get_or_create(team=team, name=name)
    # Serializes version numbering per model (a no-op on SQLite, whose writes are serialized anyway).
    ModelAsset.objects.select_for_update().filter(pk=model.pk).first()
    seq = (model.versions.aggregate(m=Max("seq"))["m"] or 0) + 1
    if version is None:
        numbers = [int(v) for v in model.versions.values_list("version", flat=True) if v.isdigit()]
        version = str(max(numbers, default=0) + 1)
    elif model.versions.filter(version=version).exists():
        raise DataError(f"model {name} already has a version {version}: versions are immutable, pick another")
    try:
        with transaction.atomic():
            return ModelVersion.objects.create(
                model=model,
                version=version,
                seq=seq,
                flavour=flavour,
                artifact=artifact,
                size=artifact.size,
                file_count=artifact.file_count,
                description=description,
                tags=tags or {},
                source=source,
                step_output=step_output,
                metrics=metrics or {},
                params=params or {},
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
    except IntegrityError:
        raise DataError(f"model {name} already has a version {version}") from None


def model_create_from_path(
    *,
    team: Team,
    name: str,
    path: Path,
    flavour: str = Flavour.CUSTOM,
    version: str | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
    user=None,
    source: str = ModelVersion.Source.PATH,
) -> ModelVersion:
    """A new version of model `name` holding a copy of the local file or folder at `path`."""
    name = _check_name(name)
    version = None if version in (None, "") else _check_version(version)  # type: ignore[arg-type]
    flavour = _check_flavour(flavour)
    path = Path(path)
    if not path.exists():
        raise DataError(f"'{path}' does not exist")
    artifact = store_copy(path, DataType.URI_FILE if path.is_file() else DataType.URI_FOLDER)
    return _version_create(
        team=team,
        name=name,
        artifact=artifact,
        flavour=flavour,
        version=version,
        description=description,
        tags=tags,
        user=user,
        source=source,
    )


def model_create_from_step_output(
    *,
    step_output: StepOutput,
    name: str,
    flavour: str = Flavour.CUSTOM,
    version: str | None = None,
    description: str = "",
    user=None,
) -> ModelVersion:
    """Register a step's output as a model: the same stored files, with the run's metrics and parameters."""
    name = _check_name(name)
    version = None if version in (None, "") else _check_version(version)  # type: ignore[arg-type]
    flavour = _check_flavour(flavour)
    metrics, params = run_metrics_params(step_output)
    return _version_create(
        team=step_output.step_run.run.pipeline.team,
        name=name,
        artifact=step_output.artifact,
        flavour=flavour,
        version=version,
        description=description,
        tags=None,
        user=user,
        source=ModelVersion.Source.STEP_OUTPUT,
        step_output=step_output,
        metrics=metrics,
        params=params,
    )


def model_archive(*, version: ModelVersion, archived: bool = True) -> ModelVersion:
    """Archive (or restore) a version: `@latest` skips archived versions; `:VERSION` still finds them."""
    ModelVersion.objects.filter(pk=version.pk).update(archived=archived)
    version.archived = archived
    return version


def model_version_delete(*, version: ModelVersion) -> None:
    """Delete a version no run read and no deployment serves; DataError otherwise (archive it instead)."""
    if RunModelInput.objects.filter(model_version=version).exists():
        raise DataError(f"model {version} was read by a run and cannot be deleted: archive it instead")
    if version.deployments.exists():
        raise DataError(f"model {version} is deployed and cannot be deleted")
    version.delete()


def register_named_model_outputs(*, step_run) -> list[ModelVersion]:
    """Azure ML's named output of a model type (`type: custom_model`, `name: N`): a succeeded or
    reused step's output becomes a model version, with the run's metrics and parameters.

    Called beside `register_named_outputs`, in the transaction that records the outputs, with
    the same rules: content already registered under that name (and version) adds nothing; a
    version taken by other content is logged and skipped, as the step itself succeeded.
    """
    spec = version_spec(step_run.run.version)
    step = spec.jobs.get(step_run.name)
    if step is None or not any(d.asset_name and d.asset_kind for d in step.output_decls.values()):
        return []
    created = []
    for output in step_run.outputs.select_related("artifact", "step_run__run__pipeline__team"):
        decl = step.output_decls.get(output.name)
        if decl is None or not decl.asset_name or not decl.asset_kind:
            continue
        existing = ModelVersion.objects.filter(model__team=step_run.run.pipeline.team, model__name=decl.asset_name)
        current = existing.filter(version=decl.asset_version) if decl.asset_version else existing.order_by("-seq")[:1]
        version = next((v for v in current if v.artifact_id == output.artifact_id), None)
        try:
            if version is None:
                version = model_create_from_step_output(
                    step_output=output,
                    name=decl.asset_name,
                    flavour=decl.asset_kind,
                    version=decl.asset_version or None,
                    user=step_run.run.created_by,
                )
                created.append(version)
            if deploy_as := _deploy_name(decl.deploy, spec=spec, run=step_run.run):
                _deploy(version=version, name=deploy_as, user=step_run.run.created_by)
        except DataError as exc:
            log.warning(
                "step %s of run %s: output %s not registered or deployed as a model: %s",
                step_run.name,
                step_run.run_id,
                output.name,
                exc,
            )
    return created


def _deploy_name(deploy: str, *, spec, run) -> str:
    """The deployment name an output's `deploy` asks for in this run ("" for none)."""
    if not deploy:
        return ""
    binding = parse_expression(deploy)
    if isinstance(binding, ParentInput):
        decl = spec.inputs.get(binding.name)
        value = run.inputs.get(binding.name, decl.default if decl is not None else None)
        return str(value).strip() if value not in (None, "") else ""
    return deploy


def _deploy(*, version: ModelVersion, name: str, user) -> None:
    """Serve `version` as deployment `name` of its team: created, or swapped to when it serves another version."""
    team = version.model.team
    deployment = Deployment.objects.filter(team=team, name=name).select_related("model_version").first()
    if deployment is None:
        deployment_create(team=team, name=name, model_version=version, user=user)
    elif deployment.model_version_id != version.pk:
        deployment_swap(deployment=deployment, model_version=version)
