"""Pipeline out: to JSON (for the database and the editor) and to an Azure ML folder or zip.

The export is what `load_pipeline` reads back into an equal Pipeline: `pipeline.yml` with
every job as `component: ./components/<step>.yml`, one command component per step (a parallel
component for a parallel job imported with one; other parallel and data_transfer jobs are
written inline), and the files under their keys (`code/<step>/...`, `data/...`), which are
already export paths.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import zipfile
from pathlib import Path

import yaml

from . import nesting
from .bindings import JOB_NAME, format_binding, literal_type
from .distribution import to_mapping as distribution_mapping
from .files import safe_key
from .model import (
    SECRET_TYPE,
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
    Settings,
    Step,
    TransferSettings,
    code_key,
)
from .parallel import parallel_fields, task_fields
from .sweep import sweep_from_json, sweep_to_json, sweep_yaml
from .transfer import endpoint_yaml

PIPELINE_SCHEMA = "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json"
COMPONENT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json"
PIPELINE_COMPONENT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json"
PARALLEL_COMPONENT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/parallelComponent.schema.json"
JSON_FORMAT = 1

# -- JSON ---------------------------------------------------------------------------------


def _binding_to_json(binding: object) -> object:
    if binding is None:
        return None
    if isinstance(binding, ParentInput):
        return {"parent_input": binding.name}
    if isinstance(binding, JobOutput):
        return {"job": binding.job, "output": binding.output}
    if isinstance(binding, DataPath):
        return {"data": {"type": binding.type, "key": binding.key}}
    return {"value": binding}


def _binding_from_json(d: object) -> object:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise ValueError(f"malformed binding {d!r}")
    if "parent_input" in d:
        return ParentInput(d["parent_input"])
    if "job" in d:
        return JobOutput(d["job"], d["output"])
    if "data" in d:
        return DataPath(type=d["data"]["type"], key=d["data"]["key"])
    return d["value"]


def _decl_to_json(decl: InputDecl) -> dict:
    d = {
        "type": decl.type,
        "default": decl.default,
        "optional": decl.optional,
        "description": decl.description,
        "enum": list(decl.enum) if decl.enum is not None else None,
        "data": _binding_to_json(decl.data)["data"] if decl.data is not None else None,  # type: ignore[index]
    }
    # Only when set, so versions saved before data assets keep their content hash.
    if decl.asset is not None:
        d["asset"] = decl.asset
    if decl.asset_kind:
        d["asset_kind"] = decl.asset_kind
    if decl.table:
        d["table"] = True
    # Only when set, so versions saved before bounds keep their content hash.
    if decl.min is not None:
        d["min"] = decl.min
    if decl.max is not None:
        d["max"] = decl.max
    return d


def _decl_from_json(d: dict) -> InputDecl:
    data = d.get("data")
    return InputDecl(
        type=d["type"],
        default=d.get("default"),
        optional=d.get("optional", False),
        description=d.get("description", ""),
        enum=list(d["enum"]) if d.get("enum") is not None else None,
        data=DataPath(type=data["type"], key=data["key"]) if data else None,
        asset=d.get("asset"),
        asset_kind=d.get("asset_kind", ""),
        table=d.get("table", False),
        min=d.get("min"),
        max=d.get("max"),
    )


def _out_to_json(out: OutputDecl) -> dict:
    d = {"type": out.type, "description": out.description}
    # Only when set, so versions saved before data assets keep their content hash.
    if out.asset_name:
        d["asset_name"] = out.asset_name
    if out.asset_version:
        d["asset_version"] = out.asset_version
    if out.asset_kind:
        d["asset_kind"] = out.asset_kind
    if out.deploy:
        d["deploy"] = out.deploy
    return d


def _out_from_json(d: dict) -> OutputDecl:
    return OutputDecl(
        type=d.get("type", "uri_folder"),
        description=d.get("description", ""),
        asset_name=d.get("asset_name", ""),
        asset_version=d.get("asset_version", ""),
        asset_kind=d.get("asset_kind", ""),
        deploy=d.get("deploy", ""),
    )


def _parallel_to_json(settings: ParallelSettings) -> dict:
    d = dataclasses.asdict(settings)
    # Fields added later only when set, so parallel versions saved before them keep their hash.
    for key in ("partition_keys", "from_component", "bound", "files"):
        if not d[key]:
            del d[key]
    return d


def _step_to_json(step: Step) -> dict:
    return {
        "name": step.name,
        "command": step.command,
        "display_name": step.display_name,
        "description": step.description,
        "component_name": step.component_name,
        "component_version": step.component_version,
        "input_decls": {k: _decl_to_json(v) for k, v in step.input_decls.items()},
        "output_decls": {k: _out_to_json(v) for k, v in step.output_decls.items()},
        "inputs": {k: _binding_to_json(v) for k, v in step.inputs.items()},
        "outputs": {k: ({"parent_output": v.name} if v is not None else None) for k, v in step.outputs.items()},
        "has_code": step.has_code,
        "environment": copy.deepcopy(step.environment),
        "compute": step.compute,
        "environment_variables": dict(step.environment_variables),
        "timeout_s": step.timeout_s,
        "max_retries": step.max_retries,
        "is_deterministic": step.is_deterministic,
        # Only for parallel jobs, so versions saved before them keep their content hash.
        **({"parallel": _parallel_to_json(step.parallel)} if step.parallel is not None else {}),
        **({"transfer": dataclasses.asdict(step.transfer)} if step.transfer is not None else {}),
        # Only for distributed steps, for the same reason.
        **(
            {"distribution": {"type": step.distribution.type, "processes": step.distribution.processes}}
            if step.distribution
            else {}
        ),
        # Only for sweeps, for the same reason.
        **({"sweep": sweep_to_json(step.sweep)} if step.sweep is not None else {}),
    }


def _step_from_json(d: dict) -> Step:
    return Step(
        name=d["name"],
        command=d["command"],
        display_name=d.get("display_name", ""),
        description=d.get("description", ""),
        component_name=d.get("component_name", ""),
        component_version=d.get("component_version", ""),
        input_decls={k: _decl_from_json(v) for k, v in d.get("input_decls", {}).items()},
        output_decls={k: _out_from_json(v) for k, v in d.get("output_decls", {}).items()},
        inputs={k: _binding_from_json(v) for k, v in d.get("inputs", {}).items()},  # type: ignore[misc]
        outputs={k: (ParentOutputRef(v["parent_output"]) if v else None) for k, v in d.get("outputs", {}).items()},
        has_code=d.get("has_code", False),
        environment=copy.deepcopy(d.get("environment", "")),
        compute=d.get("compute", ""),
        environment_variables=dict(d.get("environment_variables", {})),
        timeout_s=d.get("timeout_s"),
        max_retries=d.get("max_retries", 0),
        is_deterministic=d.get("is_deterministic", True),
        parallel=ParallelSettings(**d["parallel"]) if d.get("parallel") else None,
        transfer=TransferSettings(**d["transfer"]) if d.get("transfer") else None,
        distribution=Distribution(**d["distribution"]) if d.get("distribution") else None,
        sweep=sweep_from_json(d["sweep"]) if d.get("sweep") else None,
    )


def _group_to_json(g: ComponentGroup) -> dict:
    return {
        "name": g.name,
        "job": g.job,
        "parent": g.parent,
        "display_name": g.display_name,
        "description": g.description,
        "component_name": g.component_name,
        "component_version": g.component_version,
        "input_decls": {k: _decl_to_json(v) for k, v in g.input_decls.items()},
        "output_decls": {k: _out_to_json(v) for k, v in g.output_decls.items()},
        "inputs": {k: _binding_to_json(v) for k, v in g.inputs.items()},
        "outputs": {k: v.name for k, v in g.outputs.items()},
        "compute": g.compute,
        "jobs": list(g.jobs),
        "job_inputs": {j: {k: _binding_to_json(v) for k, v in b.items()} for j, b in g.job_inputs.items()},
        "job_outputs": {j: {k: v.name for k, v in b.items()} for j, b in g.job_outputs.items()},
        "job_compute": dict(g.job_compute),
        # Only when set, so versions saved before parallel jobs could nest keep their hash.
        **({"job_parallel": {j: dict(b) for j, b in g.job_parallel.items()}} if g.job_parallel else {}),
    }


def _group_from_json(d: dict) -> ComponentGroup:
    return ComponentGroup(
        name=d["name"],
        job=d["job"],
        parent=d.get("parent", ""),
        display_name=d.get("display_name", ""),
        description=d.get("description", ""),
        component_name=d.get("component_name", ""),
        component_version=d.get("component_version", ""),
        input_decls={k: _decl_from_json(v) for k, v in d.get("input_decls", {}).items()},
        output_decls={k: _out_from_json(v) for k, v in d.get("output_decls", {}).items()},
        inputs={k: _binding_from_json(v) for k, v in d.get("inputs", {}).items()},  # type: ignore[misc]
        outputs={k: ParentOutputRef(v) for k, v in d.get("outputs", {}).items()},
        compute=d.get("compute", ""),
        jobs=list(d.get("jobs", [])),
        job_inputs={
            j: {k: _binding_from_json(v) for k, v in b.items()}  # type: ignore[misc]
            for j, b in d.get("job_inputs", {}).items()
        },
        job_outputs={j: {k: ParentOutputRef(v) for k, v in b.items()} for j, b in d.get("job_outputs", {}).items()},
        job_compute=dict(d.get("job_compute", {})),
        job_parallel={j: dict(b) for j, b in d.get("job_parallel", {}).items()},
    )


def to_json(p: Pipeline) -> dict:
    """Everything but `files`, as JSON-serializable data (bindings as tagged objects)."""
    s = p.settings
    return {
        "format": JSON_FORMAT,
        "name": p.name,
        "display_name": p.display_name,
        "description": p.description,
        "experiment_name": p.experiment_name,
        "tags": dict(p.tags),
        "settings": {
            "default_compute": s.default_compute,
            "continue_on_step_failure": s.continue_on_step_failure,
            "force_rerun": s.force_rerun,
            "default_datastore": s.default_datastore,
        },
        "inputs": {k: _decl_to_json(v) for k, v in p.inputs.items()},
        "outputs": {k: _out_to_json(v) for k, v in p.outputs.items()},
        "jobs": {k: _step_to_json(v) for k, v in p.jobs.items()},
        # Only when there are some, so versions saved before pipeline components keep their hash.
        **({"groups": {k: _group_to_json(v) for k, v in p.groups.items()}} if p.groups else {}),
    }


def from_json(d: dict, files: dict[str, bytes] | None = None) -> Pipeline:
    """The Pipeline `to_json` described; raises ValueError when `d` is not such a description."""
    try:
        if d.get("format", JSON_FORMAT) != JSON_FORMAT:
            raise ValueError(f"unknown pipeline JSON format {d.get('format')!r}")
        s = d.get("settings", {})
        return Pipeline(
            name=d["name"],
            display_name=d.get("display_name", ""),
            description=d.get("description", ""),
            experiment_name=d.get("experiment_name", ""),
            tags=dict(d.get("tags", {})),
            settings=Settings(
                default_compute=s.get("default_compute", ""),
                continue_on_step_failure=s.get("continue_on_step_failure", False),
                force_rerun=s.get("force_rerun", False),
                default_datastore=s.get("default_datastore", ""),
            ),
            inputs={k: _decl_from_json(v) for k, v in d.get("inputs", {}).items()},
            outputs={k: _out_from_json(v) for k, v in d.get("outputs", {}).items()},
            jobs={k: _step_from_json(v) for k, v in d.get("jobs", {}).items()},
            files=dict(files or {}),
            groups={k: _group_from_json(v) for k, v in d.get("groups", {}).items()},
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed pipeline JSON: {exc!r}")


# -- YAML export --------------------------------------------------------------------------


_LINE_BREAKS = "\x85\u2028\u2029\r"


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line commands read best as literal blocks; PyYAML falls back to quoting when it must.
    style = "|" if "\n" in value else None
    if any(ch in value for ch in _LINE_BREAKS):
        # YAML 1.1 line breaks that PyYAML would emit raw and read back as newlines: escape them.
        style = '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_multi_representer(dict, lambda d, v: d.represent_dict(dict(v)))


def _yaml(doc: dict) -> bytes:
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    return text.encode("utf-8")


def _data_path(p: Pipeline, data: DataPath, up: str = "./") -> str:
    """Export path of a data input from pipeline.yml (`up`: from a component file): the folder, or its one file."""
    if data.type == "uri_file":
        names = sorted(k for k in p.files if k.startswith(data.key + "/"))
        if names:
            return up + names[0]
    return up + data.key


def _input_yaml(decl: InputDecl) -> dict:
    d: dict = {"type": "mltable" if decl.table else decl.type}
    # Validation refuses a secret's default; an export never writes one even so.
    if decl.default is not None and decl.type != SECRET_TYPE:
        d["default"] = decl.default
    if decl.optional:
        d["optional"] = True
    if decl.description:
        d["description"] = decl.description
    if decl.enum is not None:
        d["enum"] = list(decl.enum)
    if decl.min is not None:
        d["min"] = decl.min
    if decl.max is not None:
        d["max"] = decl.max
    return d


def _output_yaml(out: OutputDecl) -> dict:
    d: dict = {"type": out.asset_kind or out.type}
    if out.description:
        d["description"] = out.description
    if out.asset_name:
        d["name"] = out.asset_name
    if out.asset_version:
        d["version"] = out.asset_version
    if out.deploy:
        d["deploy"] = out.deploy
    return d


def _pipeline_input_yaml(p: Pipeline, decl: InputDecl) -> object:
    if decl.data is not None or decl.asset is not None:
        path = decl.asset if decl.asset is not None else _data_path(p, decl.data)  # type: ignore[arg-type]
        d = {"type": decl.asset_kind or ("mltable" if decl.table else decl.type), "path": path}
        if decl.optional:
            d["optional"] = True
        if decl.description:
            d["description"] = decl.description
        return d
    plain = not decl.optional and not decl.description and decl.enum is None and decl.min is None and decl.max is None
    if plain and decl.default is not None and literal_type(decl.default) == decl.type:
        return decl.default
    return _input_yaml(decl)


def _binding_yaml(p: Pipeline, binding: object, up: str = "./", *, table: bool = False) -> object:
    """`table`: the input it binds is read as a table (InputDecl.table), so its files are an mltable."""
    if isinstance(binding, ParentInput | JobOutput):
        return format_binding(binding)
    if isinstance(binding, DataPath):
        return {"type": "mltable" if table else binding.type, "path": _data_path(p, binding, up)}
    return binding


def _is_table(step: Step, name: str) -> bool:
    decl = step.input_decls.get(name)
    return decl is not None and decl.table


def _parallel_job_yaml(
    p: Pipeline, step: Step, *, written: tuple[dict, dict, str] | None = None, bound: dict | None = None, up: str = "./"
) -> dict:
    """A parallel job written inline, as it was imported: its settings and task in the job.
    Inside a pipeline component, `written` (inputs, outputs, compute) and `bound` (settings bound
    to the component's inputs) are as the component file writes them, and paths go `up` to code/."""
    assert step.parallel is not None
    settings = step.parallel if bound is None else dataclasses.replace(step.parallel, bound=dict(bound))
    bound_inputs, bound_outputs, compute = written or (step.inputs, step.outputs, step.compute)
    j: dict = {"type": "parallel"}
    for key in ("display_name", "description"):
        if getattr(step, key):
            j[key] = getattr(step, key)
    if compute:
        j["compute"] = compute
    if not step.is_deterministic:
        j["is_deterministic"] = False
    j.update(parallel_fields(settings))
    task: dict = task_fields(settings)
    if step.has_code:
        task["code"] = f"{up}{code_key(step.name)}"
    if step.environment:
        task["environment"] = copy.deepcopy(step.environment)
    if step.environment_variables:
        task["environment_variables"] = dict(step.environment_variables)
    j["task"] = task
    # A top-level job reads an inner step's output through its component's outputs.
    inputs = {
        k: _binding_yaml(
            p,
            nesting.outward(p, v) if isinstance(v, JobOutput) and written is None else v,
            up,
            table=_is_table(step, k),
        )
        for k, v in bound_inputs.items()
        if v is not None
    }
    if inputs:
        j["inputs"] = inputs
    outputs = {}
    for name, decl in step.output_decls.items():
        out = _output_yaml(decl)
        ref = bound_outputs.get(name)
        if ref is not None:
            out["path"] = format_binding(ref)
        outputs[name] = out
    if outputs:
        j["outputs"] = outputs
    return j


def _transfer_job_yaml(p: Pipeline, step: Step) -> dict:
    """A data_transfer job is written inline: its component is Stepwise's worker (or Azure ML's built-in one)."""
    assert step.transfer is not None
    j: dict = {"type": "data_transfer"}
    for key in ("display_name", "description", "compute"):
        if getattr(step, key):
            j[key] = getattr(step, key)
    if step.is_deterministic != (step.transfer.task == "copy_data"):
        j["is_deterministic"] = step.is_deterministic
    j.update(endpoint_yaml(step.transfer))
    if step.timeout_s is not None:
        j["limits"] = {"timeout": step.timeout_s}
    if step.max_retries:
        j["retry_settings"] = {"max_retries": step.max_retries}
    inputs = {k: _binding_yaml(p, v, table=_is_table(step, k)) for k, v in step.inputs.items() if v is not None}
    if inputs:
        j["inputs"] = inputs
    outputs = {}
    for name, decl in step.output_decls.items():
        out = _output_yaml(decl)
        ref = step.outputs.get(name)
        if ref is not None:
            out["path"] = format_binding(ref)
        outputs[name] = out
    if outputs:
        j["outputs"] = outputs
    return j


def _job_yaml(
    p: Pipeline,
    step: Step,
    *,
    component: str = "",
    written: tuple[dict, dict, str] | None = None,
    bound: dict[str, str] | None = None,
    up: str = "./",
) -> dict:
    """A command job, or a parallel one with its component; `written`: its inputs, outputs and
    compute as its pipeline component writes them, `bound`: its run settings bound to them."""
    if step.parallel is not None and not step.parallel.from_component:
        return _parallel_job_yaml(p, step, written=written, bound=bound, up=up)
    if step.transfer is not None:
        return _transfer_job_yaml(p, step)
    kind = "parallel" if step.parallel is not None else "command"
    j: dict = {"type": kind, "component": component or f"./components/{step.name}.yml"}
    if step.sweep is not None:
        j = {"type": "sweep", "trial": j["component"], **sweep_yaml(step.sweep)}
    bound_inputs, bound_outputs, compute = written or (step.inputs, step.outputs, step.compute)
    if written is None:
        # A top-level job reads an inner step's output through its component's outputs.
        bound_inputs = {k: nesting.outward(p, v) if isinstance(v, JobOutput) else v for k, v in bound_inputs.items()}
    if step.display_name:
        j["display_name"] = step.display_name
    if step.description:
        j["description"] = step.description
    if compute:
        j["compute"] = compute
    if step.environment_variables:
        j["environment_variables"] = dict(step.environment_variables)
    # A sweep's `limits` are its own (written above): a command step's timeout has no place there.
    if step.timeout_s is not None and step.sweep is None:
        j["limits"] = {"timeout": step.timeout_s}
    # A parallel job's retry_settings are its mini-batches' (in its component), not the step's.
    if step.max_retries and step.parallel is None:
        j["retry_settings"] = {"max_retries": step.max_retries}
    if step.parallel is not None:
        settings = step.parallel if bound is None else dataclasses.replace(step.parallel, bound=dict(bound))
        j.update(_bound_settings_yaml(settings))
    inputs = {k: _binding_yaml(p, v, up, table=_is_table(step, k)) for k, v in bound_inputs.items() if v is not None}
    if inputs:
        j["inputs"] = inputs
    outputs = {k: format_binding(v) for k, v in bound_outputs.items() if v is not None}
    if outputs:
        j["outputs"] = outputs
    return j


def _bound_settings_yaml(settings: ParallelSettings) -> dict:
    """The settings a parallel job binds to inputs, written on the job (its component file holds
    values only). A mapping is written whole, as the job's mapping replaces the component's."""
    tops = {setting.split(".")[0] for setting in settings.bound}
    return {key: value for key, value in parallel_fields(settings).items() if key in tops}


def _group_job_yaml(g: ComponentGroup, component: str) -> dict:
    j: dict = {"type": "pipeline", "component": component}
    if g.compute:
        j["compute"] = g.compute
    inputs = {k: format_binding(v) if isinstance(v, ParentInput | JobOutput) else v for k, v in g.inputs.items()}
    if inputs:
        j["inputs"] = inputs
    if g.outputs:
        j["outputs"] = {k: format_binding(v) for k, v in g.outputs.items()}
    return j


def _pipeline_component_yaml(p: Pipeline, g: ComponentGroup) -> dict:
    """`components/<group>.yml`; its jobs' component files sit beside it."""
    c: dict = {
        "$schema": PIPELINE_COMPONENT_SCHEMA,
        "type": "pipeline",
        "name": g.component_name or g.job,
        "version": g.component_version or "1",
    }
    if g.display_name:
        c["display_name"] = g.display_name
    if g.description:
        c["description"] = g.description
    if g.input_decls:
        c["inputs"] = {k: _input_yaml(v) for k, v in g.input_decls.items()}
    if g.output_decls:
        c["outputs"] = {k: _output_yaml(v) for k, v in g.output_decls.items()}
    jobs: dict = {}
    for local in g.jobs:
        name = nesting.qualify(g.name, local)
        if name in p.groups:
            jobs[local] = _group_job_yaml(p.groups[name], f"./{name}.yml")
        elif name in p.jobs:
            written = (g.job_inputs.get(local, {}), g.job_outputs.get(local, {}), g.job_compute.get(local, ""))
            bound = g.job_parallel.get(local)
            jobs[local] = _job_yaml(p, p.jobs[name], component=f"./{name}.yml", written=written, bound=bound, up="../")
    c["jobs"] = jobs
    return c


def _top_level_jobs(p: Pipeline) -> dict:
    """The pipeline's own jobs in the order their steps run in: steps, and components by their outermost group."""
    owner = {nesting.qualify(name, local): name for name, g in p.groups.items() for local in g.jobs}
    jobs: dict = {}
    for name in [*p.jobs, *p.groups]:
        while name in owner:
            name = owner[name]
        if name in jobs:
            continue
        if name in p.groups:
            jobs[name] = _group_job_yaml(p.groups[name], f"./components/{name}.yml")
        else:
            jobs[name] = _job_yaml(p, p.jobs[name])
    return jobs


def _component_yaml(step: Step) -> dict:
    c: dict = {
        "$schema": COMPONENT_SCHEMA,
        "type": "command",
        "name": step.component_name or step.name,
        "version": step.component_version or "1",
    }
    if step.display_name:
        c["display_name"] = step.display_name
    if step.description:
        c["description"] = step.description
    if not step.is_deterministic:
        c["is_deterministic"] = False
    if step.input_decls:
        c["inputs"] = {k: _input_yaml(v) for k, v in step.input_decls.items()}
    if step.output_decls:
        c["outputs"] = {k: _output_yaml(v) for k, v in step.output_decls.items()}
    if step.has_code:
        c["code"] = f"../{code_key(step.name)}"
    if step.environment:
        c["environment"] = copy.deepcopy(step.environment)
    if step.distribution:
        c["distribution"] = distribution_mapping(step.distribution)
    c["command"] = step.command
    return c


def _parallel_component_yaml(step: Step) -> dict:
    """`components/<step>.yml` of a parallel job that came with a component: every setting in
    effect is written here, so the job only binds it and the import reads the same settings back."""
    assert step.parallel is not None
    c: dict = {
        "$schema": PARALLEL_COMPONENT_SCHEMA,
        "type": "parallel",
        "name": step.component_name or step.name,
        "version": step.component_version or "1",
    }
    if step.display_name:
        c["display_name"] = step.display_name
    if step.description:
        c["description"] = step.description
    if not step.is_deterministic:
        c["is_deterministic"] = False
    if step.input_decls:
        c["inputs"] = {k: _input_yaml(v) for k, v in step.input_decls.items()}
    if step.output_decls:
        c["outputs"] = {k: _output_yaml(v) for k, v in step.output_decls.items()}
    c.update(parallel_fields(step.parallel, bound=False))
    task: dict = task_fields(step.parallel)
    if step.has_code:
        task["code"] = f"../{code_key(step.name)}"
    if step.environment:
        task["environment"] = copy.deepcopy(step.environment)
    c["task"] = task
    return c


def component_mapping(step: Step) -> dict:
    """The step as a command (or parallel) component's mapping, without `$schema` and `code`
    (a registered component's body; its code travels apart)."""
    if step.parallel is not None:
        c = _parallel_component_yaml(step)
        c["task"].pop("code", None)
        # A component file's task.environment_variables (the step keeps them merged with the job's).
        if step.environment_variables:
            c["task"]["environment_variables"] = dict(step.environment_variables)
    else:
        c = _component_yaml(step)
        c.pop("code", None)
    c.pop("$schema", None)
    return c


def _pipeline_yaml(p: Pipeline) -> dict:
    doc: dict = {"$schema": PIPELINE_SCHEMA, "type": "pipeline", "name": p.name}
    for key in ("display_name", "description", "experiment_name"):
        if getattr(p, key):
            doc[key] = getattr(p, key)
    if p.tags:
        doc["tags"] = dict(p.tags)
    defaults = Settings()
    settings = {
        key: getattr(p.settings, key)
        for key in ("default_compute", "continue_on_step_failure", "force_rerun", "default_datastore")
        if getattr(p.settings, key) != getattr(defaults, key)
    }
    if settings:
        doc["settings"] = settings
    if p.inputs:
        doc["inputs"] = {k: _pipeline_input_yaml(p, v) for k, v in p.inputs.items()}
    if p.outputs:
        doc["outputs"] = {k: _output_yaml(v) for k, v in p.outputs.items()}
    doc["jobs"] = _top_level_jobs(p)
    return doc


def _check_exportable(p: Pipeline) -> None:
    for name in [*p.jobs, *p.groups]:
        if not JOB_NAME.fullmatch(name):
            raise ValueError(f"cannot export job '{name}': invalid job name")
    for key in p.files:
        if not safe_key(key) or not key.startswith(("code/", "data/")):
            raise ValueError(f"cannot export file '{key}': not under code/ or data/")


def yaml_files(p: Pipeline) -> dict[str, bytes]:
    """The export's YAML files (`pipeline.yml`, then `components/<step>.yml`), without the name checks."""
    out: dict[str, bytes] = {"pipeline.yml": _yaml(_pipeline_yaml(p))}
    for name, step in p.jobs.items():
        if step.parallel is not None:
            if step.parallel.from_component:
                out[f"components/{name}.yml"] = _yaml(_parallel_component_yaml(step))
        elif step.transfer is None:
            out[f"components/{name}.yml"] = _yaml(_component_yaml(step))
    for name, group in p.groups.items():
        out[f"components/{name}.yml"] = _yaml(_pipeline_component_yaml(p, group))
    return out


def export_files(p: Pipeline) -> tuple[dict[str, bytes], list[str]]:
    """The export as (relative path -> bytes, empty folders to create); raises ValueError on unsafe names."""
    _check_exportable(p)
    out = yaml_files(p)
    out.update(p.files)
    # Folders that must exist even with no files, so the export loads back the same.
    folders = [code_key(name) for name, step in p.jobs.items() if step.has_code]
    folders += [decl.data.key for decl in p.inputs.values() if decl.data is not None]
    folders += [b.key for step in p.jobs.values() for b in step.inputs.values() if isinstance(b, DataPath)]
    empty = sorted({f for f in folders if safe_key(f) and not any(k.startswith(f + "/") for k in p.files)})
    return out, empty


def dump_folder(p: Pipeline, dest: Path) -> None:
    """Write the export into `dest` (created if missing)."""
    files, empty = export_files(p)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for folder in empty:
        (dest / folder).mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def to_zip_bytes(p: Pipeline) -> bytes:
    """The export as a zip (deterministic: fixed timestamps, sorted entries)."""
    files, empty = export_files(p)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for folder in empty:
            zf.writestr(zipfile.ZipInfo(folder + "/", date_time=(1980, 1, 1, 0, 0, 0)), b"")
        for rel in sorted(files):
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[rel])
    return buffer.getvalue()
