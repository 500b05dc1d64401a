"""Starting, canceling and rerunning runs."""

from __future__ import annotations

from collections.abc import Collection

from django.db import connection, transaction
from django.http import Http404
from django.views.decorators.debug import sensitive_variables

from pipelines_ui import team_secrets
from pipelines_ui.models import Pipeline, PipelineVersion
from runs import data_assets, orchestrator, remote_inputs
from runs.models import ComputeTarget, Run, RunState, StepRun, StepState
from runs.queues import resolve_target
from runs.secrets import SecretError, secrets_decrypt, secrets_encrypt
from runs.specs import version_spec
from stepwise import dag
from stepwise.spec.bindings import coerce_literal, compute_input, input_range_error
from stepwise.spec.model import SECRET_TYPE
from stepwise.spec.model import Pipeline as PipelineSpec


class RunInputError(ValueError):
    """Bad run parameters; `errors` maps the input name to what is wrong."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class PipelineDeleted(Http404):
    """The pipeline was deleted before its run could be written: a 404 to the request that
    started it, the error of a schedule's or a trigger's fire."""

    def __init__(self, pipeline_id: int):
        super().__init__(f"pipeline #{pipeline_id} was deleted: no run was started")


def _pipeline_held(pipeline_id: int) -> bool:
    """Whether the pipeline still exists, held so until this transaction ends: a delete waits for
    the run to be written, then refuses (the run is active), rather than leave the run's foreign
    key to fail at commit. On PostgreSQL FOR KEY SHARE, which runs starting at once share and
    only a delete (or a key change) waits for; SQLite's write lock already holds everything."""
    table = connection.ops.quote_name(Pipeline._meta.db_table)
    lock = " FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s{lock}", [pipeline_id])
        return cursor.fetchone() is not None


def run_inputs_clean(
    spec: PipelineSpec, raw: dict[str, object], *, team_secret_names: Collection[str] = ()
) -> dict[str, object]:
    """Type-check run parameter values against the pipeline's inputs.

    `team_secret_names`: the names of the team's secrets, which a secret input given no value takes
    when the run is created (checking a form, a schedule or a command line before that).
    """
    errors: dict[str, str] = {}
    values: dict[str, object] = {}
    for name, value in raw.items():
        decl = spec.inputs.get(name)
        if decl is None:
            errors[name] = "the pipeline has no such input"
            continue
        if decl.data is not None or decl.asset is not None:
            errors[name] = "data inputs cannot be overridden when starting a run yet"
            continue
        try:
            values[name] = coerce_literal(decl.type, value, enum=decl.enum)
        except ValueError as exc:
            errors[name] = f"expected {decl.type}: {exc}"
            continue
        if error := input_range_error(spec, name, values[name]):
            errors[name] = error
    for name, decl in spec.inputs.items():
        if (
            decl.data is None
            and decl.asset is None
            and not decl.optional
            and decl.default is None
            and values.get(name) is None
        ):
            if decl.type != SECRET_TYPE:
                errors.setdefault(name, "a value is required")
            elif name not in team_secret_names:
                errors.setdefault(
                    name, f"a value is required: give it, or have a team admin add a team secret named {name}"
                )
    if errors:
        raise RunInputError(errors)
    return values


def force_steps_clean(spec: PipelineSpec, names: Collection[str]) -> set[str]:
    """The steps to force, checked against the pipeline's steps: a misspelt name would otherwise
    force nothing, and the run would quietly reuse the step that was meant to execute."""
    unknown = sorted(set(names) - spec.jobs.keys())
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise RunInputError({"force_steps": f"no step{'s' if len(unknown) > 1 else ''} named {listed}"})
    return set(names)


