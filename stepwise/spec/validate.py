"""Semantic checks of an in-memory Pipeline: what the loader and the browser editor both need.

Problems name the job and the field (`inputs.x`, `command`, `limits.timeout`); the loader
adds the file and line, since only it knows where the YAML came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import nesting, parallel_bindings
from .bindings import (
    JOB_NAME,
    MAX_NAME_LENGTH,
    MAX_RETRIES,
    MAX_TIMEOUT_S,
    PORT_NAME,
    SERVERLESS_COMPUTE,
    compute_input,
    compute_target_name,
    is_run_resolved,
    literal_error,
    literal_type,
    parse_remote_ref,
    range_error,
    types_compatible,
)
from .command import command_errors, command_references, required_inputs_used, secret_env_var
from .files import safe_key
from .model import (
    DATA_TYPES,
    INPUT_TYPES,
    LITERAL_TYPES,
    OUTPUT_TYPES,
    SECRET_TYPE,
    DataPath,
    InputDecl,
    JobOutput,
    ParentInput,
    ParentOutputRef,
    Pipeline,
    Problem,
    Step,
    code_key,
    data_key,
)
from .sweep import Distribution


class _Findings:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, message: str, *, job: str = "", field: str = "") -> None:
        self.problems.append(Problem(message, job=job, field=field))

    def warn(self, message: str, *, job: str = "", field: str = "") -> None:
        self.problems.append(Problem(message, job=job, field=field, severity="warning"))


@dataclass(frozen=True)
class _Computes:
    """The compute names a spec may use (None: any), and what an unknown name means."""

    known: set[str] | None
    unknown_to_default: bool


def validate_pipeline(
    p: Pipeline,
    *,
    known_computes: set[str] | None = None,
    unknown_compute_to_default: bool = False,
    refused_jobs: set[str] | frozenset[str] = frozenset(),
) -> list[Problem]:
    """Every error and warning in `p`, errors and warnings alike as Problems.

    `unknown_compute_to_default`: an unknown compute name is a warning (the step runs on the
    default target), not an error. `refused_jobs`: jobs already reported as invalid (by the
    loader); bindings to their outputs are not checked, so each is reported once, at its root.
    """
    found = _Findings()
    computes = _Computes(known_computes, unknown_compute_to_default)
    if not p.name.strip():
        found.error("the pipeline needs a name", field="name")
    _check_compute(found, p, p.settings.default_compute, computes, job="", field="settings.default_compute")
    for name, decl in p.inputs.items():
        _check_pipeline_input(found, p, name, decl)
    for name, out in p.outputs.items():
        if not PORT_NAME.fullmatch(name):
            found.error(f"invalid output name '{name}'", field=f"outputs.{name}")
        if out.type not in OUTPUT_TYPES:
            found.error(f"unknown output type '{out.type}' (use {', '.join(OUTPUT_TYPES)})", field=f"outputs.{name}")
    # Jobs refused by the loader were reported there: "no jobs" would only follow from them.
    if not p.jobs and not refused_jobs:
        found.error("the pipeline has no jobs", field="jobs")

    parent_outputs_bound: dict[str, str] = {}
    for key, step in p.jobs.items():
        _check_step(found, p, key, step, computes, parent_outputs_bound)
    # Bindings to other jobs' outputs last, once every job's own errors are known.
    refused = set(refused_jobs) | {problem.job for problem in found.problems if problem.severity == "error"}
    for step in p.jobs.values():
        for name, binding in step.inputs.items():
            decl = step.input_decls.get(name)
            if isinstance(binding, JobOutput) and decl is not None and binding.job not in refused:
                _check_job_output_binding(found, p, step, name, decl, binding)
    for name in p.outputs:
        if name not in parent_outputs_bound:
            found.warn(f"pipeline output '{name}' is not bound to any job output", field=f"outputs.{name}")
    _check_files(found, p)
    _check_cycles(found, p)
    found.problems.extend(nesting.check(p))
    return found.problems


def _check_compute(found: _Findings, p: Pipeline, value: str, computes: _Computes, *, job: str, field: str) -> None:
    """`compute:` is a target name or alias (`azureml:` allowed), `serverless` (the default
    target), or `${{parent.inputs.X}}`, a pipeline input whose value names one of those."""
    if not value:
        return
    if (input_name := compute_input(value)) is not None:
        source = p.inputs.get(input_name)
        if source is None:
            found.error(f"compute reads pipeline input '{input_name}', which is not declared", job=job, field=field)
        elif source.type != "string":
            found.error(
                f"compute reads pipeline input '{input_name}', which is {source.type}, not string", job=job, field=field
            )
        elif isinstance(source.default, str) and compute_input(source.default) is None:
            _check_compute(found, p, source.default, computes, job=job, field=field)
        return
    if "${{" in value:
        found.error(f"unsupported compute expression {value!r}: use ${{{{parent.inputs.X}}}}", job=job, field=field)
        return
    name = compute_target_name(value)
    if not name or computes.known is None or name in computes.known:
        return
    if computes.unknown_to_default:
        found.warn(
            f"unknown compute '{name}' runs on the default compute target (STEPWISE_UNKNOWN_COMPUTE=default)",
            job=job,
            field=field,
        )
        return
    choices = ", ".join(sorted(computes.known)) or "none defined"
    found.error(
        f"unknown compute '{name}' (known compute targets: {choices}; {SERVERLESS_COMPUTE} runs on the default one)",
        job=job,
        field=field,
    )


def _check_decl(found: _Findings, decl: InputDecl, *, job: str, field: str) -> None:
    if decl.type not in INPUT_TYPES:
        found.error(f"unknown input type '{decl.type}' (use {', '.join(INPUT_TYPES)})", job=job, field=f"{field}.type")
        return
    if decl.enum is not None:
        if decl.type != "string" or not all(isinstance(v, str) for v in decl.enum):
            found.error("enum is a list of strings, for string inputs only", job=job, field=f"{field}.enum")
            return
    for key, bound in (("min", decl.min), ("max", decl.max)):
        if bound is None:
            continue
        if decl.type not in ("integer", "number"):
            found.error(f"{key} bounds integer and number inputs only", job=job, field=f"{field}.{key}")
            return
        if error := literal_error(bound, decl.type):
            found.error(f"{key}: {error}", job=job, field=f"{field}.{key}")
            return
    if decl.min is not None and decl.max is not None and decl.min > decl.max:
        found.error(f"min {decl.min} is above max {decl.max}", job=job, field=f"{field}.min")
        return
    if decl.default is not None:
        if decl.type == SECRET_TYPE:
            # The message leaves the value out: it must not reach a page or a log either.
            found.error(
                "a secret input takes no default: its value is given only when a run starts "
                "(the run form, or `pipelines run --secret`)",
                job=job,
                field=f"{field}.default",
            )
        elif decl.type in DATA_TYPES:
            found.error("a data input takes no default; give it a path", job=job, field=f"{field}.default")
        elif error := literal_error(decl.default, decl.type, decl.enum, minimum=decl.min, maximum=decl.max):
            found.error(f"default: {error}", job=job, field=f"{field}.default")


def _check_data(found: _Findings, p: Pipeline, data: DataPath, expected_key: str, *, job: str, field: str) -> None:
    if data.type not in DATA_TYPES:
        found.error(f"unknown data type '{data.type}' (use {', '.join(DATA_TYPES)})", job=job, field=field)
        return
    if data.key != expected_key:
        found.error(f"data key must be '{expected_key}', not '{data.key}'", job=job, field=field)
        return
    prefix = data.key + "/"
    names = [k[len(prefix) :] for k in p.files if k.startswith(prefix)]
    if data.type == "uri_file" and (len(names) != 1 or "/" in names[0]):
        found.error(f"a uri_file input holds exactly one file, found {len(names)}", job=job, field=field)


def _check_pipeline_input(found: _Findings, p: Pipeline, name: str, decl: InputDecl) -> None:
    field = f"inputs.{name}"
    if not PORT_NAME.fullmatch(name):
        found.error(f"invalid input name '{name}': use letters, digits and underscores", field=field)
    _check_decl(found, decl, job="", field=field)
    if decl.data is not None:
        if decl.data.type != decl.type:
            found.error(f"data is {decl.data.type} but the input is {decl.type}", field=field)
        _check_data(found, p, decl.data, data_key(name), job="", field=field)
    elif decl.asset is not None:
        if decl.type not in DATA_TYPES:
            found.error(f"a data asset is given to a {decl.type} input", field=field)
        elif not is_run_resolved(decl.asset):
            found.error(
                f"'{decl.asset}' is not azureml:NAME:VERSION, azureml:NAME@latest, "
                "azureml://datastores/STORE/paths/PATH or an https:// address",
                field=field,
            )
        elif (remote := parse_remote_ref(decl.asset)) is not None and remote.url and decl.type != "uri_file":
            found.error(
                "a web address is a file (a wasbs:// blob too, read over https): declare the input as uri_file",
                field=field,
            )
    elif decl.type in DATA_TYPES and not decl.optional:
        found.warn("data input has no path; a value must be given when the pipeline runs", field=field)


def _check_step(
    found: _Findings,
    p: Pipeline,
    key: str,
    step: Step,
    computes: _Computes,
    parent_outputs_bound: dict[str, str],
) -> None:
    job = key
    if step.name != key:
        found.error(f"job key '{key}' and step name '{step.name}' differ", job=job, field="name")
    if not JOB_NAME.fullmatch(key) or len(key) > MAX_NAME_LENGTH:
        found.error(
            f"invalid job name '{key}': use lower-case letters, digits and underscores, not starting with a digit",
            job=job,
        )
    # A parallel job's command is generated: what its author wrote in it is program_arguments
    # (input_data and append_row_to are checked with its other settings).
    text, what, text_field = step.command, "command", "command"
    if step.parallel is not None:
        text, what, text_field = step.parallel.program_arguments, "program_arguments", "task.program_arguments"
    elif step.transfer is not None:
        text = ""
    elif not step.command.strip():
        found.error("command is empty", job=job, field="command")
    for error in command_errors(text):
        found.error(error, job=job, field=text_field)
    refs_in, refs_out = command_references(text)
    for name in sorted(refs_in - step.input_decls.keys()):
        found.error(f"{what} uses ${{{{inputs.{name}}}}} but no input '{name}' is declared", job=job, field=text_field)
    for name in sorted(refs_out - step.output_decls.keys()):
        found.error(
            f"{what} uses ${{{{outputs.{name}}}}} but no output '{name}' is declared", job=job, field=text_field
        )

    secret_vars: dict[str, str] = {}
    for name, decl in step.input_decls.items():
        if not PORT_NAME.fullmatch(name):
            found.error(f"invalid input name '{name}'", job=job, field=f"inputs.{name}")
        _check_decl(found, decl, job=job, field=f"inputs.{name}")
        if decl.type == SECRET_TYPE:
            var = secret_env_var(name)
            if var in secret_vars:
                found.error(
                    f"secret inputs '{secret_vars[var]}' and '{name}' would both be passed as ${var}: rename one",
                    job=job,
                    field=f"inputs.{name}.type",
                )
            secret_vars.setdefault(var, name)
    for name, out in step.output_decls.items():
        if not PORT_NAME.fullmatch(name):
            found.error(f"invalid output name '{name}'", job=job, field=f"outputs.{name}")
        if out.type not in OUTPUT_TYPES:
            found.error(
                f"unknown output type '{out.type}' (use {', '.join(OUTPUT_TYPES)})", job=job, field=f"outputs.{name}"
            )

    for name, binding in step.inputs.items():
        decl = step.input_decls.get(name)
        if decl is None:
            declared = ", ".join(sorted(step.input_decls)) or "none"
            found.error(f"no input '{name}' is declared (declared: {declared})", job=job, field=f"inputs.{name}")
            continue
        _check_binding(found, p, step, name, decl, binding)
    searched = set(step.sweep.search_space) if step.sweep is not None else set()
    if step.sweep is not None:
        _check_sweep(found, step)
    for name, decl in step.input_decls.items():
        if step.inputs.get(name) is None and not decl.optional and decl.default is None and name not in searched:
            found.error(f"required input '{name}' is not bound and has no default", job=job, field=f"inputs.{name}")
    for name in sorted(required_inputs_used(text)):
        decl = step.input_decls.get(name)
        if decl is not None and decl.optional and decl.default is None and step.inputs.get(name) is None:
            found.warn(
                f"optional input '{name}' is used outside $[[ ... ]]; the {'job' if step.parallel else 'command'} "
                "fails when it is not given",
                job=job,
                field=text_field,
            )

    for name, ref in step.outputs.items():
        field = f"outputs.{name}"
        if name not in step.output_decls:
            found.error(f"no output '{name}' is declared", job=job, field=field)
        if ref is None:
            continue
        if not isinstance(ref, ParentOutputRef):
            found.error(f"unsupported output binding {ref!r}", job=job, field=field)
        elif ref.name not in p.outputs:
            found.error(f"bound to pipeline output '{ref.name}', which is not declared", job=job, field=field)
        elif ref.name in parent_outputs_bound:
            other = parent_outputs_bound[ref.name]
            found.error(f"pipeline output '{ref.name}' is already bound by job '{other}'", job=job, field=field)
        else:
            parent_outputs_bound[ref.name] = key

    _check_compute(found, p, step.compute, computes, job=job, field="compute")
    if step.timeout_s is not None and (
        isinstance(step.timeout_s, bool)
        or not isinstance(step.timeout_s, int)
        or not 0 < step.timeout_s <= MAX_TIMEOUT_S
    ):
        found.error(
            f"timeout must be a whole number of seconds from 1 to {MAX_TIMEOUT_S} (a year), got {step.timeout_s!r}",
            job=job,
            field="limits.timeout",
        )
    if (
        isinstance(step.max_retries, bool)
        or not isinstance(step.max_retries, int)
        or not 0 <= step.max_retries <= MAX_RETRIES
    ):
        found.error(
            f"max_retries must be from 0 to {MAX_RETRIES}, got {step.max_retries!r}",
            job=job,
            field="retry_settings.max_retries",
        )
    for var, value in step.environment_variables.items():
        if not isinstance(value, str) or not var or "=" in var or "\x00" in var + value:
            found.error(f"invalid environment variable {var!r}", job=job, field=f"environment_variables.{var}")
    if step.parallel is not None:
        _check_parallel(found, p, step)
    if step.transfer is not None:
        _check_transfer(found, step)


def _check_transfer(found: _Findings, step: Step) -> None:
    """A data transfer moves files: its inputs are data, not values."""
    for name, decl in step.input_decls.items():
        if decl.type not in DATA_TYPES:
            found.error(
                f"a data_transfer job copies files: input '{name}' is {decl.type}, not uri_folder or uri_file",
                job=step.name,
                field=f"inputs.{name}",
            )


def _check_parallel(found: _Findings, p: Pipeline, step: Step) -> None:
    """What ties a parallel job's settings to its inputs and outputs (the loader checked the rest)."""
    settings, job = step.parallel, step.name
    assert settings is not None
    for message, setting in parallel_bindings.check(settings, p.inputs):
        found.error(message, job=job, field=setting)
    data = step.input_decls.get(settings.input_data)
    if data is None:
        message = f"input_data names input '{settings.input_data}', which the job does not have"
        found.error(message, job=job, field="input_data")
    elif data.type not in DATA_TYPES:
        found.error(
            f"input_data '{settings.input_data}' must be data ({', '.join(DATA_TYPES)}), not {data.type}",
            job=job,
            field="input_data",
        )
    elif settings.partition_keys and data.type != "uri_file" and not data.table:
        found.error(
            f"partition_keys group a table's rows: input_data '{settings.input_data}' must be a uri_file "
            f"(a CSV file) or an mltable, not {data.type}",
            job=job,
            field="partition_keys",
        )
    if settings.append_row_to and settings.append_row_to not in step.output_decls:
        found.error(
            f"append_row_to names output '{settings.append_row_to}', which the job does not have",
            job=job,
            field="task.append_row_to",
        )
    if not step.has_code:
        found.error("a parallel job needs task.code, the folder with its entry_script", job=job, field="task.code")


