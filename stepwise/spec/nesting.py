"""Pipeline components (`type: pipeline` jobs) expanded into the pipeline's own steps.

The command job `fit` inside the pipeline component job `train` runs as the step
`train__fit`; nested deeper, `outer__inner__fit`. Step names stay lower-case identifiers,
so URLs, code and data keys, node ids and the editor take them as they take any step.

Each group (`ComponentGroup`) keeps its bindings as the component file writes them; `expand`
turns them into the steps' bindings in the pipeline's terms, Azure ML's way:
`${{parent.inputs.X}}` inside a component becomes what its job binds to X (or X's default),
`${{parent.jobs.J.outputs.O}}` names the inner step (through the component's `outputs:`
when J is itself a component), an inner job without `compute` takes its component job's
compute (then `settings.default_compute` applies at run time), and an inner output bound
to the component's output reaches the pipeline output that the component job binds it to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import parallel_bindings
from .bindings import literal_error, literal_type, parse_expression
from .model import (
    LITERAL_TYPES,
    Binding,
    ComponentGroup,
    JobOutput,
    ParallelSettings,
    ParentInput,
    ParentOutputRef,
    Pipeline,
    Problem,
)
from .parallel import driver_command

SEP = "__"
# Deeper nesting than this is far more likely a mistake than a design.
MAX_DEPTH = 8


def qualify(parent: str, job: str) -> str:
    """The pipeline-wide name of `job` written inside the group `parent` ("" for the pipeline)."""
    return f"{parent}{SEP}{job}" if parent else job


def depth(p: Pipeline, group: str) -> int:
    """How many groups enclose a job written in `group` (1 for a job of a top-level component)."""
    n = 0
    while group and group in p.groups and n <= len(p.groups):
        n += 1
        group = p.groups[group].parent
    return n


@dataclass
class _Scope:
    inputs: dict[str, Binding]
    compute: str
    outputs: dict[str, ParentOutputRef | None]


@dataclass
class Expansion:
    """What the groups make of their inner steps, in the pipeline's terms."""

    inputs: dict[str, dict[str, Binding]] = field(default_factory=dict)
    compute: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, ParentOutputRef]] = field(default_factory=dict)
    # Inner parallel steps whose run settings are bound to their component's inputs.
    parallel: dict[str, ParallelSettings] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _bound_outputs(p: Pipeline) -> list[tuple[tuple[str, str], JobOutput]]:
    """((group, its output), the inner job output bound to it) for every such binding."""
    found = []
    for name, group in p.groups.items():
        for local in group.jobs:
            inner = qualify(name, local)
            bound = p.groups[inner].outputs if inner in p.groups else group.job_outputs.get(local, {})
            found.extend(((name, ref.name), JobOutput(inner, out)) for out, ref in bound.items())
    return found


def output_sources(p: Pipeline) -> dict[tuple[str, str], JobOutput]:
    """(group, its output) -> the inner job output bound to it, named pipeline-wide."""
    sources: dict[tuple[str, str], JobOutput] = {}
    for key, source in _bound_outputs(p):
        sources.setdefault(key, source)
    return sources


