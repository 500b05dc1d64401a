"""Azure ML CLI v2 pipeline YAML in, a normalized Pipeline out, with every problem found.

Normalization gives the editor and the export one shape: inline jobs get typed input and
output declarations inferred from their bindings, component jobs get theirs from the
component file, and files (code folders, local data) are read into `Pipeline.files`.

The reader is built in layers, each a module: reader_base (problems and where they sit, files,
small typed getters), reader_data (declarations, local data, code folders), reader_components
(component files, registered and pipeline components, environments), reader_jobs (each kind of
job, its bindings and outputs), and here the pipeline as a whole and the public entry points.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from . import bindings as b
from . import nesting
from . import parallel as par
from .model import (
    LITERAL_TYPES,
    ComponentGroup,
    DataPath,
    InputDecl,
    ParentInput,
    ParentOutputRef,
    Pipeline,
    Problem,
    Settings,
    SpecError,
    Step,
    code_key,
    data_key,
)
from .reader_base import (
    _IGNORED_JOB_KEYS,
    MAX_BYTES,
    MAX_FILES_BYTES,
    ComponentResolver,
    DataResolver,
    _line,
    _Where,
)
from .reader_jobs import _JobReader
from .validate import validate_pipeline
from .yaml_safe import LineDict, load_yaml, read_text

# Fields of a validation problem that live in the component file when the step has one.
_COMPONENT_FIELD = re.compile(
    r"(command|code|environment|(inputs|outputs)\.[^.]+\.(type|default|enum|min|max|optional))"
)


def load_pipeline(
    path: Path,
    *,
    known_computes: set[str] | None = None,
    resolve_component: ComponentResolver | None = None,
    resolve_data: DataResolver | None = None,
    max_bytes: int = MAX_BYTES,
    max_files_bytes: int = MAX_FILES_BYTES,
    root: Path | None = None,
    unknown_compute_to_default: bool = False,
) -> tuple[Pipeline, list[Problem]]:
    """Load a pipeline YAML file with its components, code and local data.

    Returns the pipeline and its warnings; raises SpecError with every problem found.
    Files it refers to must lie inside `root` (default: the pipeline file's folder), so an
    uploaded pipeline cannot read the server's files through `code: ../../..`.
    """
    path = Path(path)
    filename = str(path)
    text = read_text(path, filename=filename, max_bytes=max_bytes)
    return _PipelineReader(
        filename=filename,
        base_dir=path.parent,
        root=root or path.parent,
        known_computes=known_computes,
        resolve_component=resolve_component,
        resolve_data=resolve_data,
        max_bytes=max_bytes,
        max_files_bytes=max_files_bytes,
        unknown_compute_to_default=unknown_compute_to_default,
    ).read(text)


def parse_text(
    text: str,
    *,
    filename: str = "pipeline.yml",
    base_dir: Path | None = None,
    known_computes: set[str] | None = None,
    resolve_component: ComponentResolver | None = None,
    resolve_data: DataResolver | None = None,
    max_bytes: int = MAX_BYTES,
    max_files_bytes: int = MAX_FILES_BYTES,
    root: Path | None = None,
    unknown_compute_to_default: bool = False,
) -> tuple[Pipeline, list[Problem]]:
    """Like load_pipeline for YAML text in memory; without base_dir, local files are errors."""
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise SpecError([Problem(f"file is larger than {max_bytes} bytes", file=filename)])
    return _PipelineReader(
        filename=filename,
        base_dir=base_dir,
        root=root or base_dir,
        known_computes=known_computes,
        resolve_component=resolve_component,
        resolve_data=resolve_data,
        max_bytes=max_bytes,
        max_files_bytes=max_files_bytes,
        unknown_compute_to_default=unknown_compute_to_default,
    ).read(text.removeprefix("\ufeff"))


class _PipelineReader(_JobReader):
    """A pipeline file: its settings, inputs, outputs and jobs, then the checks of the whole."""

    # -- entry ----------------------------------------------------------------------------

    def read(self, text: str) -> tuple[Pipeline, list[Problem]]:
        tree = load_yaml(text, filename=self.filename)
        if not isinstance(tree, LineDict):
            kind = "empty" if tree is None else f"a {type(tree).__name__}"
            raise SpecError([Problem(f"expected a pipeline (a YAML mapping), found {kind}", file=self.filename)])
        self.tree = tree
        top = _Where(self.filename, tree)
        pipeline = self._pipeline(tree, top)
        # A job already refused (or not read at all) is reported once, at its root: the
        # validator does not add an error for every binding that reads one of its outputs.
        refused = {p.job for p in self.problems if p.severity == "error" and p.job}
        jobs = tree.get("jobs")
        refused |= {name for name in jobs if name not in pipeline.jobs} if isinstance(jobs, dict) else set()
        for problem in validate_pipeline(
            pipeline,
            known_computes=self.known_computes,
            unknown_compute_to_default=self.unknown_compute_to_default,
            refused_jobs=refused,
        ):
            self._locate(problem)
            self.problems.append(problem)
        if any(p.severity == "error" for p in self.problems):
            raise SpecError(self.problems)
        return pipeline, self.problems

    def _locate(self, problem: Problem) -> None:
        path = tuple(problem.field.split(".")) if problem.field else ()
        where = _Where(self.filename, self.tree, ("jobs", problem.job) if problem.job else ())
        if problem.job in self.job_where:
            where = self.job_where[problem.job]
        from_component = _COMPONENT_FIELD.fullmatch(problem.field) or (
            path and path[0] in self.component_fields.get(problem.job, ())
        )
        if problem.job in self.component_where and from_component:
            where = self.component_where[problem.job]
        problem.file = where.file
        problem.line = _line(where.tree, where.prefix + path)

    # -- pipeline -------------------------------------------------------------------------

    def _pipeline(self, tree: LineDict, top: _Where) -> Pipeline:
        type_ = tree.get("type")
        if type_ != "pipeline":
            self.error(f"type must be 'pipeline', found {type_!r}", top, "type")
        for key in tree:
            if key == "$schema":
                self.warn("'$schema' is ignored", top, key)
            elif key in ("experiment_name", "tags"):
                if tree[key]:
                    self.warn(f"'{key}' is recorded but not used by Stepwise", top, key)
            elif key == "compute":
                self.warn("top-level 'compute' is read as settings.default_compute", top, key)
            elif key not in ("type", "name", "display_name", "description", "settings", "inputs", "outputs", "jobs"):
                self.warn(f"unknown key '{key}' is ignored", top, key)

        p = Pipeline(name=self._str(tree, "name", top) or Path(self.filename).stem or "pipeline")
        p.display_name = self._str(tree, "display_name", top)
        p.description = self._str(tree, "description", top)
        p.experiment_name = self._str(tree, "experiment_name", top)
        p.tags = self._str_map(tree, "tags", top)
        p.settings = self._settings(tree, top)
        if not p.settings.default_compute and tree.get("compute"):
            p.settings.default_compute = self._str(tree, "compute", top)

        untyped: set[str] = set()
        for name, raw in self._mapping(tree, "inputs", top).items():
            decl = self._decl(name, raw, top, ("inputs", name), pipeline_level=True)
            if decl is not None:
                p.inputs[name] = decl
                if not isinstance(raw, dict) or "type" not in raw:
                    untyped.add(name)
        for name, raw in self._mapping(tree, "outputs", top).items():
            out = self._output_decl(raw, top, ("outputs", name))
            if out is not None:
                p.outputs[name] = out

        self.input_names = set(self._mapping(tree, "inputs", top))
        jobs = self._mapping(tree, "jobs", top)
        if "jobs" not in tree:
            self.error("'jobs' is required", top, "jobs")
        inline_hints: dict[str, dict[str, str | None]] = {}
        own_file = (self.base_dir / Path(self.filename).name).resolve() if self.base_dir is not None else None
        chain = (own_file,) if own_file is not None and own_file.is_file() else ()
        self._jobs(p, "", jobs, top.at("jobs"), chain, inline_hints)
        p.inputs.update(self.hoisted_inputs)
        # Its problems are validation's to report, with the rest.
        nesting.apply(p)
        _type_untyped_inputs(p, untyped)
        for name, hints in inline_hints.items():
            self._infer_inline_decls(p, p.jobs[name], hints)
        for step in p.jobs.values():
            if step.parallel is not None:
                par.read_as_files(step.parallel, step.input_decls)
                step.command = par.driver_command(step.parallel)
        _coerce_scalars(p)
        p.files = self.files
        return p

    def _jobs(
        self,
        p: Pipeline,
        scope: str,
        jobs: dict,
        where: _Where,
        chain: tuple[Path, ...],
        inline_hints: dict[str, dict[str, str | None]],
    ) -> list[str]:
        """Read `jobs` written in group `scope` ("" for the pipeline) into `p`; returns the keys read."""
        keys = []
        for key, raw in jobs.items():
            self.scope = scope  # set again after each group: its jobs set their own
            name = nesting.qualify(scope, key)
            job_where = where.at(key)
            if not isinstance(raw, dict):
                self.error("a job must be a mapping", job_where, job=name)
                continue
            if name in p.jobs or name in p.groups:
                self.error(
                    f"two jobs are named '{name}' once pipeline components are expanded: rename one",
                    job_where,
                    job=name,
                )
                continue
            if scope:
                self.job_where[name] = job_where
            if raw.get("type") == "pipeline":
                if self._group(p, scope, key, raw, job_where, chain, inline_hints):
                    keys.append(key)
                continue
            if scope and raw.get("type") == "data_transfer":
                # Export writes these jobs inline in pipeline.yml, with bindings a component cannot hold.
                self.error(
                    f"a {raw['type']} job inside a pipeline component is not supported yet",
                    job_where,
                    "type",
                    job=name,
                )
                continue
            parsed = self._job(name, raw, job_where)
            if parsed is None:
                # Its code and data were read before it was refused: they would be reported as
                # files of no step, an error that only follows from the one already given.
                owned = (code_key(name) + "/", data_key("", name))
                self.files = {k: v for k, v in self.files.items() if not k.startswith(owned)}
            else:
                step, hints = parsed
                p.jobs[name] = step
                if hints is not None:
                    inline_hints[name] = hints
                keys.append(key)
        return keys

    def _group(
        self,
        p: Pipeline,
        scope: str,
        key: str,
        raw: dict,
        where: _Where,
        chain: tuple[Path, ...],
        inline_hints: dict[str, dict[str, str | None]],
    ) -> bool:
        """A `type: pipeline` job: its component read, its jobs expanded into `p` under qualified names."""
        name = nesting.qualify(scope, key)
        if not b.JOB_NAME.fullmatch(key):
            self.error(
                f"invalid job name '{key}': use lower-case letters, digits and underscores, not starting with a digit",
                where,
                job=name,
            )
            return False
        known = {"type", "component", "display_name", "description", "inputs", "outputs", "compute", "settings"}
        for k in raw:
            if k in _IGNORED_JOB_KEYS:
                self.warn(f"'{k}' is not used by Stepwise and is ignored", where, k, job=name)
            elif k == "$schema":
                self.warn("'$schema' is ignored", where, k, job=name)
            elif k not in known:
                self.warn(f"unknown key '{k}' is ignored", where, k, job=name)
        if nesting.depth(p, scope) >= nesting.MAX_DEPTH:
            self.error(f"pipeline components are nested more than {nesting.MAX_DEPTH} deep", where, job=name)
            return False
        if "component" not in raw:
            self.error("a pipeline job needs a 'component' (a pipeline component file)", where, "component", job=name)
            return False
        found = self._pipeline_component(name, raw["component"], where, chain)
        if found is None:
            return False
        body, comp_where, path = found

        group = ComponentGroup(name=name, job=key, parent=scope)
        group.display_name = self._str(raw, "display_name", where, job=name)
        group.description = self._str(raw, "description", where, job=name)
        group.compute = self._str(raw, "compute", where, job=name)
        for k, value in self._mapping(raw, "settings", where, job=name).items():
            if k == "default_compute" and not isinstance(value, str):
                self.error("default_compute must be a string", where, "settings", k, job=name)
            elif k == "default_compute":
                group.compute = group.compute or value
            else:
                self.warn(f"settings.{k} of a pipeline job is ignored", where, "settings", k, job=name)
        for input_name, value in self._mapping(raw, "inputs", where, job=name).items():
            parsed = self._binding(name, input_name, value, where)
            if parsed is None:
                continue
            if isinstance(parsed[0], DataPath):
                self.error(
                    "give data to a pipeline component through a pipeline input: declare it under the "
                    "pipeline's inputs and bind ${{parent.inputs.NAME}}",
                    where,
                    "inputs",
                    input_name,
                    job=name,
                )
                continue
            group.inputs[input_name] = parsed[0]
        for out, value in self._mapping(raw, "outputs", where, job=name).items():
            written = value.get("path") if isinstance(value, dict) else value
            ref = b.parse_expression(written) if isinstance(written, str) else None
            if isinstance(ref, ParentOutputRef):
                group.outputs[out] = ref
            elif value is not None and not (isinstance(value, dict) and written is None):
                self.error("an output can only be bound to ${{parent.outputs.X}}", where, "outputs", out, job=name)

        type_ = body.get("type")
        if type_ != "pipeline":
            self.error(f"a pipeline job needs a pipeline component, found type {type_!r}", comp_where, "type", job=name)
            return False
        comp_known = {"type", "name", "version", "display_name", "description", "inputs", "outputs", "jobs"}
        for k in body:
            if k in ("$schema", "tags"):
                continue
            if k not in comp_known:
                self.warn(f"unknown key '{k}' is ignored", comp_where, k, job=name)
        group.component_name = self._str(body, "name", comp_where, job=name) or key
        group.component_version = self._str(body, "version", comp_where, job=name) or "1"
        group.display_name = group.display_name or self._str(body, "display_name", comp_where, job=name)
        group.description = group.description or self._str(body, "description", comp_where, job=name)
        for input_name, decl_raw in self._mapping(body, "inputs", comp_where, job=name).items():
            decl = self._decl(input_name, decl_raw, comp_where, ("inputs", input_name), pipeline_level=False, job=name)
            if decl is not None:
                group.input_decls[input_name] = decl
        for out, out_raw in self._mapping(body, "outputs", comp_where, job=name).items():
            out_decl = self._output_decl(out_raw, comp_where, ("outputs", out))
            if out_decl is not None:
                group.output_decls[out] = out_decl
        jobs = self._mapping(body, "jobs", comp_where, job=name)
        if not jobs:
            self.error("a pipeline component needs 'jobs'", comp_where, "jobs", job=name)
        p.groups[name] = group
        inner_chain = chain + (path,) if path is not None else chain
        group.jobs = self._jobs(p, name, jobs, comp_where.at("jobs"), inner_chain, inline_hints)
        for local in group.jobs:
            step = p.jobs.get(nesting.qualify(name, local))
            if step is not None:
                # As written in the component: `nesting.apply` rewrites the step's own.
                group.job_inputs[local] = dict(step.inputs)
                group.job_outputs[local] = {k: v for k, v in step.outputs.items() if v is not None}
                group.job_compute[local] = step.compute
                if step.parallel is not None and step.parallel.bound:
                    group.job_parallel[local] = dict(step.parallel.bound)
        return True

    def _settings(self, tree: LineDict, top: _Where) -> Settings:
        raw = self._mapping(tree, "settings", top)
        s = Settings()
        for key, value in raw.items():
            if key in ("default_compute", "default_datastore"):
                if not isinstance(value, str):
                    self.error(f"{key} must be a string", top, "settings", key)
                    continue
                setattr(s, key, value)
                if key == "default_datastore":
                    self.warn("'default_datastore' is recorded but not used by Stepwise", top, "settings", key)
            elif key in ("continue_on_step_failure", "force_rerun"):
                if not isinstance(value, bool):
                    self.error(f"{key} must be true or false, got {value!r}", top, "settings", key)
                    continue
                setattr(s, key, value)
            else:
                self.warn(f"unknown settings key '{key}' is ignored", top, "settings", key)
        return s


def _type_untyped_inputs(p: Pipeline, untyped: set[str]) -> None:
    """A pipeline input written as a bare text value (`epochs: "10"`) takes the type of the
    typed inputs it feeds when its value reads as that type: Azure ML declares no type for it
    and lets each component input parse the text, so "10" feeds an integer input there."""
    for name in untyped:
        decl = p.inputs[name]
        if decl.type != "string" or not isinstance(decl.default, str):
            continue
        fed = {
            step.input_decls[input_name].type
            for step in p.jobs.values()
            for input_name, binding in step.inputs.items()
            if binding == ParentInput(name) and input_name in step.input_decls
        }
        fed.discard("string")
        if len(fed) != 1 or (type_ := fed.pop()) not in LITERAL_TYPES:
            continue
        value = b.azureml_scalar(type_, decl.default)
        if b.literal_type(value) == type_ or (type_ == "number" and b.literal_type(value) == "integer"):
            p.inputs[name] = replace(decl, type=type_, default=value)


def _coerce_scalars(p: Pipeline) -> None:
    """Literal values and defaults as Azure ML reads them for their input's type (`true` to a
    string input is "True", "3" to an integer input is 3); what cannot be read stays as written
    for the validator to report."""
    decls = [*p.inputs.values()]
    for step in p.jobs.values():
        decls.extend(step.input_decls.values())
        for name, binding in step.inputs.items():
            decl = step.input_decls.get(name)
            if decl is not None and decl.type in LITERAL_TYPES and b.literal_type(binding) is not None:
                step.inputs[name] = b.azureml_scalar(decl.type, binding)  # type: ignore[assignment]
    for decl in decls:
        if decl.type in LITERAL_TYPES and decl.default is not None:
            decl.default = b.azureml_scalar(decl.type, decl.default)  # type: ignore[assignment]


# The job name a component is read under when it is loaded on its own (registration).
_ALONE = "component"


def load_component(
    path: Path,
    *,
    max_bytes: int = MAX_BYTES,
    max_files_bytes: int = MAX_FILES_BYTES,
    root: Path | None = None,
) -> tuple[Step, dict[str, bytes], list[Problem]]:
    """A command or parallel component file on its own: (the step it makes, its code files by
    relative path, warnings).

    Read and validated by the code that reads `component: ./x.yml` in a pipeline, so a
    component that registers is one that a pipeline can use. Raises SpecError naming the
    file and field of every problem.
    """
    path = Path(path)
    filename = str(path)
    reader = _PipelineReader(
        filename=filename,
        base_dir=path.parent,
        root=root or path.parent,
        known_computes=None,
        resolve_component=None,
        max_bytes=max_bytes,
        max_files_bytes=max_files_bytes,
    )
    tree = load_yaml(read_text(path, filename=filename, max_bytes=max_bytes), filename=filename)
    if not isinstance(tree, LineDict):
        kind = "empty" if tree is None else f"a {type(tree).__name__}"
        raise SpecError([Problem(f"expected a command component (a YAML mapping), found {kind}", file=filename)])
    where = _Where(filename, tree)
    step: Step | None = None
    if tree.get("type") == "parallel":
        step = _parallel_component_alone(reader, tree, filename)
        comp = None
    else:
        comp = reader._component_dict(_ALONE, tree, where, base=path.parent, code_files=None)
    if comp is not None:
        step = Step(
            name=_ALONE,
            command=comp.command,
            display_name=comp.display_name,
            description=comp.description,
            # As written: registration defaults a missing name or version itself.
            component_name=_str_or_empty(tree.get("name")),
            component_version=_str_or_empty(tree.get("version")),
            input_decls=comp.input_decls,
            output_decls=comp.output_decls,
            has_code=comp.has_code,
            environment=comp.environment,
            is_deterministic=comp.is_deterministic,
            distribution=comp.distribution,
        )
    if step is not None:
        # Bound to same-typed pipeline inputs, so validation checks the component, not a missing binding.
        wrapper = Pipeline(name=_ALONE, files=reader.files)
        for name, decl in step.input_decls.items():
            step.inputs[name] = ParentInput(name)
            wrapper.inputs[name] = InputDecl(type=decl.type, optional=True)
        wrapper.jobs[_ALONE] = step
        _coerce_scalars(wrapper)
        for problem in validate_pipeline(wrapper):
            if problem.job != _ALONE:
                continue  # the wrapper's own inputs: they repeat the component's
            problem.job, problem.file = "", filename
            problem.line = _line(tree, tuple(problem.field.split("."))) if problem.field else None
            reader.problems.append(problem)
        step.inputs = {}
    for problem in reader.problems:
        problem.job = ""
    if step is None or any(p.severity == "error" for p in reader.problems):
        raise SpecError(reader.problems)
    prefix = code_key(_ALONE) + "/"
    files = {key[len(prefix) :]: data for key, data in reader.files.items() if key.startswith(prefix)}
    return step, files, reader.problems


def _parallel_component_alone(reader: _PipelineReader, tree: LineDict, filename: str) -> Step | None:
    """A parallel component file read as a job that holds it inline: the reader a pipeline's
    `component: ./score.yml` goes through, with problems pointing into the file."""
    holder = LineDict({"component": tree})
    holder.line, holder.key_lines = tree.line, {"component": tree.line or 1}
    parsed = reader._parallel_job(_ALONE, {"type": "parallel", "component": tree}, _Where(filename, holder))
    if parsed is None:
        return None
    step = parsed[0]
    step.component_name = _str_or_empty(tree.get("name"))
    step.component_version = _str_or_empty(tree.get("version"))
    return step


def _str_or_empty(value: object) -> str:
    return "" if value is None or isinstance(value, bool | dict | list) else str(value)