def _check_binding(found: _Findings, p: Pipeline, step: Step, name: str, decl: InputDecl, binding: object) -> None:
    job, field = step.name, f"inputs.{name}"
    if binding is None or decl.type not in INPUT_TYPES:
        return
    if isinstance(binding, ParentInput):
        source = p.inputs.get(binding.name)
        if source is None:
            found.error(f"bound to pipeline input '{binding.name}', which is not declared", job=job, field=field)
        elif source.type in INPUT_TYPES and not types_compatible(source.type, decl.type):
            found.error(
                f"pipeline input '{binding.name}' is {source.type} but the input is {decl.type}", job=job, field=field
            )
        elif error := range_error(source.default, decl.min, decl.max):
            found.error(f"the default of pipeline input '{binding.name}': {error}", job=job, field=field)
    elif isinstance(binding, JobOutput):
        pass  # checked by _check_job_output_binding, after every job's own checks
    elif isinstance(binding, DataPath):
        if decl.type not in DATA_TYPES:
            found.error(f"data given to {decl.type} input", job=job, field=field)
        _check_data(found, p, binding, data_key(name, job), job=job, field=field)
    elif literal_type(binding) in LITERAL_TYPES:
        if isinstance(binding, str) and "${{" in binding:
            found.error(
                f"unsupported expression {binding!r}: use ${{{{parent.inputs.X}}}} or "
                "${{parent.jobs.J.outputs.O}} as the whole value",
                job=job,
                field=field,
            )
        elif error := literal_error(binding, decl.type, decl.enum, minimum=decl.min, maximum=decl.max):
            found.error(error, job=job, field=field)
    else:
        found.error(f"unsupported value {binding!r}", job=job, field=field)