class _Expander:
    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.sources = output_sources(p)
        self.scopes: dict[str, _Scope] = {}
        self.result = Expansion()
        for (group, out), source in _bound_outputs(p):
            first = self.sources[(group, out)]
            if source != first:
                self.problem(
                    f"output '{out}' of pipeline component '{p.groups[group].job}' is already bound by "
                    f"job '{first.job}'",
                    job=source.job,
                    field=f"outputs.{source.output}",
                )

    def problem(self, message: str, *, job: str, field: str = "") -> None:
        self.result.problems.append(Problem(message, job=job, field=field))

    def job_output(self, binding: JobOutput, *, job: str, field: str) -> JobOutput:
        """`binding` with every component output on the way replaced by the inner output bound to it."""
        for _ in range(len(self.p.groups) + 1):
            if binding.job not in self.p.groups:
                return binding
            source = self.sources.get((binding.job, binding.output))
            if source is None:
                group = self.p.groups[binding.job]
                self.problem(
                    f"pipeline component '{group.job}' has no output '{binding.output}' bound by its jobs",
                    job=job,
                    field=field,
                )
                return binding
            binding = source
        return binding

    def in_scope(self, scope: str, binding: Binding, *, job: str, field: str) -> Binding:
        """A binding written in group `scope` ("" for the pipeline), in the pipeline's terms."""
        if isinstance(binding, ParentInput) and scope:
            group = self.p.groups[scope]
            if binding.name not in group.input_decls:
                declared = ", ".join(sorted(group.input_decls)) or "none"
                self.problem(
                    f"pipeline component '{group.job}' has no input '{binding.name}' (declared: {declared})",
                    job=job,
                    field=field,
                )
                return None
            return self.scopes[scope].inputs.get(binding.name)
        if isinstance(binding, JobOutput):
            return self.job_output(JobOutput(qualify(scope, binding.job), binding.output), job=job, field=field)
        return binding

    def compute(self, scope: str, written: str, *, job: str) -> str:
        expr = parse_expression(written) if written else None
        if not isinstance(expr, ParentInput) or not scope:
            return written
        value = self.in_scope(scope, expr, job=job, field="compute")
        if isinstance(value, ParentInput) and value.name in self.p.inputs:
            value = self.p.inputs[value.name].default
        if value is None:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(f"compute '{written}' must name a compute target, got {value!r}", job=job, field="compute")
            return ""
        return value

    def output_target(self, scope: str, ref: ParentOutputRef, *, job: str, field: str) -> ParentOutputRef | None:
        if not scope:
            return ref
        group = self.p.groups[scope]
        if ref.name not in group.output_decls:
            declared = ", ".join(sorted(group.output_decls)) or "none"
            self.problem(
                f"pipeline component '{group.job}' has no output '{ref.name}' (declared: {declared})",
                job=job,
                field=field,
            )
            return None
        return self.scopes[scope].outputs.get(ref.name)

    def group(self, name: str, group: ComponentGroup) -> None:
        if group.parent and group.parent not in self.scopes:
            self.problem(f"pipeline component '{group.parent}' is missing", job=name)
            return
        if name != qualify(group.parent, group.job):
            self.problem(f"pipeline component '{name}' must be named '{qualify(group.parent, group.job)}'", job=name)
            return
        if name in self.p.jobs:
            self.problem(f"'{name}' names both a step and a pipeline component", job=name)
        if depth(self.p, name) > MAX_DEPTH:
            self.problem(f"pipeline components are nested more than {MAX_DEPTH} deep", job=name)
            return
        inputs: dict[str, Binding] = {}
        for input_name in group.inputs:
            if input_name not in group.input_decls:
                declared = ", ".join(sorted(group.input_decls)) or "none"
                self.problem(
                    f"the component has no input '{input_name}' (declared: {declared})",
                    job=name,
                    field=f"inputs.{input_name}",
                )
        for input_name, decl in group.input_decls.items():
            written = group.inputs.get(input_name)
            value = None
            if written is not None:
                value = self.in_scope(group.parent, written, job=name, field=f"inputs.{input_name}")
            if value is not None and decl.type in LITERAL_TYPES and literal_type(value) in LITERAL_TYPES:
                if error := literal_error(value, decl.type, decl.enum, minimum=decl.min, maximum=decl.max):
                    self.problem(error, job=name, field=f"inputs.{input_name}")
            inputs[input_name] = decl.default if value is None else value
        parent_compute = self.scopes[group.parent].compute if group.parent else ""
        compute = self.compute(group.parent, group.compute, job=name) or parent_compute
        outputs: dict[str, ParentOutputRef | None] = {}
        for out, ref in group.outputs.items():
            field_name = f"outputs.{out}"
            if out not in group.output_decls:
                declared = ", ".join(sorted(group.output_decls)) or "none"
                self.problem(f"the component has no output '{out}' (declared: {declared})", job=name, field=field_name)
                continue
            outputs[out] = self.output_target(group.parent, ref, job=name, field=field_name)
        for out in group.output_decls:
            if (name, out) not in self.sources:
                self.problem(
                    f"output '{out}' is bound by none of the component's jobs", job=name, field=f"outputs.{out}"
                )
        self.scopes[name] = _Scope(inputs, compute, outputs)

    def steps(self, name: str, group: ComponentGroup) -> None:
        if name not in self.scopes:
            return
        for local in group.jobs:
            step = qualify(name, local)
            if step in self.p.groups:
                continue
            if step not in self.p.jobs:
                self.problem(f"the component's job '{local}' is missing", job=name)
                continue
            inputs: dict[str, Binding] = {}
            for input_name, written in group.job_inputs.get(local, {}).items():
                value = self.in_scope(name, written, job=step, field=f"inputs.{input_name}")
                if value is not None:
                    inputs[input_name] = value
            self.result.inputs[step] = inputs
            written_compute = group.job_compute.get(local, "")
            self.result.compute[step] = self.compute(name, written_compute, job=step) or self.scopes[name].compute
            outputs: dict[str, ParentOutputRef] = {}
            for out, ref in group.job_outputs.get(local, {}).items():
                target = self.output_target(name, ref, job=step, field=f"outputs.{out}")
                if target is not None:
                    outputs[out] = target
            self.result.outputs[step] = outputs
            self.parallel_settings(name, group, local, step)

    def parallel_settings(self, name: str, group: ComponentGroup, local: str, step: str) -> None:
        settings = self.p.jobs[step].parallel
        written = group.job_parallel.get(local)
        if settings is None or not written:
            return
        values = {
            setting: self.in_scope(name, ParentInput(input_name), job=step, field=setting)
            for setting, input_name in written.items()
        }
        settings, problems = parallel_bindings.rebind(settings, values)
        for message, setting in problems:
            self.problem(message, job=step, field=setting)
        self.result.parallel[step] = settings

    def top_level(self, inner: set[str]) -> None:
        """Top-level steps that read a component's output read the inner step's instead."""
        for name, step in self.p.jobs.items():
            if name in inner:
                continue
            inputs = dict(step.inputs)
            for input_name, binding in step.inputs.items():
                if isinstance(binding, JobOutput) and binding.job in self.p.groups:
                    inputs[input_name] = self.job_output(binding, job=name, field=f"inputs.{input_name}")
            self.result.inputs[name] = inputs


