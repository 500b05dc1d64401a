"""Pipelines defined in Python, shaped like Azure ML's v2 SDK (`azure.ai.ml`).

    prep = command(name="prep", code="./src", command="python prep.py --out ${{outputs.data}}",
                   outputs={"data": Output(type="uri_folder")})
    @pipeline(name="digits", default_compute="cpu-cluster")
    def digits(max_iter: int = 100):
        prep_data = prep()
        ...

A built pipeline is a `stepwise.spec.Pipeline`, normalized by a round trip through its
export (the folder `to_yaml` writes and the server reads), so the SDK's content hash is
the one the server gives the version, and the one the same pipeline written in YAML gets.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import sys
import tempfile
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import overload

from stepwise.hashing import pipeline_content_hash
from stepwise.spec import (
    DATA_TYPES,
    DataPath,
    InputDecl,
    JobOutput,
    OutputDecl,
    ParentInput,
    ParentOutputRef,
    Pipeline,
    Settings,
    Step,
    code_key,
    data_key,
    dump_folder,
    to_zip_bytes,
)
from stepwise.spec import load_component as _load_component_file
from stepwise.spec import load_pipeline as _load_pipeline_file
from stepwise.spec.bindings import (
    hoisted_input,
    is_asset_ref,
    is_remote,
    literal_type,
    parse_asset_ref,
    parse_remote_ref,
)
from stepwise.spec.distribution import read_distribution, read_resources
from stepwise.spec.files import Budget, read_file_into, read_folder

__all__ = ["Component", "Input", "Output", "PipelineJob", "command", "load_component", "load_pipeline", "pipeline"]

_PY_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
_PY_TYPE_NAMES = {"bool": "boolean", "int": "integer", "float": "number", "str": "string"}
_NO_LIMIT = 1 << 40  # the user's own files: no upload limit applies locally


@dataclass
class Input:
    """A typed input: a component's declaration, a pipeline parameter's default, or a data path."""

    type: str = "uri_folder"
    path: str | None = None
    default: object = None
    optional: bool = False
    description: str = ""
    enum: list[str] | None = None
    min: int | float | None = None
    max: int | float | None = None

    def decl(self) -> InputDecl:
        return InputDecl(
            type=self.type,
            default=self.default,  # type: ignore[arg-type]
            optional=self.optional,
            description=self.description,
            enum=list(self.enum) if self.enum is not None else None,
            min=self.min,
            max=self.max,
        )


@dataclass
class Output:
    type: str = "uri_folder"
    description: str = ""

    def decl(self) -> OutputDecl:
        return OutputDecl(type=self.type, description=self.description)


# -- building --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Param:
    """A pipeline function's parameter while the function runs: binds as `${{parent.inputs.NAME}}`."""

    name: str
    type: str


@dataclass(frozen=True, eq=False)
class NodeOutput:
    node: Node
    name: str

    @property
    def type(self) -> str:
        return self.node.component.step.output_decls[self.name].type


class _Outputs:
    def __init__(self, node: Node):
        self._node = node

    def __getattr__(self, name: str) -> NodeOutput:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._node.component.step.output_decls:
            known = ", ".join(self._node.component.step.output_decls) or "none"
            raise AttributeError(f"component {self._node.component.name!r} has no output {name!r} (outputs: {known})")
        return NodeOutput(self._node, name)

    def __getitem__(self, name: str) -> NodeOutput:
        return self.__getattr__(name)


class Node:
    """One step of a pipeline being built: a component called with its inputs."""

    def __init__(self, component: Component, inputs: dict[str, object]):
        self.component = component
        self.inputs = inputs
        self.outputs = _Outputs(self)
        self.name: str | None = None
        self.compute = ""
        self.display_name = ""
        self.environment_variables: dict[str, str] = {}
        self.timeout_s: int | None = None
        self.max_retries = 0


_building: list[list[Node]] = []


class Component:
    """A command component: call it inside a `@pipeline` function to add a step."""

    def __init__(self, step: Step, code_files: dict[str, bytes], *, inline: bool = False):
        self.step = step
        self.code_files = code_files
        # Made by command(), not read from a component file: in a pipeline, an inline job, whose
        # component the YAML loader names after the job (see _assemble).
        self.inline = inline

    @property
    def name(self) -> str:
        return self.step.component_name or self.step.name

    def __call__(self, **inputs: object) -> Node:
        if not _building:
            raise RuntimeError(f"call component {self.name!r} inside a @pipeline function")
        unknown = sorted(set(inputs) - set(self.step.input_decls))
        if unknown:
            known = ", ".join(self.step.input_decls) or "none"
            raise TypeError(f"component {self.name!r} has no input {unknown[0]!r} (inputs: {known})")
        node = Node(self, dict(inputs))
        _building[-1].append(node)
        return node

    def __repr__(self) -> str:
        return f"<Component {self.name}>"


