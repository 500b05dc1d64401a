"""Reading pipeline versions from the execution side: specs, file maps and input values."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from pipelines_ui.models import PipelineVersion
from stepwise.spec import from_json, parallel_bindings
from stepwise.spec.model import SECRET_TYPE, DataPath, ParentInput, Pipeline, Step


@lru_cache(maxsize=256)
def _cached_spec(version_id: int, content_hash: str) -> tuple[Pipeline, dict[str, str]]:
    version = PipelineVersion.objects.only("spec", "files").get(pk=version_id)
    return from_json(version.spec, {}), dict(version.files)


def version_spec(version: PipelineVersion) -> Pipeline:
    """The version's spec without file contents; versions are immutable, so it is cached."""
    return _cached_spec(version.pk, version.content_hash)[0]


def version_file_map(version: PipelineVersion) -> dict[str, str]:
    """`{files key: blob sha256}` of the version."""
    return _cached_spec(version.pk, version.content_hash)[1]


def tree_hash(file_map: dict[str, str], prefix: str) -> str | None:
    """A hash over the files under `prefix/` (names and contents), None when there are none."""
    prefix = prefix.rstrip("/") + "/"
    entries = sorted((key[len(prefix) :], sha) for key, sha in file_map.items() if key.startswith(prefix))
    if not entries:
        return None
    return hashlib.sha256("".join(f"{rel}\0{sha}\n" for rel, sha in entries).encode()).hexdigest()


def parent_input_value(pipeline: Pipeline, run_inputs: dict, name: str) -> object:
    if name in run_inputs:
        return run_inputs[name]
    decl = pipeline.inputs.get(name)
    return decl.default if decl else None


def resolve_literal_inputs(pipeline: Pipeline, step: Step, run_inputs: dict) -> dict[str, object]:
    """Every literal input of the step with its value (None when unbound and optional)."""
    values: dict[str, object] = {}
    for name, decl in step.input_decls.items():
        if decl.type not in ("string", "integer", "number", "boolean"):
            continue
        binding = step.inputs.get(name)
        if isinstance(binding, ParentInput):
            value = parent_input_value(pipeline, run_inputs, binding.name)
        elif binding is None or isinstance(binding, DataPath):
            value = decl.default
        else:
            value = binding
        values[name] = value
    return values


def resolve_secret_inputs(pipeline: Pipeline, step: Step, run_secrets: dict[str, str]) -> dict[str, str | None]:
    """Every secret input of the step with its value from the run (None when not given).

    Validation lets a secret input be bound only to a secret pipeline input, so its value
    comes from the run's secrets or nowhere.
    """
    values: dict[str, str | None] = {}
    for name, decl in step.input_decls.items():
        if decl.type != SECRET_TYPE:
            continue
        binding = step.inputs.get(name)
        values[name] = run_secrets.get(binding.name) if isinstance(binding, ParentInput) else None
    return values


def step_command(pipeline: Pipeline, step: Step, run_inputs: dict) -> str:
    """The step's command for this run: a parallel step's run settings bound to pipeline inputs
    take the run's values. Raises ValueError naming the setting and the value that does not fit."""
    if step.parallel is None or not step.parallel.bound:
        return step.command
    values = {name: parent_input_value(pipeline, run_inputs, name) for name in step.parallel.bound.values()}
    return parallel_bindings.resolved_command(step.parallel, values)