def _check_job_output_binding(
    found: _Findings, p: Pipeline, step: Step, name: str, decl: InputDecl, binding: JobOutput
) -> None:
    job, field = step.name, f"inputs.{name}"
    if decl.type not in INPUT_TYPES:
        return
    upstream = p.jobs.get(binding.job)
    if upstream is None:
        found.error(f"bound to an output of job '{binding.job}', which does not exist", job=job, field=field)
    elif binding.output not in upstream.output_decls:
        found.error(f"job '{binding.job}' has no output '{binding.output}'", job=job, field=field)
    elif not types_compatible(upstream.output_decls[binding.output].type, decl.type):
        source = upstream.output_decls[binding.output].type
        found.error(
            f"output '{binding.job}.{binding.output}' is {source} but the input is {decl.type}",
            job=job,
            field=field,
        )


def _check_files(found: _Findings, p: Pipeline) -> None:
    owners = {code_key(name) for name, step in p.jobs.items() if step.has_code}
    owners |= {decl.data.key for decl in p.inputs.values() if decl.data is not None}
    owners |= {b.key for step in p.jobs.values() for b in step.inputs.values() if isinstance(b, DataPath)}
    for key in p.files:
        if not safe_key(key):
            found.error(f"unsafe file name '{key}'", field="files")
        elif not any(key.startswith(owner + "/") for owner in owners):
            found.error(f"file '{key}' belongs to no step's code or data input", field="files")