def _read_code(code: str | Path | None, base: Path) -> dict[str, bytes]:
    if code is None:
        return {}
    folder = (base / code).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"code folder {code!r} does not exist ({folder})")
    prefix = "c"
    return {k[len(prefix) + 1 :]: v for k, v in read_folder(folder, prefix=prefix, budget=Budget(_NO_LIMIT)).items()}


def command(
    *,
    command: str,
    name: str | None = None,
    version: str | None = None,
    display_name: str = "",
    description: str = "",
    code: str | Path | None = None,
    inputs: dict[str, object] | None = None,
    outputs: dict[str, Output] | None = None,
    environment: str | dict[str, object] = "",
    is_deterministic: bool = True,
    distribution: dict[str, object] | None = None,
    instance_count: int = 1,
) -> Component:
    """A command component, as `azure.ai.ml.command`. An input given a plain value is an input of
    that value's type with that default; `code` is a folder relative to the working directory;
    `distribution` is a mapping as in the YAML (`{"type": "pytorch", "process_count_per_instance": 2}`)."""
    problems = read_resources({"instance_count": instance_count})
    parsed, more = read_distribution(dict(distribution or {}))
    errors = [message for severity, _path, message in problems + more if severity == "error"]
    if errors:
        raise ValueError("; ".join(errors))
    decls: dict[str, InputDecl] = {}
    for key, value in (inputs or {}).items():
        if isinstance(value, Input):
            decls[key] = value.decl()
        else:
            type_ = literal_type(value)
            if type_ is None:
                raise TypeError(f"input {key!r}: give an Input(...) or a str, int, float or bool, not {value!r}")
            decls[key] = InputDecl(type=type_, default=value)  # type: ignore[arg-type]
    step = Step(
        name=name or "component",
        command=command,
        display_name=display_name,
        description=description,
        component_name=name or "",
        component_version=str(version) if version is not None else "",
        input_decls=decls,
        output_decls={k: _output(v).decl() for k, v in (outputs or {}).items()},
        has_code=code is not None,
        environment=copy.deepcopy(environment),
        is_deterministic=is_deterministic,
        distribution=parsed,
    )
    return Component(step, _read_code(code, Path.cwd()), inline=True)


def _output(value: Output | dict) -> Output:
    return value if isinstance(value, Output) else Output(**value)


def load_component(source: str | Path) -> Component:
    """A command component from its YAML file (its `code` folder read relative to the file)."""
    step, files, _warnings = _load_component_file(Path(source))
    return Component(step, files)


# -- pipelines -------------------------------------------------------------------------------


def _job_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", text.lower()) or "step"
    return name if not name[0].isdigit() else "_" + name


def _param_type(annotation: object, default: object) -> str:
    if isinstance(default, Input):
        return default.type
    if annotation is Input or (isinstance(annotation, str) and annotation == "Input"):
        return "uri_folder"
    if isinstance(annotation, str):
        if annotation in _PY_TYPE_NAMES:
            return _PY_TYPE_NAMES[annotation]
    elif annotation in _PY_TYPES:
        return _PY_TYPES[annotation]  # type: ignore[index]
    if default is not inspect.Parameter.empty and default is not None:
        return literal_type(default) or "string"
    return "string"