# Keeps secret values out of Django's error reports (the debug page, mails to ADMINS), in this
# frame and the frames it calls (run_inputs_clean, coerce_literal).
@sensitive_variables("inputs", "values", "secrets", "raw", "value")
def run_create(
    *,
    version: PipelineVersion,
    user,
    inputs: dict[str, object] | None = None,
    force_rerun: bool = False,
    force_steps: Collection[str] = frozenset(),
    rerun_of: Run | None = None,
    timeout_s: int | None = None,
    data_pins: dict | None = None,
    remote_pins: dict | None = None,
    data_refs: dict[str, str] | None = None,
) -> Run:
    """Create a run of `version` with its step runs, and start it (reuse, enqueue the roots).

    `inputs` holds secret inputs' values too: they are stored encrypted in `Run.secrets`,
    never in `Run.inputs`; a secret input given no value takes the team's secret of its name.
    `data_pins`/`remote_pins` (a rerun's) fix data inputs to what an earlier run read;
    `data_refs` replaces data inputs' references for this run (a data trigger).
    `force_steps`: steps that execute even if they could be reused (their downstream is reused
    when their outputs come out the same); a name the version has no step of is a RunInputError.
    Remote inputs (datastore paths, web addresses) are read first, outside the transaction, so
    that a slow server holds no database lock.
    """
    try:
        spec = version_spec(version)
        team = version.pipeline.team
    except (PipelineVersion.DoesNotExist, Pipeline.DoesNotExist):
        # Versions go only with their pipeline.
        raise PipelineDeleted(version.pipeline_id) from None
    force_steps = force_steps_clean(spec, force_steps)
    inputs, from_team = _with_team_secrets(team, spec, inputs or {})
    run_inputs_clean(spec, inputs)
    remote, errors = remote_inputs.remote_inputs_fetch(team=team, spec=spec, refs=data_refs, pinned=remote_pins)
    if errors:
        raise RunInputError(errors)
    return _run_create(
        version=version,
        spec=spec,
        user=user,
        inputs=inputs,
        force_rerun=force_rerun,
        force_steps=force_steps,
        rerun_of=rerun_of,
        timeout_s=timeout_s,
        data_pins=data_pins,
        data_refs=data_refs,
        remote=remote,
        from_team=from_team,
    )


