"""Azure ML CLI v2 pipeline YAML in, a normalized Pipeline out, with every problem found.

Normalization gives the editor and the export one shape: inline jobs get typed input and
output declarations inferred from their bindings, component jobs get theirs from the
component file, and files (code folders, local data) are read into `Pipeline.files`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import bindings as b
from . import nesting
from . import parallel as par
from . import parallel_bindings as pb
from . import transfer as tr
from .distribution import read_distribution, read_resources
from .environment import conda_env, conda_notes, image_only
from .files import Budget, FilesError, read_file_into, read_folder, resolve_local
from .model import (
    DATA_TYPES,
    INPUT_TYPES,
    LITERAL_TYPES,
    OUTPUT_TYPES,
    Binding,
    ComponentGroup,
    DataPath,
    Distribution,
    InputDecl,
    JobOutput,
    OutputDecl,
    ParallelSettings,
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
from .sweep import SWEEP_KEYS, parse_sweep
from .validate import validate_pipeline
from .yaml_safe import LineDict, load_yaml, read_text

ComponentResolver = Callable[[str, str | None], dict | None]
# (name, version or None for @latest) -> None when it resolves; raises DataLookupError when not.
DataResolver = Callable[[str, str | None], None]


class ComponentLookupError(LookupError):
    """Raised by a ComponentResolver to say why a reference does not resolve (reported as given)."""


class DataLookupError(LookupError):
    """Raised by a DataResolver to say why a data asset reference does not resolve (reported as given)."""


MAX_BYTES = 1_048_576
MAX_FILES_BYTES = 20 * 1024 * 1024

_NOT_YET_JOB_TYPES = ("import", "flow")
# Job types that need Azure ML's own services (its AutoML trainers, its Spark pools).
_AZURE_ONLY_JOB_TYPES = ("automl", "spark")
_IGNORED_JOB_KEYS = (
    "name",
    "tags",
    "identity",
    "services",
    "queue_settings",
    "properties",
    "experiment_name",
)
_IGNORED_COMPONENT_KEYS = ("tags", "properties", "services")
# Fields of a validation problem that live in the component file when the step has one.
_COMPONENT_FIELD = re.compile(r"(command|code|environment|(inputs|outputs)\.[^.]+\.(type|default|enum|optional))")


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


@dataclass
class _Component:
    """A command component, from a file, the registry or an inline job, before binding."""

    name: str
    version: str
    command: str = ""
    display_name: str = ""
    description: str = ""
    environment: str | dict[str, object] = ""
    is_deterministic: bool = True
    distribution: Distribution | None = None
    input_decls: dict[str, InputDecl] = field(default_factory=dict)
    output_decls: dict[str, OutputDecl] = field(default_factory=dict)
    has_code: bool = False
    file: str = ""
    tree: LineDict | None = None


@dataclass
class _Source:
    """A component's mapping as found (a file, the registry or inline in the job), before it is read."""

    raw: dict
    where: _Where
    # The folder its paths are relative to (None: registered, its files come in `code_files`).
    base: Path | None
    code_files: dict[str, bytes] | None = None


@dataclass
class _Where:
    """Where a problem sits: file, its parsed tree (for line numbers), and the path to the job."""

    file: str
    tree: object
    prefix: tuple[str, ...] = ()
    # The folder that paths written in `file` are relative to (None: the pipeline file's).
    base: Path | None = None

    def at(self, *path: str) -> _Where:
        return _Where(self.file, self.tree, self.prefix + path, self.base)


def _line(tree: object, path: tuple[str, ...]) -> int | None:
    line = getattr(tree, "line", None)
    node = tree
    for key in path:
        if not isinstance(node, LineDict) or key not in node:
            break
        line = node.key_lines.get(key, line)
        node = node[key]
    return line