@dataclass
class PipelineJob:
    """A built pipeline (`spec`) and the input values it was called with (a run's inputs)."""

    spec: Pipeline
    inputs: dict[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def jobs(self) -> dict[str, Step]:
        return self.spec.jobs

    def content_hash(self) -> str:
        """The content hash the server gives this pipeline's version."""
        return pipeline_content_hash(self.spec)

    @overload
    def to_yaml(self, dest: None = None) -> str: ...
    @overload
    def to_yaml(self, dest: str | Path) -> Path: ...

    def to_yaml(self, dest: str | Path | None = None) -> str | Path:
        """Write the pipeline's folder (pipeline.yml, components/, code/, data/) to `dest`; return
        pipeline.yml. With no `dest`, the text of pipeline.yml (to read or diff: the code and
        component files it names are written only with a folder)."""
        if dest is None:
            with tempfile.TemporaryDirectory(prefix="stepwise-sdk-") as tmp:
                dump_folder(self.spec, Path(tmp))
                return (Path(tmp) / "pipeline.yml").read_text()
        dest = Path(dest)
        dump_folder(self.spec, dest)
        return dest / "pipeline.yml"

    def to_zip(self) -> bytes:
        """The folder `to_yaml` writes, as a zip (what the client uploads)."""
        return to_zip_bytes(self.spec)


def normalize(spec: Pipeline) -> Pipeline:
    """`spec` as the server stores it: written out as its export and read back (validated on the way)."""
    with tempfile.TemporaryDirectory(prefix="stepwise-sdk-") as tmp:
        dump_folder(spec, Path(tmp))
        loaded, _warnings = _load_pipeline_file(Path(tmp) / "pipeline.yml", max_files_bytes=_NO_LIMIT)
    return loaded


class _PipelineBuilder:
    def __init__(self, func: Callable, settings: dict):
        self.func = func
        self.settings = settings
        self.signature = inspect.signature(func)
        try:
            self.hints = typing.get_type_hints(func)
        except Exception:  # annotations naming what the module cannot resolve: read them as written
            self.hints = {}

    def __call__(self, *args: object, **kwargs: object) -> PipelineJob:
        bound = self.signature.bind(*args, **kwargs)
        values = {k: v for k, v in bound.arguments.items()}
        spec = self.build()
        for key, value in values.items():
            if isinstance(value, Input):
                raise TypeError(f"parameter {key!r}: data inputs are set by their default path, not at call time")
        return PipelineJob(spec=spec, inputs=values)

    def _inputs(self) -> tuple[dict[str, InputDecl], dict[str, bytes], dict[str, _Param]]:
        decls: dict[str, InputDecl] = {}
        files: dict[str, bytes] = {}
        params: dict[str, _Param] = {}
        for name, param in self.signature.parameters.items():
            annotation = self.hints.get(name, param.annotation)
            default = param.default
            type_ = _param_type(annotation, default)
            if isinstance(default, Input):
                decl = default.decl()
                if default.path is not None and type_ in DATA_TYPES:
                    decl.default = None
                    ref = _data_reference(default.path, f"parameter {name!r}")
                    if ref is not None:
                        decl.asset = ref
                    else:
                        decl.data = DataPath(type=type_, key=data_key(name))
                        files.update(_read_data(default.path, type_, data_key(name)))
            else:
                has_default = default is not inspect.Parameter.empty and default is not None
                decl = InputDecl(type=type_, default=default if has_default else None)  # type: ignore[arg-type]
                if default is None:
                    decl.optional = True
            decls[name] = decl
            params[name] = _Param(name, type_)
        return decls, files, params

    def build(self) -> Pipeline:
        decls, files, params = self._inputs()
        nodes: list[Node] = []
        names: dict[int, str] = {}
        code = self.func.__code__

        def profile(frame, event, arg):  # the function's locals at its return name its steps, as azure.ai.ml does
            if event == "return" and frame.f_code is code:
                for var, value in frame.f_locals.items():
                    if isinstance(value, Node) and id(value) not in names:
                        names[id(value)] = var

        _building.append(nodes)
        previous = sys.getprofile()
        sys.setprofile(profile)
        try:
            returned = self.func(**params)
        finally:
            sys.setprofile(previous)
            _building.pop()
        return _assemble(self.settings, decls, files, nodes, names, returned)


def _data_reference(path: str | Path, where: str) -> str | None:
    """`path` when it names data that a run resolves when it is created, as the YAML loader reads a
    data input's path: a registered data asset (`azureml:NAME:VERSION`, `azureml:NAME@latest`), a
    datastore path or a web address. None for a local path."""
    text = str(path)
    if is_asset_ref(text):
        if parse_asset_ref(text) is None:
            raise ValueError(f"{where}: data asset {text!r} is not azureml:NAME:VERSION or azureml:NAME@latest")
        return text.strip()
    if parse_remote_ref(text) is not None:
        return text.strip()
    if is_remote(text):
        raise ValueError(
            f"{where}: {text!r} is not supported: use a local path, azureml:NAME:VERSION, azureml:NAME@latest, "
            "azureml://datastores/STORE/paths/PATH, https:// or wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH"
        )
    return None


def _read_data(path: str, type_: str, prefix: str) -> dict[str, bytes]:
    source = Path(path).resolve()
    budget = Budget(_NO_LIMIT)
    if type_ == "uri_file":
        return read_file_into(source, prefix=prefix, budget=budget)
    return read_folder(source, prefix=prefix, budget=budget)


def _assemble(
    settings: dict, decls: dict[str, InputDecl], files: dict[str, bytes], nodes: list[Node], names: dict, returned
) -> Pipeline:
    used: set[str] = set()
    for node in nodes:
        name = names.get(id(node))
        if name is None or name in used:
            base = _job_name(node.component.name)
            name, n = base, 2
            while name in used or name in names.values():
                name, n = f"{base}_{n}", n + 1
        node.name = name
        used.add(name)
    jobs: dict[str, Step] = {}
    for node in nodes:
        assert node.name is not None
        step = replace(
            node.component.step,
            name=node.name,
            # As the loader names an inline job's component: a pipeline built here and the same
            # pipeline written in YAML with inline jobs get the same content hash.
            component_name=node.name if node.component.inline else node.component.name,
            input_decls=copy.deepcopy(node.component.step.input_decls),
            output_decls=copy.deepcopy(node.component.step.output_decls),
            inputs={},
            outputs={k: None for k in node.component.step.output_decls},
            compute=node.compute,
            display_name=node.display_name or node.component.step.display_name,
            environment_variables=dict(node.environment_variables),
            timeout_s=node.timeout_s,
            max_retries=node.max_retries,
        )
        for key, value in node.inputs.items():
            step.inputs[key] = _binding(nodes, key, value, step, decls, files)
        if step.has_code:
            files.update({f"{code_key(node.name)}/{k}": v for k, v in node.component.code_files.items()})
        jobs[node.name] = step
    outputs: dict[str, OutputDecl] = {}
    if returned is not None:
        if not isinstance(returned, dict):
            raise TypeError("a @pipeline function returns None or a dict of {output name: step.outputs.X}")
        for out_name, ref in returned.items():
            if not isinstance(ref, NodeOutput):
                raise TypeError(f"pipeline output {out_name!r}: return a step's output (step.outputs.X), not {ref!r}")
            outputs[out_name] = OutputDecl(type=ref.type)
            assert ref.node.name is not None
            jobs[ref.node.name].outputs[ref.name] = ParentOutputRef(out_name)
    spec = Pipeline(
        name=settings["name"],
        display_name=settings.get("display_name") or "",
        description=settings.get("description") or "",
        experiment_name=settings.get("experiment_name") or "",
        tags=dict(settings.get("tags") or {}),
        settings=Settings(
            default_compute=settings.get("default_compute") or "",
            continue_on_step_failure=bool(settings.get("continue_on_step_failure")),
            force_rerun=bool(settings.get("force_rerun")),
        ),
        inputs=decls,
        outputs=outputs,
        jobs=jobs,
        files=files,
    )
    return normalize(spec)


def _binding(
    members: list[Node], key: str, value: object, step: Step, decls: dict[str, InputDecl], files: dict[str, bytes]
) -> object:
    if isinstance(value, NodeOutput):
        if value.node not in members:
            raise ValueError(f"step {step.name!r} input {key!r}: an output of a step of another pipeline")
        return JobOutput(value.node.name, value.name)
    if isinstance(value, _Param):
        return ParentInput(value.name)
    if isinstance(value, Input):
        if value.path is None:
            raise ValueError(f"step {step.name!r} input {key!r}: an Input given to a step needs a path")
        ref = _data_reference(value.path, f"step {step.name!r} input {key!r}")
        if ref is not None:
            # As the loader reads a job input's `path: azureml:...`: a pipeline input of its own,
            # resolved when a run is created, that the step binds.
            name, description = hoisted_input(step.name, key, decls)
            decls[name] = InputDecl(type=value.type, description=description, asset=ref)
            return ParentInput(name)
        prefix = data_key(key, job=step.name)
        files.update(_read_data(value.path, value.type, prefix))
        return DataPath(type=value.type, key=prefix)
    if isinstance(value, Node):
        raise TypeError(f"input {key!r}: pass one of the step's outputs (step.outputs.NAME), not the step")
    return value


def pipeline(
    func: Callable | None = None,
    *,
    name: str | None = None,
    display_name: str = "",
    description: str = "",
    experiment_name: str = "",
    tags: dict[str, str] | None = None,
    default_compute: str = "",
    continue_on_step_failure: bool = False,
    force_rerun: bool = False,
) -> Callable:
    """Decorate a function whose typed parameters are the pipeline's inputs and whose body calls components.

    Calling the decorated function builds a `PipelineJob`; the values passed become the run's inputs.
    """

    def wrap(f: Callable) -> Callable:
        settings = {
            "name": name or f.__name__,
            "display_name": display_name,
            "description": description or inspect.getdoc(f) or "",
            "experiment_name": experiment_name,
            "tags": tags,
            "default_compute": default_compute,
            "continue_on_step_failure": continue_on_step_failure,
            "force_rerun": force_rerun,
        }
        builder = _PipelineBuilder(f, settings)
        return functools.wraps(f)(builder)

    return wrap(func) if func is not None else wrap


def load_pipeline(source: str | Path) -> PipelineJob:
    """A pipeline YAML (with its components, code and data) as a PipelineJob."""
    spec, _warnings = _load_pipeline_file(Path(source), max_files_bytes=_NO_LIMIT)
    return PipelineJob(spec=spec)