def _check_cycles(found: _Findings, p: Pipeline) -> None:
    downstream: dict[str, list[str]] = {name: [] for name in p.jobs}
    for up, _out, down, _in in p.edges():
        if up in downstream and down in downstream and down not in downstream[up]:
            downstream[up].append(down)
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in p.jobs:
        if start in state:
            continue
        path = [start]
        state[start] = 1
        iters = [iter(downstream[start])]
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                found.error("cycle: " + " -> ".join(cycle), job=nxt, field="inputs")
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(downstream[nxt]))


def _fits(dist: Distribution, input_type: str) -> bool:
    """Whether every value the distribution draws is a value of the input's type."""
    if dist.type == "choice":
        if input_type == "integer":
            return all(isinstance(v, int) and not isinstance(v, bool) for v in dist.values)
        if input_type == "number":
            return all(isinstance(v, int | float) and not isinstance(v, bool) for v in dist.values)
        if input_type == "boolean":
            return all(isinstance(v, bool) for v in dist.values)
        return True
    if input_type == "integer":
        return dist.type == "randint" or float(dist.params.get("q", 0.5)).is_integer()
    return input_type == "number"


def _check_sweep(found: _Findings, step: Step) -> None:
    job = step.name
    assert step.sweep is not None
    for name, dist in step.sweep.search_space.items():
        field = f"search_space.{name}"
        decl = step.input_decls.get(name)
        if decl is None:
            declared = ", ".join(sorted(step.input_decls)) or "none"
            found.error(f"the trial has no input '{name}' to search (declared: {declared})", job=job, field=field)
            continue
        if decl.type not in LITERAL_TYPES:
            found.error(
                f"input '{name}' is a {decl.type} input: only literal inputs are searched", job=job, field=field
            )
        elif not _fits(dist, decl.type):
            found.error(
                f"a {dist.type} distribution does not give {decl.type} values for '{name}'", job=job, field=field
            )
        if step.inputs.get(name) is not None:
            found.error(f"input '{name}' is both bound in inputs and searched in search_space", job=job, field=field)