def expand(p: Pipeline) -> Expansion:
    """Every step's inputs (and every inner step's compute and outputs) as the groups make them."""
    expander = _Expander(p)
    for name, group in p.groups.items():
        expander.group(name, group)
    for name, group in p.groups.items():
        expander.steps(name, group)
    expander.top_level(inner_steps(p))
    return expander.result


def inner_steps(p: Pipeline) -> set[str]:
    """Names of the steps that a pipeline component holds."""
    return {qualify(name, local) for name, group in p.groups.items() for local in group.jobs} - p.groups.keys()


def apply(p: Pipeline) -> list[Problem]:
    """Write `expand`'s bindings into the steps; returns its problems."""
    if not p.groups:
        return []
    result = expand(p)
    for name, inputs in result.inputs.items():
        if name in p.jobs:
            p.jobs[name].inputs = inputs
    for name, compute in result.compute.items():
        if name in p.jobs:
            p.jobs[name].compute = compute
    for name, outputs in result.outputs.items():
        if name in p.jobs:
            p.jobs[name].outputs = outputs
    for name, settings in result.parallel.items():
        if name in p.jobs:
            p.jobs[name].parallel = settings
            p.jobs[name].command = driver_command(settings)
    return result.problems


def check(p: Pipeline) -> list[Problem]:
    """The groups' problems, and every inner step whose bindings differ from what its component says."""
    if not p.groups:
        return []
    result = expand(p)
    problems = list(result.problems)
    if problems:
        return problems
    owner = owners(p)
    for name in sorted(inner_steps(p)):
        step = p.jobs.get(name)
        if step is None:
            continue
        group = owner[name]
        expected = (result.inputs.get(name), result.compute.get(name), result.outputs.get(name))
        parallel_changed = name in result.parallel and result.parallel[name] != step.parallel
        if (step.inputs, step.compute, step.outputs) != expected or parallel_changed:
            problems.append(
                Problem(
                    f"this step belongs to pipeline component '{p.groups[group].job}': change its inputs, "
                    "outputs and compute in the component file",
                    job=name,
                )
            )
    return problems


def owners(p: Pipeline) -> dict[str, str]:
    """Step or group name -> the group whose jobs list it."""
    return {qualify(name, local): name for name, group in p.groups.items() for local in group.jobs}


def outward(p: Pipeline, binding: JobOutput) -> JobOutput:
    """A pipeline-wide inner step output as the top level names it: through the components' outputs."""
    if not p.groups:
        return binding
    owner = owners(p)
    by_source = {source: key for key, source in output_sources(p).items()}
    for _ in range(len(p.groups) + 1):
        if binding.job not in owner:
            return binding
        key = by_source.get(binding)
        if key is None:
            raise ValueError(
                f"cannot export: '{binding.job}.{binding.output}' is inside a pipeline component "
                "that does not expose it as an output"
            )
        binding = JobOutput(*key)
    return binding