@sensitive_variables("inputs", "values")
def _with_team_secrets(team, spec: PipelineSpec, inputs: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    """`inputs` with the team's secret of the same name for each secret input given no value,
    and the names of those inputs."""
    wanted = [name for name, decl in spec.inputs.items() if decl.type == SECRET_TYPE and inputs.get(name) is None]
    if not wanted:
        return inputs, []
    try:
        values = team_secrets.secret_values(team, wanted)
    except team_secrets.TeamSecretUnreadable as exc:
        raise RunInputError({exc.name: str(exc)}) from None
    return {**inputs, **values}, sorted(values)


@sensitive_variables("inputs", "values", "secrets")
@transaction.atomic
def _run_create(
    *,
    version: PipelineVersion,
    spec: PipelineSpec,
    user,
    inputs: dict[str, object] | None,
    force_rerun: bool,
    force_steps: set[str],
    rerun_of: Run | None,
    timeout_s: int | None,
    data_pins: dict | None,
    data_refs: dict[str, str] | None,
    remote: dict[str, remote_inputs.Fetched],
    from_team: list[str],
) -> Run:
    if not _pipeline_held(version.pipeline_id):
        raise PipelineDeleted(version.pipeline_id)
    values = run_inputs_clean(spec, inputs or {})
    secrets = {name: values.pop(name) for name in list(values) if spec.inputs[name].type == SECRET_TYPE}
    missing_targets: dict[str, str] = {}
    queues: dict[str, str] = {}
    targets: dict[str, ComputeTarget | None] = {}
    for name, step in spec.jobs.items():
        compute = step.compute or spec.settings.default_compute
        if (input_name := compute_input(compute)) is not None:
            # `compute: ${{parent.inputs.X}}`: this run's value of X names the target.
            decl = spec.inputs.get(input_name)
            chosen = values.get(input_name, decl.default if decl is not None else None)
            compute = chosen if isinstance(chosen, str) else ""
        if compute not in targets:
            targets[compute] = resolve_target(compute)
        target = targets[compute]
        if target is None:
            missing_targets[name] = f"unknown compute target {compute!r}"
        else:
            queues[name] = target.queue
    if missing_targets:
        raise RunInputError(missing_targets)
    run = Run.objects.create(
        pipeline=version.pipeline,
        version=version,
        inputs=values,
        secrets=secrets_encrypt({k: v for k, v in secrets.items() if v is not None}),
        team_secrets=from_team,
        force_rerun=force_rerun or spec.settings.force_rerun,
        continue_on_step_failure=spec.settings.continue_on_step_failure,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        rerun_of=rerun_of,
        timeout_s=timeout_s,
    )
    # Data assets (`azureml:NAME@latest`) resolve now, once: the run keeps the exact versions.
    if data_errors := data_assets.run_data_inputs_resolve(run=run, spec=spec, pinned=data_pins, refs=data_refs):
        raise RunInputError(data_errors)
    remote_inputs.remote_inputs_record(run=run, fetched=remote)
    StepRun.objects.bulk_create(
        StepRun(
            run=run,
            name=name,
            display_name=step.display_name,
            queue=queues[name],
            max_retries=step.max_retries,
            timeout_s=step.timeout_s,
            force=name in force_steps,
        )
        for name, step in spec.jobs.items()
    )
    transaction.on_commit(lambda: orchestrator.run_advance(run.pk))
    return run


def run_cancel(*, run: Run) -> bool:
    """Ask a run to stop: pending and queued steps end at once, running ones within a heartbeat."""
    if run.state not in (RunState.QUEUED, RunState.RUNNING):
        return False
    Run.objects.filter(pk=run.pk).update(cancel_requested=True)
    orchestrator.run_advance(run.pk)
    return True


def run_time_out(*, run: Run) -> bool:
    """Fail a run that has run past its timeout: like a cancel, but the run ends failed."""
    if run.state not in (RunState.QUEUED, RunState.RUNNING):
        return False
    Run.objects.filter(pk=run.pk).update(timed_out=True)
    orchestrator.run_advance(run.pk)
    return True


@sensitive_variables("secrets")
def run_rerun(*, run: Run, user, mode: str = "all", from_step: str | None = None) -> Run:
    """Rerun a finished run's version with its inputs; reuse applies.

    mode "all": everything may be reused; "failed": only failed/skipped/canceled steps execute
    (successful ones are reused by fingerprint anyway); "from": `from_step` and its downstream are forced.
    """
    force: set[str] = set()
    if mode == "from":
        spec = version_spec(run.version)
        if from_step not in spec.jobs:
            raise RunInputError({"step": f"no step named {from_step!r}"})
        force = dag.downstream_closure(spec.upstream(), [from_step])
    elif mode == "failed":
        force = set(
            run.steps.filter(state__in=[StepState.FAILED, StepState.SKIPPED, StepState.CANCELED]).values_list(
                "name", flat=True
            )
        )
        # Their successful siblings are reused by fingerprint; the failed ones execute even if
        # an older success with the same fingerprint exists.
    try:
        # A rerun gets the secrets its run was given, as it gets the other inputs; those that
        # came from the team's secrets it takes from there again, as they are now.
        secrets = secrets_decrypt({k: v for k, v in run.secrets.items() if k not in run.team_secrets})
    except SecretError as exc:
        raise RunInputError({exc.name: str(exc)}) from None
    return run_create(
        version=run.version,
        user=user,
        inputs={**run.inputs, **secrets},
        force_steps=force,
        rerun_of=run,
        timeout_s=run.timeout_s,
        data_pins=data_assets.run_data_pins(run),
        remote_pins=remote_inputs.run_remote_pins(run),
    )