def _plain(value: object) -> object:
    """LineDicts to dicts, recursively, so values compare and serialize as plain data."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _PipelineReader:
    def __init__(
        self,
        *,
        filename: str,
        base_dir: Path | None,
        root: Path | None,
        known_computes: set[str] | None,
        resolve_component: ComponentResolver | None,
        max_bytes: int,
        resolve_data: DataResolver | None = None,
        max_files_bytes: int,
        unknown_compute_to_default: bool = False,
    ) -> None:
        self.filename = filename
        self.base_dir = base_dir
        self.root = root
        self.known_computes = known_computes
        self.unknown_compute_to_default = unknown_compute_to_default
        self.resolve_component = resolve_component
        self.resolve_data = resolve_data
        self.max_bytes = max_bytes
        self.budget = Budget(max_files_bytes)
        self.budget_exceeded = False
        self.problems: list[Problem] = []
        self.files: dict[str, bytes] = {}
        self.tree: LineDict = LineDict()
        # Per job: where its component's fields are written (for problems from validation).
        self.component_where: dict[str, _Where] = {}
        # Per step inside a pipeline component: where its job is written.
        self.job_where: dict[str, _Where] = {}
        # Per parallel job with a component: the settings (top-level keys) that the component holds.
        self.component_fields: dict[str, frozenset[str]] = {}

    # -- problems -------------------------------------------------------------------------

    def _add(self, severity: str, message: str, where: _Where, path: tuple[str, ...], job: str, field: str) -> None:
        line = _line(where.tree, where.prefix + path)
        self.problems.append(Problem(message, file=where.file, job=job, field=field, line=line, severity=severity))

    def error(self, message: str, where: _Where, *path: str, job: str = "") -> None:
        self._add("error", message, where, path, job, ".".join(path))

    def warn(self, message: str, where: _Where, *path: str, job: str = "") -> None:
        self._add("warning", message, where, path, job, ".".join(path))

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

        jobs = self._mapping(tree, "jobs", top)
        if "jobs" not in tree:
            self.error("'jobs' is required", top, "jobs")
        inline_hints: dict[str, dict[str, str | None]] = {}
        own_file = (self.base_dir / Path(self.filename).name).resolve() if self.base_dir is not None else None
        chain = (own_file,) if own_file is not None and own_file.is_file() else ()
        self._jobs(p, "", jobs, top.at("jobs"), chain, inline_hints)
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

    def _pipeline_component(
        self, job: str, ref: object, where: _Where, chain: tuple[Path, ...]
    ) -> tuple[dict, _Where, Path | None] | None:
        """A pipeline component's mapping, where it is written and its file (None: inline)."""
        if isinstance(ref, dict):
            return ref, where.at("component"), None
        if not isinstance(ref, str) or not ref.strip():
            self.error("component must be a path to a pipeline component file", where, "component", job=job)
            return None
        if ref.startswith("azureml:") or b.is_remote(ref):
            self.error(f"pipeline component '{ref}' is not supported: use a local file", where, "component", job=job)
            return None
        base = self._base(where)
        if base is None or self.root is None:
            self._no_folder(f"component '{ref}'", where, ("component",), job)
            return None
        try:
            path = resolve_local(base, ref, self.root)
        except FilesError as exc:
            self.error(str(exc), where, "component", job=job)
            return None
        display = os.path.normpath(os.path.join(os.path.dirname(where.file), ref.removeprefix("file:")))
        if path in chain:
            root = self.root.resolve()
            cycle = " -> ".join(os.path.relpath(p, root) for p in (*chain[chain.index(path) :], path))
            self.error(f"pipeline component '{ref}' uses itself: {cycle}", where, "component", job=job)
            return None
        if not path.is_file():
            self.error(f"component '{ref}' is not a file", where, "component", job=job)
            return None
        try:
            tree = load_yaml(read_text(path, filename=display, max_bytes=self.max_bytes), filename=display)
        except SpecError as exc:
            for problem in exc.problems:
                problem.job = job
            self.problems.extend(exc.problems)
            return None
        if not isinstance(tree, dict):
            self.error("a component file must hold a mapping", _Where(display, tree), job=job)
            return None
        return tree, _Where(display, tree, base=path.parent), path

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

    # -- small typed getters --------------------------------------------------------------

    def _str(self, raw: dict, key: str, where: _Where, *path: str, job: str = "") -> str:
        value = raw.get(key)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(f"{key} must be a string", where, *path, key, job=job)
            return ""
        return str(value)

    def _mapping(self, raw: dict, key: str, where: _Where, *path: str, job: str = "") -> dict:
        value = raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(f"{key} must be a mapping", where, *path, key, job=job)
            return {}
        return value

    def _str_map(self, raw: dict, key: str, where: _Where, *path: str, job: str = "") -> dict[str, str]:
        result: dict[str, str] = {}
        for k, v in self._mapping(raw, key, where, *path, job=job).items():
            if isinstance(v, dict | list):
                self.error(f"value of '{k}' must be a string", where, *path, key, k, job=job)
            else:
                result[k] = "" if v is None else str(v)
        return result

    def _type(self, raw: dict, where: _Where, path: tuple[str, ...], job: str, allowed: tuple[str, ...]) -> str | None:
        value = raw.get("type")
        if value is None:
            return None
        type_ = str(value).lower()
        if type_ == "mltable":
            # A folder with its MLTable file, as Azure ML mounts it; a parallel job reads the table.
            return "uri_folder"
        if type_ in b.FOLDER_ALIASES:
            self.warn(f"type '{type_}' is handled as uri_folder", where, *path, "type", job=job)
            return "uri_folder"
        if type_ not in allowed:
            self.error(f"unknown type '{value}' (use {', '.join(allowed)})", where, *path, "type", job=job)
            return ""
        return type_

    # -- declarations ---------------------------------------------------------------------

    def _decl(
        self, name: str, raw: object, where: _Where, path: tuple[str, ...], *, pipeline_level: bool, job: str = ""
    ) -> InputDecl | None:
        """A typed input: a component's `inputs.X`, or a pipeline input (literal shorthand or data path)."""
        if pipeline_level and not isinstance(raw, dict | list) and raw is not None:
            if isinstance(raw, str) and b.has_expression(raw):
                self.error("a pipeline input takes a value, not an expression", where, *path, job=job)
                return None
            return InputDecl(type=b.literal_type(raw) or "string", default=raw)
        if not isinstance(raw, dict):
            self.error("an input is declared as a mapping with a 'type'", where, *path, job=job)
            return None
        type_ = self._type(raw, where, path, job, INPUT_TYPES)
        if type_ == "":
            return None
        value_key = "default" if "default" in raw else "value"
        if type_ is None:
            if pipeline_level and "path" in raw:
                type_ = "uri_folder"
            elif pipeline_level and raw.get(value_key) is not None:
                type_ = b.literal_type(raw[value_key]) or "string"
            else:
                self.error("'type' is required", where, *path, job=job)
                return None
        decl = InputDecl(type=type_, table=str(raw.get("type", "")).lower() == "mltable")
        for key, value in raw.items():
            if key in ("type", "path"):
                continue
            if key in ("default", "value"):
                if type_ in DATA_TYPES:
                    self.warn(f"'{key}' of a data input is ignored", where, *path, key, job=job)
                elif isinstance(value, dict | list):
                    self.error(f"{key} must be a single value", where, *path, key, job=job)
                else:
                    decl.default = value
            elif key == "optional":
                if not isinstance(value, bool):
                    self.error(f"optional must be true or false, got {value!r}", where, *path, key, job=job)
                else:
                    decl.optional = value
            elif key == "description":
                decl.description = self._str(raw, key, where, *path, job=job)
            elif key == "enum":
                if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
                    self.error("enum must be a list of values", where, *path, key, job=job)
                else:
                    decl.enum = [str(v) for v in value]
            elif key == "mode":
                self.warn(f"input mode '{value}' is ignored: inputs are local paths", where, *path, key, job=job)
            else:
                self.warn(f"unknown key '{key}' is ignored", where, *path, key, job=job)
        raw_path = raw.get("path")
        if pipeline_level and type_ in DATA_TYPES and isinstance(raw_path, str) and b.is_asset_ref(raw_path):
            declared = str(raw.get("type", "")).lower()
            if declared in b.MODEL_TYPES:
                # A registered model: resolved (and checked) when a run is created, by runs/registry.
                decl.asset_kind = declared
                decl.asset = self._asset(raw_path, where, (*path, "path"), job=job, check=False)
            else:
                decl.asset = self._asset(raw_path, where, (*path, "path"), job=job)
            if decl.asset is None:
                return None
        elif pipeline_level and type_ in DATA_TYPES and isinstance(raw_path, str) and b.parse_remote_ref(raw_path):
            # A datastore path or a web address: read and hashed when a run is created.
            decl.asset = raw_path.strip()
        elif pipeline_level and type_ in DATA_TYPES and raw.get("path") is not None:
            decl.data = self._local_data(raw["path"], type_, data_key(name), where, (*path, "path"), job=job)
            if decl.data is None:
                return None
        elif "path" in raw:
            self.warn(f"'path' is ignored for a {type_} input", where, *path, "path", job=job)
        return decl

    def _output_decl(self, raw: object, where: _Where, path: tuple[str, ...], job: str = "") -> OutputDecl | None:
        if raw is None:
            return OutputDecl()
        if not isinstance(raw, dict):
            self.error("an output is declared as a mapping (or left empty)", where, *path, job=job)
            return None
        type_ = self._type(raw, where, path, job, OUTPUT_TYPES)
        if type_ == "":
            return None
        out = OutputDecl(type=type_ or "uri_folder")
        declared = str(raw.get("type", "")).lower()
        if declared in b.MODEL_TYPES:
            out.asset_kind = declared
        for key, value in raw.items():
            if key == "type":
                continue
            if key == "description":
                out.description = self._str(raw, key, where, *path, job=job)
            elif key == "mode":
                self.warn(f"output mode '{value}' is ignored: outputs are local folders", where, *path, key, job=job)
            elif key in ("name", "version") and job:
                text = "" if value is None else str(value).strip()
                if not b.ASSET_PART[key].fullmatch(text):
                    self.error(
                        f"output {key} {text[:100]!r} is not a valid data asset {key}", where, *path, key, job=job
                    )
                elif key == "name":
                    out.asset_name = text
                else:
                    out.asset_version = text
            elif key == "deploy" and job:
                # Stepwise's extension: deploy the registered model version under this name,
                # given as text or as ${{parent.inputs.X}} (empty: no deployment).
                text = "" if value is None else str(value).strip()
                if not out.asset_kind:
                    self.error(
                        "'deploy' is for an output of type custom_model or mlflow_model", where, *path, key, job=job
                    )
                elif b.has_expression(text) and not isinstance(b.parse_expression(text), ParentInput):
                    self.error("deploy takes a name or ${{parent.inputs.X}}", where, *path, key, job=job)
                elif text and not b.has_expression(text) and not b.ASSET_PART["name"].fullmatch(text):
                    self.error(f"deploy {text[:100]!r} is not a valid deployment name", where, *path, key, job=job)
                else:
                    out.deploy = text
            elif key == "path":
                if not (isinstance(value, str) and isinstance(b.parse_expression(value), ParentOutputRef)):
                    self.warn("output 'path' is ignored: Stepwise stores outputs itself", where, *path, key, job=job)
            else:
                self.warn(f"unknown key '{key}' is ignored", where, *path, key, job=job)
        if out.deploy and not out.asset_name:
            self.error("'deploy' needs the output's 'name' (the model to register)", where, *path, "deploy", job=job)
        return out

    # -- files ----------------------------------------------------------------------------

    def _no_folder(self, what: str, where: _Where, path: tuple[str, ...], job: str) -> bool:
        if self.base_dir is None or self.root is None:
            self.error(
                f"{what} cannot be resolved without a folder or zip: upload them together", where, *path, job=job
            )
            return True
        return False

    def _read(self, reader: Callable[[], dict[str, bytes]], where: _Where, path: tuple[str, ...], job: str) -> bool:
        if self.budget_exceeded:
            return False
        try:
            self.files.update(reader())
            return True
        except FilesError as exc:
            if "in total" in str(exc) or "more than" in str(exc):
                self.budget_exceeded = True
            self.error(str(exc), where, *path, job=job)
            return False

    def _local_data(
        self, value: object, type_: str, key: str, where: _Where, path: tuple[str, ...], job: str = ""
    ) -> DataPath | None:
        if not isinstance(value, str) or not value.strip():
            self.error("path must be a string", where, *path, job=job)
            return None
        if b.is_asset_ref(value):
            self.error(
                f"a data asset ('{value}') is given as a pipeline input: declare it under the pipeline's "
                "inputs and bind ${{parent.inputs.NAME}}",
                where,
                *path,
                job=job,
            )
            return None
        if b.parse_remote_ref(value) is not None:
            self.error(
                f"'{value}' is read when a run is created: declare it under the pipeline's inputs "
                "and bind ${{parent.inputs.NAME}}",
                where,
                *path,
                job=job,
            )
            return None
        if b.is_remote(value):
            self.error(
                f"'{value}' is not supported: use a local path, azureml://datastores/STORE/paths/PATH or https://",
                where,
                *path,
                job=job,
            )
            return None
        base = self._base(where)
        if base is None:
            self._no_folder(f"local path '{value}'", where, path, job)
            return None
        try:
            target = resolve_local(base, value, self.root)  # type: ignore[arg-type]
        except FilesError as exc:
            self.error(str(exc), where, *path, job=job)
            return None
        if type_ == "uri_file" and not target.is_file():
            self.error(f"uri_file path '{value}' is not a file", where, *path, job=job)
            return None
        if type_ == "uri_folder" and not target.is_dir():
            self.error(f"uri_folder path '{value}' is not a folder", where, *path, job=job)
            return None
        if type_ == "uri_file":
            ok = self._read(lambda: read_file_into(target, prefix=key, budget=self.budget), where, path, job)
        else:
            ok = self._read(lambda: read_folder(target, prefix=key, budget=self.budget), where, path, job)
        return DataPath(type=type_, key=key) if ok else None

    def _asset(
        self, ref: str, where: _Where, path: tuple[str, ...], job: str = "", *, check: bool = True
    ) -> str | None:
        """A data asset reference, checked against the registry when there is one (resolved per run)."""
        parsed = b.parse_asset_ref(ref)
        if parsed is None:
            self.error(f"data asset '{ref}' is not azureml:NAME:VERSION or azureml:NAME@latest", where, *path, job=job)
            return None
        if check and self.resolve_data is not None:
            try:
                self.resolve_data(*parsed)
            except DataLookupError as exc:
                self.error(str(exc), where, *path, job=job)
                return None
        return ref.strip()

    def _base(self, where: _Where) -> Path | None:
        """The folder that paths in the pipeline file are relative to (components pass their own)."""
        return where.base if where.base is not None else self.base_dir

    def _code(self, value: object, step: str, base: Path | None, where: _Where, path: tuple[str, ...]) -> bool:
        if not isinstance(value, str) or not value.strip():
            self.error("code must be a path", where, *path, job=step)
            return False
        if b.is_remote(value):
            self.error(f"only local code folders are supported, not '{value}'", where, *path, job=step)
            return False
        if base is None or self.root is None:
            self._no_folder(f"code '{value}'", where, path, step)
            return False
        try:
            target = resolve_local(base, value, self.root)
        except FilesError as exc:
            self.error(str(exc), where, *path, job=step)
            return False
        prefix = code_key(step)
        if target.is_file():
            return self._read(lambda: read_file_into(target, prefix=prefix, budget=self.budget), where, path, step)
        return self._read(lambda: read_folder(target, prefix=prefix, budget=self.budget), where, path, step)

    # -- components -----------------------------------------------------------------------

    def _component_ref(self, step: str, ref: object, where: _Where) -> _Component | None:
        source = self._component_source(step, ref, where)
        if source is None:
            return None
        return self._component_dict(step, source.raw, source.where, base=source.base, code_files=source.code_files)

    def _component_source(self, step: str, ref: object, where: _Where) -> _Source | None:
        """The mapping `component:` names (a file, a registered name, or itself), read but not checked."""
        if isinstance(ref, dict):
            self.component_where[step] = where.at("component")
            return _Source(ref, where.at("component"), self._base(where))
        if not isinstance(ref, str) or not ref.strip():
            self.error("component must be a path or a registered name", where, "component", job=step)
            return None
        if ref.startswith("azureml:"):
            return self._registered(step, ref, where)
        if b.is_remote(ref):
            self.error(
                f"component '{ref}' is not supported: use a local file or azureml:name:version",
                where,
                "component",
                job=step,
            )
            return None
        base = self._base(where)
        if base is None or self.root is None:
            self._no_folder(f"component '{ref}'", where, ("component",), step)
            return None
        try:
            path = resolve_local(base, ref, self.root)
        except FilesError as exc:
            self.error(str(exc), where, "component", job=step)
            return None
        display = os.path.normpath(os.path.join(os.path.dirname(where.file), ref.removeprefix("file:")))
        if not path.is_file():
            self.error(f"component '{ref}' is not a file", where, "component", job=step)
            return None
        try:
            tree = load_yaml(read_text(path, filename=display, max_bytes=self.max_bytes), filename=display)
        except SpecError as exc:
            for problem in exc.problems:
                problem.job = step
            self.problems.extend(exc.problems)
            return None
        comp_where = _Where(display, tree)
        if not isinstance(tree, dict):
            self.error("a component file must hold a mapping", comp_where, job=step)
            return None
        self.component_where[step] = comp_where
        return _Source(tree, comp_where, path.parent)

    def _registered(self, step: str, ref: str, where: _Where) -> _Source | None:
        spec = ref.removeprefix("azureml:")
        if spec.startswith("//"):
            self.error(f"component '{ref}': registries are not supported", where, "component", job=step)
            return None
        if "@" in spec:
            name, label = spec.split("@", 1)
            version = None
            if label != "latest":
                self.error(f"component '{ref}': only the @latest label is supported", where, "component", job=step)
                return None
        elif ":" in spec:
            name, version = spec.rsplit(":", 1)
        else:
            name, version = spec, None
        if self.resolve_component is None:
            self.error(f"registered component '{ref}' cannot be resolved here", where, "component", job=step)
            return None
        try:
            found = self.resolve_component(name, version)
        except ComponentLookupError as exc:
            self.error(str(exc), where, "component", job=step)
            return None
        if not isinstance(found, dict):
            label = f"{name}:{version}" if version else f"{name}@latest"
            self.error(f"component '{label}' is not registered in Stepwise", where, "component", job=step)
            return None
        code_files = found.get("_files")
        comp_where = _Where(f"azureml:{name}", found)
        self.component_where[step] = comp_where
        body = {k: v for k, v in found.items() if k != "_files"}
        body.setdefault("name", name)
        return _Source(body, comp_where, None, code_files)

    def _component_dict(
        self,
        step: str,
        raw: dict,
        where: _Where,
        *,
        base: Path | None,
        code_files: dict[str, bytes] | None,
    ) -> _Component | None:
        """A command component's fields, from the mapping at `where`."""
        type_ = raw.get("type", "command")
        if type_ in ("pipeline", "parallel"):
            self.error(f"a {type_} component is used by a job with 'type: {type_}'", where, "type", job=step)
            return None
        if type_ != "command":
            if type_ in _AZURE_ONLY_JOB_TYPES:
                message = f"component type {type_} runs only on Azure ML; Stepwise cannot run it"
            else:
                what = "not supported yet" if type_ in _NOT_YET_JOB_TYPES else "unknown"
                message = f"component type '{type_}' is {what} (only command components)"
            self.error(message, where, "type", job=step)
            return None
        comp = _Component(
            name=self._str(raw, "name", where, job=step) or step,
            version=self._str(raw, "version", where, job=step) or "1",
            file=where.file,
            tree=where.tree if isinstance(where.tree, LineDict) else None,
        )
        known = {"type", "name", "version", "display_name", "description", "is_deterministic", "inputs", "outputs"}
        known |= {"code", "environment", "command", "resources", "distribution"}
        for key in raw:
            if key == "$schema":
                self.warn("'$schema' is ignored", where, key, job=step)
            elif key in _IGNORED_COMPONENT_KEYS:
                self.warn(f"'{key}' is not used by Stepwise and is ignored", where, key, job=step)
            elif key == "additional_includes":
                self.error("'additional_includes' is not supported yet", where, key, job=step)
            elif key not in known:
                self.warn(f"unknown key '{key}' is ignored", where, key, job=step)
        self._component_body(comp, step, raw, where, base=base, code_files=code_files)
        self._interface(comp, step, raw, where)
        return comp

    def _interface(self, comp: _Component, step: str, raw: dict, where: _Where) -> None:
        """A component's declared inputs and outputs."""
        for name, decl_raw in self._mapping(raw, "inputs", where, job=step).items():
            decl = self._decl(name, decl_raw, where, ("inputs", name), pipeline_level=False, job=step)
            if decl is not None:
                comp.input_decls[name] = decl
        for name, out_raw in self._mapping(raw, "outputs", where, job=step).items():
            out = self._output_decl(out_raw, where, ("outputs", name), job=step)
            if out is not None:
                comp.output_decls[name] = out

    def _component_body(
        self, comp: _Component, step: str, raw: dict, where: _Where, *, base: Path | None, code_files: dict | None
    ) -> None:
        """Fields an inline job and a component share: command, code, environment, identity."""
        command = raw.get("command")
        if command is None:
            self.error("command is required", where, "command", job=step)
        elif not isinstance(command, str):
            self.error("command must be a string", where, "command", job=step)
        else:
            comp.command = command
        comp.display_name = self._str(raw, "display_name", where, job=step)
        comp.description = self._str(raw, "description", where, job=step)
        deterministic = raw.get("is_deterministic", True)
        if not isinstance(deterministic, bool):
            self.error(
                f"is_deterministic must be true or false, got {deterministic!r}", where, "is_deterministic", job=step
            )
        else:
            comp.is_deterministic = deterministic
        comp.environment = self._environment(raw.get("environment"), step, where, base)
        comp.distribution = self._distribution(raw, where, step)
        if code_files is not None:
            if not isinstance(code_files, dict) or not all(
                isinstance(k, str) and isinstance(v, bytes) for k, v in code_files.items()
            ):
                self.error("registered component files are malformed", where, "code", job=step)
            else:
                self.files.update({f"{code_key(step)}/{rel}": data for rel, data in code_files.items()})
                comp.has_code = True
        elif raw.get("code") is not None:
            comp.has_code = self._code(raw["code"], step, base, where, ("code",))

    def _environment(self, value: object, step: str, where: _Where, base: Path | None) -> str | dict[str, object]:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if not isinstance(value, dict):
            self.error("environment must be a name or a mapping", where, "environment", job=step)
            return ""
        env = _plain(value)
        assert isinstance(env, dict)
        conda = env.get("conda_file")
        if isinstance(conda, str):
            # Inline the conda file: the export then carries it without a separate file.
            if base is None or self.root is None:
                self._no_folder(f"conda_file '{conda}'", where, ("environment", "conda_file"), step)
                return env
            try:
                conda_path = resolve_local(base, conda, self.root)
                conda_text = read_text(conda_path, filename=conda, max_bytes=self.max_bytes)
                env["conda_file"] = _plain(load_yaml(conda_text, filename=conda))
            except (FilesError, SpecError) as exc:
                self.error(f"conda_file: {exc}", where, "environment", "conda_file", job=step)
        if "build" in env:
            self.warn("environment 'build' context is recorded, not built", where, "environment", "build", job=step)
        elif image_only(env):
            self.warn(
                "environment has no conda_file: its image is not pulled, the step runs in its compute "
                "target's own Python environment",
                where,
                "environment",
                "image",
                job=step,
            )
        if env.get("conda_file") is not None:
            self._conda(env["conda_file"], where, step)
        return env

    def _conda(self, conda: object, where: _Where, step: str) -> None:
        read = conda_env(conda)
        for message in read.errors:
            self.error(message, where, "environment", "conda_file", job=step)
        if read.conda_only:
            self.error(
                f"conda package specs that read as no pip requirement: {', '.join(read.conda_only)} "
                "(Stepwise installs conda packages from PyPI: write them as 'name', 'name=1.2' or "
                "'name>=1.2,<2', or list them under 'pip:')",
                where,
                "environment",
                "conda_file",
                job=step,
            )
        for message in conda_notes(read):
            self.warn(message, where, "environment", "conda_file", job=step)
        if read.provided:
            self.warn(
                f"{', '.join(read.provided)}: ignored (Stepwise installs the 'pip:' list with its own installer)",
                where,
                "environment",
                "conda_file",
                job=step,
            )

    def _distribution(self, raw: dict, where: _Where, step: str) -> Distribution | None:
        """`distribution` and `resources.instance_count`: processes on this one host."""
        found = read_resources(self._mapping(raw, "resources", where, job=step))
        distribution, more = read_distribution(self._mapping(raw, "distribution", where, job=step))
        for severity, path, message in found + more:
            self._add(severity, message, where, path, step, ".".join(path))
        return distribution

    # -- jobs -----------------------------------------------------------------------------

    def _sweep_job(self, name: str, raw: dict, where: _Where) -> tuple[Step, None] | None:
        """A `type: sweep` job: its trial read as a component job's component, then the sweep keys."""
        spec, findings = parse_sweep(raw)
        for path, message, severity in findings:
            (self.error if severity == "error" else self.warn)(message, where, *path, job=name)
        if raw.get("trial") is None:
            self.error(
                "a sweep job needs a 'trial': a command component file or an inline one", where, "trial", job=name
            )
            return None
        if "command" in raw or "code" in raw:
            key = "command" if "command" in raw else "code"
            self.error(f"'{key}' of a sweep job belongs in its trial", where, key, job=name)
        view = {key: value for key, value in raw.items() if key not in SWEEP_KEYS and key not in ("command", "code")}
        parsed = self._job(name, {**view, "type": "command", "component": raw["trial"]}, where)
        if name in self.component_where and self.component_where[name].prefix[-1:] == ("component",):
            trial = self.component_where[name]
            self.component_where[name] = _Where(trial.file, trial.tree, trial.prefix[:-1] + ("trial",))
        if parsed is None or spec is None:
            return None
        step, _hints = parsed
        step.sweep = spec
        return step, None

    def _job(self, name: str, raw: dict, where: _Where) -> tuple[Step, dict[str, str | None] | None] | None:
        type_ = raw.get("type", "command")
        if type_ == "parallel":
            return self._parallel_job(name, raw, where)
        if type_ == "sweep":
            return self._sweep_job(name, raw, where)
        if type_ == "data_transfer":
            return self._transfer_job(name, raw, where)
        if type_ != "command":
            if type_ in _AZURE_ONLY_JOB_TYPES:
                self.error(f"type {type_} runs only on Azure ML; Stepwise cannot run it", where, "type", job=name)
            elif type_ in _NOT_YET_JOB_TYPES:
                self.error(
                    f"job type '{type_}' is not supported yet "
                    "(only command, sweep, parallel, data_transfer and pipeline jobs)",
                    where,
                    "type",
                    job=name,
                )
            else:
                self.error(f"unknown job type '{type_}'", where, "type", job=name)
            return None
        inline = "component" not in raw
        known = {"type", "component", "display_name", "description", "inputs", "outputs", "compute"}
        known |= {"environment_variables", "limits", "retry_settings", "environment", "is_deterministic"}
        known |= {"resources", "distribution"}
        if inline:
            known |= {"command", "code", "$schema"}
        for key in raw:
            if key in _IGNORED_JOB_KEYS:
                self.warn(f"'{key}' is not used by Stepwise and is ignored", where, key, job=name)
            elif key in ("command", "code") and not inline:
                self.error(f"'{key}' comes from the component; set it in the component file", where, key, job=name)
            elif key == "$schema":
                self.warn("'$schema' is ignored", where, key, job=name)
            elif key not in known:
                self.warn(f"unknown key '{key}' is ignored", where, key, job=name)

        if inline:
            comp = _Component(name=name, version="1", file=where.file)
            self._component_body(comp, name, raw, where, base=self._base(where), code_files=None)
        else:
            comp = self._component_ref(name, raw["component"], where)
            if comp is None:
                return None
            if raw.get("environment") is not None:
                comp.environment = self._environment(raw["environment"], name, where, self._base(where))
            # A job's own distribution and resources override its component's, as in Azure ML.
            comp.distribution = self._distribution(raw, where, name) or comp.distribution
            if "is_deterministic" in raw:
                if isinstance(raw["is_deterministic"], bool):
                    comp.is_deterministic = raw["is_deterministic"]
                else:
                    self.error("is_deterministic must be true or false", where, "is_deterministic", job=name)

        step = Step(
            name=name,
            command=comp.command,
            display_name=self._str(raw, "display_name", where, job=name) or comp.display_name,
            description=self._str(raw, "description", where, job=name) or comp.description,
            component_name=comp.name,
            component_version=comp.version,
            input_decls=comp.input_decls,
            output_decls=comp.output_decls,
            has_code=comp.has_code,
            environment=comp.environment,
            compute=self._str(raw, "compute", where, job=name),
            environment_variables=self._str_map(raw, "environment_variables", where, job=name),
            is_deterministic=comp.is_deterministic,
            distribution=comp.distribution,
        )
        self._limits(step, raw, where)
        hints: dict[str, str | None] = {}
        for input_name, value in self._mapping(raw, "inputs", where, job=name).items():
            parsed = self._binding(name, input_name, value, where)
            if parsed is not None:
                step.inputs[input_name], hints[input_name] = parsed
        for output_name, value in self._mapping(raw, "outputs", where, job=name).items():
            self._job_output(step, output_name, value, where, inline=inline)
        return step, (hints if inline else None)

    def _parallel_job(self, name: str, raw: dict, where: _Where) -> tuple[Step, dict[str, str | None] | None] | None:
        """A `type: parallel` job: its task's entry script, run by Stepwise's driver. With a
        `component`, the job's settings override the component's and the job binds its inputs."""
        known = {"type", "component", "display_name", "description", "inputs", "outputs", "compute"}
        known |= par.JOB_KEYS | {"is_deterministic"}
        for key in raw:
            if key in ("command", "code", "environment"):
                self.error(f"a parallel job has no '{key}' of its own: set it in its task", where, key, job=name)
            elif key == "$schema":
                self.warn("'$schema' is ignored", where, key, job=name)
            elif key in _IGNORED_JOB_KEYS and key not in known:
                self.warn(f"'{key}' is not used by Stepwise and is ignored", where, key, job=name)
            elif key not in known:
                self.warn(f"unknown key '{key}' is ignored", where, key, job=name)
        comp: tuple[_Component, _Source] | None = None
        if "component" in raw:
            comp = self._parallel_component(name, raw["component"], where)
            if comp is None:
                return None
        merged, taken = par.merge_component(comp[1].raw if comp else {}, raw)
        if comp is not None:
            self.component_fields[name] = frozenset(taken | (set(par.SETTINGS_KEYS) - set(raw)))

        def at(key: str) -> _Where:
            # What the job does not write is its component's to hold, missing or wrong.
            return comp[1].where if comp is not None and key not in raw else where

        task_where = at("task")
        # A component's task is relative to the component's file; one the job sets, to the job's.
        task_source = comp[1] if comp is not None and "task" not in raw else None
        task_base = task_source.base if task_source is not None else self._base(where)
        task = merged.get("task")
        if not isinstance(task, dict):
            message = "task is required: {type: run_function, code: ..., entry_script: ...}"
            self.error(message, task_where, "task", job=name)
            task = {}
        for key in task:
            if key not in par.TASK_KEYS:
                self.warn(f"unknown key '{key}' is ignored", task_where, "task", key, job=name)
        merged, bound, found = pb.split(merged)
        for setting in [s for s in bound if s.split(".")[0] in taken]:
            # A component has no parent to read from: only the job that uses it binds a setting.
            message = f"{setting} of a parallel component must be a value: bind it to an input in the job that uses it"
            self.error(message, at(setting.split(".")[0]), *setting.split("."), job=name)
        settings, more = par.read_parallel(merged, task)
        for message, path in found + more:
            self.error(message, at(path[0]), *path, job=name)
        if settings is not None:
            settings.from_component = comp is not None
            settings.bound = bound
            ignored = par.ignored_mini_batch_size(settings)
            if ignored:
                self.warn(ignored, at("mini_batch_size"), "mini_batch_size", job=name)
        code_files = task_source.code_files if task_source is not None else None
        has_code = self._parallel_code(name, task, task_where, task_base, code_files, settings)
        deterministic = raw.get("is_deterministic", comp[0].is_deterministic if comp else True)
        if not isinstance(deterministic, bool):
            self.error("is_deterministic must be true or false", where, "is_deterministic", job=name)
        step = Step(
            name=name,
            command=par.driver_command(settings) if settings is not None else "",
            display_name=self._str(raw, "display_name", where, job=name) or (comp[0].display_name if comp else ""),
            description=self._str(raw, "description", where, job=name) or (comp[0].description if comp else ""),
            component_name=comp[0].name if comp else name,
            component_version=comp[0].version if comp else "1",
            input_decls=comp[0].input_decls if comp else {},
            output_decls=comp[0].output_decls if comp else {},
            has_code=has_code,
            environment=self._environment(task.get("environment"), name, task_where, task_base),
            compute=self._str(raw, "compute", where, job=name),
            # Azure ML sets them on the job; the task's (Stepwise's earlier place) still count.
            environment_variables={
                **self._str_map(task, "environment_variables", task_where, "task", job=name),
                **self._str_map(raw, "environment_variables", where, job=name),
            },
            is_deterministic=deterministic is not False,
            parallel=settings,
        )
        hints: dict[str, str | None] = {}
        for input_name, value in self._mapping(raw, "inputs", where, job=name).items():
            parsed = self._binding(name, input_name, value, where)
            if parsed is not None:
                step.inputs[input_name], hints[input_name] = parsed
        for output_name, value in self._mapping(raw, "outputs", where, job=name).items():
            self._job_output(step, output_name, value, where, inline=comp is None)
        if settings is None:
            return None
        return step, (None if comp else hints)

    def _parallel_code(
        self,
        name: str,
        task: dict,
        where: _Where,
        base: Path | None,
        code_files: dict[str, bytes] | None,
        settings: ParallelSettings | None,
    ) -> bool:
        """Read the task's code folder (or a registered component's files); True when it has one."""
        if code_files is not None:
            self.files.update({f"{code_key(name)}/{rel}": data for rel, data in code_files.items()})
            has_code = True
        elif task.get("code") is not None:
            has_code = self._code(task["code"], name, base, where, ("task", "code"))
        else:
            return False  # validation says so, for the editor too
        if settings is not None and has_code and f"{code_key(name)}/{settings.entry_script}" not in self.files:
            self.error(
                f"entry_script '{settings.entry_script}' is not in the code folder '{task.get('code', '')}'",
                where,
                "task",
                "entry_script",
                job=name,
            )
        return has_code

    def _parallel_component(self, name: str, ref: object, where: _Where) -> tuple[_Component, _Source] | None:
        """A parallel component's identity and interface; its settings stay in the source's mapping."""
        source = self._component_source(name, ref, where)
        if source is None:
            return None
        raw, cw = source.raw, source.where
        type_ = raw.get("type", "parallel")
        if type_ != "parallel":
            # Its bindings would all be reported against the wrong kind of component: stop here.
            self.error(
                f"a parallel job needs a parallel component (type: parallel), not a {type_} component",
                cw,
                "type",
                job=name,
            )
            return None
        known = par.COMPONENT_KEYS | set(par.SETTINGS_KEYS)
        for key in raw:
            if key in ("command", "code", "environment"):
                self.error(f"a parallel component has no '{key}' of its own: set it in its task", cw, key, job=name)
            elif key == "additional_includes":
                self.error("'additional_includes' is not supported yet", cw, key, job=name)
            elif key == "$schema":
                self.warn("'$schema' is ignored", cw, key, job=name)
            elif key in _IGNORED_COMPONENT_KEYS:
                self.warn(f"'{key}' is not used by Stepwise and is ignored", cw, key, job=name)
            elif key not in known:
                self.warn(f"unknown key '{key}' is ignored", cw, key, job=name)
        comp = _Component(
            name=self._str(raw, "name", cw, job=name) or name,
            version=self._str(raw, "version", cw, job=name) or "1",
            display_name=self._str(raw, "display_name", cw, job=name),
            description=self._str(raw, "description", cw, job=name),
            file=cw.file,
        )
        deterministic = raw.get("is_deterministic", True)
        if not isinstance(deterministic, bool):
            message = f"is_deterministic must be true or false, got {deterministic!r}"
            self.error(message, cw, "is_deterministic", job=name)
        else:
            comp.is_deterministic = deterministic
        self._interface(comp, name, raw, cw)
        return comp, source

    def _transfer_job(self, name: str, raw: dict, where: _Where) -> tuple[Step, dict[str, str | None]] | None:
        """An inline `type: data_transfer` job: a copy the worker does itself (runs/transfer.py)."""
        known = {"type", "display_name", "description", "inputs", "outputs", "compute", "is_deterministic"}
        known |= tr.JOB_KEYS | {"limits", "retry_settings"}
        for key in raw:
            if key in ("command", "code", "environment", "environment_variables"):
                self.error(f"a data_transfer job has no '{key}': Stepwise copies the data itself", where, key, job=name)
            elif key == "$schema":
                self.warn("'$schema' is ignored", where, key, job=name)
            elif key in _IGNORED_JOB_KEYS:
                self.warn(f"'{key}' is not used by Stepwise and is ignored", where, key, job=name)
            elif key not in known:
                self.warn(f"unknown key '{key}' is ignored", where, key, job=name)
        settings, found = tr.read_transfer(raw)
        for message, path in found:
            self.error(message, where, *path, job=name)
        deterministic = raw.get("is_deterministic")
        if deterministic is not None and not isinstance(deterministic, bool):
            self.error("is_deterministic must be true or false", where, "is_deterministic", job=name)
            deterministic = None
        if deterministic is None:
            # What an import reads and what an export writes live outside Stepwise: never reuse them.
            deterministic = settings is None or settings.task == "copy_data"
        step = Step(
            name=name,
            command="",
            display_name=self._str(raw, "display_name", where, job=name),
            description=self._str(raw, "description", where, job=name),
            component_name=name,
            component_version="1",
            compute=self._str(raw, "compute", where, job=name),
            is_deterministic=deterministic,
            transfer=settings,
        )
        self._limits(step, raw, where)
        hints: dict[str, str | None] = {}
        for input_name, value in self._mapping(raw, "inputs", where, job=name).items():
            parsed = self._binding(name, input_name, value, where)
            if parsed is not None:
                step.inputs[input_name], hints[input_name] = parsed
        for output_name, value in self._mapping(raw, "outputs", where, job=name).items():
            self._job_output(step, output_name, value, where, inline=True)
        if settings is None:
            return None
        task = settings.task
        if task == "import_data" and not step.output_decls:
            step.output_decls[tr.IMPORT_OUTPUT] = OutputDecl()
        wanted_inputs = {"copy_data": "at least one input", "import_data": "no inputs", "export_data": "one input"}
        count = len(raw.get("inputs") or {})
        if (
            (task == "copy_data" and count < 1)
            or (task == "import_data" and count)
            or (task == "export_data" and count != 1)
        ):
            self.error(f"task {task} takes {wanted_inputs[task]}, got {count}", where, "inputs", job=name)
        outputs = len(step.output_decls)
        if task == "export_data" and outputs:
            self.error("task export_data writes to its sink and has no outputs", where, "outputs", job=name)
        elif task != "export_data" and outputs != 1:
            self.error(f"task {task} writes one output, got {outputs}", where, "outputs", job=name)
        return step, hints

    def _limits(self, step: Step, raw: dict, where: _Where) -> None:
        job = step.name
        for key, value in self._mapping(raw, "limits", where, job=job).items():
            if key != "timeout":
                self.warn(f"limits.{key} is not used by Stepwise and is ignored", where, "limits", key, job=job)
            elif isinstance(value, bool) or not isinstance(value, int):
                self.error(f"timeout must be a whole number of seconds, got {value!r}", where, "limits", key, job=job)
            else:
                step.timeout_s = value
        for key, value in self._mapping(raw, "retry_settings", where, job=job).items():
            if key != "max_retries":
                self.warn(
                    f"retry_settings.{key} is not used by Stepwise and is ignored",
                    where,
                    "retry_settings",
                    key,
                    job=job,
                )
            elif isinstance(value, bool) or not isinstance(value, int):
                self.error(f"max_retries must be a whole number, got {value!r}", where, "retry_settings", key, job=job)
            else:
                step.max_retries = value

    def _binding(self, job: str, name: str, value: object, where: _Where) -> tuple[Binding, str | None] | None:
        """A job input's binding and, for inline jobs, the type it implies (None: infer later)."""
        path = ("inputs", name)
        if value is None:
            self.warn("input has no value and is left unbound", where, *path, job=job)
            return None
        if isinstance(value, list):
            self.error("an input takes one value, not a list", where, *path, job=job)
            return None
        if isinstance(value, str):
            return self._expression_or_literal(job, value, where, path)
        if not isinstance(value, dict):
            return value, b.literal_type(value)  # type: ignore[return-value]
        type_ = self._type(value, where, path, job, INPUT_TYPES)
        if type_ == "":
            return None
        # An inline job's input declares itself: an mltable is a folder its job reads as a table.
        hint = MLTABLE_HINT if str(value.get("type", "")).lower() == "mltable" else type_
        for key in value:
            if key == "mode":
                self.warn(f"input mode '{value[key]}' is ignored: inputs are local paths", where, *path, key, job=job)
            elif key not in ("type", "path", "value", "default"):
                self.warn(f"unknown key '{key}' is ignored", where, *path, key, job=job)
        if "path" in value:
            raw_path = value["path"]
            if isinstance(raw_path, str) and b.has_expression(raw_path):
                parsed = self._expression_or_literal(job, raw_path, where, (*path, "path"))
                return None if parsed is None else (parsed[0], hint)
            data_type = type_ or "uri_folder"
            if data_type not in DATA_TYPES:
                self.error(f"a {data_type} input takes a value, not a path", where, *path, job=job)
                return None
            data = self._local_data(raw_path, data_type, data_key(name, job), where, (*path, "path"), job=job)
            return None if data is None else (data, hint or data_type)
        for key in ("value", "default"):
            if key in value:
                literal = value[key]
                if isinstance(literal, dict | list):
                    self.error(f"{key} must be a single value", where, *path, key, job=job)
                    return None
                if isinstance(literal, str):
                    parsed = self._expression_or_literal(job, literal, where, (*path, key))
                    return None if parsed is None else (parsed[0], type_ or parsed[1])
                return literal, type_ or b.literal_type(literal)
        if type_ in DATA_TYPES:
            self.error("a data input needs a 'path'", where, *path, job=job)
        else:
            self.error("give the input a value", where, *path, job=job)
        return None

    def _expression_or_literal(
        self, job: str, text: str, where: _Where, path: tuple[str, ...]
    ) -> tuple[Binding, str | None] | None:
        expr = b.parse_expression(text)
        if isinstance(expr, ParentOutputRef):
            self.error("an input cannot read a pipeline output", where, *path, job=job)
            return None
        if expr is not None:
            return expr, None
        if b.has_expression(text):
            self.error(
                f"unsupported expression '{text}': use ${{{{parent.inputs.X}}}} or "
                "${{parent.jobs.J.outputs.O}} as the whole value",
                where,
                *path,
                job=job,
            )
            return None
        return text, "string"

    def _job_output(self, step: Step, name: str, value: object, where: _Where, *, inline: bool) -> None:
        path = ("outputs", name)
        ref: ParentOutputRef | None = None
        decl: OutputDecl | None = OutputDecl()
        if isinstance(value, str):
            expr = b.parse_expression(value)
            if not isinstance(expr, ParentOutputRef):
                self.error("an output can only be bound to ${{parent.outputs.X}}", where, *path, job=step.name)
                return
            ref = expr
        elif isinstance(value, dict):
            decl = self._output_decl(value, where, path, job=step.name)
            raw_path = value.get("path")
            if isinstance(raw_path, str) and isinstance(b.parse_expression(raw_path), ParentOutputRef):
                ref = b.parse_expression(raw_path)  # type: ignore[assignment]
        elif value is not None:
            self.error("an output is a mapping or ${{parent.outputs.X}}", where, *path, job=step.name)
            return
        if inline and decl is not None:
            step.output_decls[name] = decl
        elif not inline and name not in step.output_decls:
            declared = ", ".join(sorted(step.output_decls)) or "none"
            self.error(f"the component has no output '{name}' (declared: {declared})", where, *path, job=step.name)
            return
        elif decl is not None and (decl.asset_name or decl.asset_version):
            step.output_decls[name] = replace(
                step.output_decls[name],
                asset_name=decl.asset_name,
                asset_version=decl.asset_version,
                asset_kind=decl.asset_kind or step.output_decls[name].asset_kind,
                deploy=decl.deploy,
            )
        if ref is not None:
            step.outputs[name] = ref

    def _infer_inline_decls(self, p: Pipeline, step: Step, hints: dict[str, str | None]) -> None:
        """Typed declarations for an inline job's inputs, from what is bound to them."""
        for name, binding in step.inputs.items():
            type_ = hints.get(name)
            optional = False
            table = type_ == MLTABLE_HINT
            if table:
                type_ = "uri_folder"
            if isinstance(binding, ParentInput) and binding.name in p.inputs:
                source = p.inputs[binding.name]
                type_ = type_ or source.type
                optional, table = source.optional, table or source.table
            elif isinstance(binding, JobOutput):
                upstream = p.jobs.get(binding.job)
                if type_ is None and upstream is not None and binding.output in upstream.output_decls:
                    type_ = upstream.output_decls[binding.output].type
                type_ = type_ or "uri_folder"
            elif isinstance(binding, DataPath):
                type_ = binding.type
            step.input_decls[name] = InputDecl(
                type=type_ or b.literal_type(binding) or "string", optional=optional, table=table
            )
        for name, ref in step.outputs.items():
            if ref is not None and ref.name in p.outputs and name in step.output_decls:
                declared = step.output_decls[name]
                if declared == OutputDecl():
                    declared.type = p.outputs[ref.name].type


# The type an inline job's `{type: mltable, ...}` input implies (`_binding`), until its declaration
# is made from it: a uri_folder read as a table (InputDecl.table).
MLTABLE_HINT = "mltable"


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
