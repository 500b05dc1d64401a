"""Jobs (command, sweep, parallel, data transfer), their bindings and outputs: the pipeline
reader's job part.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from . import bindings as b
from . import parallel as par
from . import parallel_bindings as pb
from . import transfer as tr
from .model import (
    DATA_TYPES,
    INPUT_TYPES,
    Binding,
    DataPath,
    InputDecl,
    JobOutput,
    OutputDecl,
    ParallelSettings,
    ParentInput,
    ParentOutputRef,
    Pipeline,
    Step,
    code_key,
    data_key,
)
from .reader_base import (
    _AZURE_ONLY_JOB_TYPES,
    _IGNORED_COMPONENT_KEYS,
    _IGNORED_JOB_KEYS,
    _NOT_YET_JOB_TYPES,
    MLTABLE_HINT,
    _Component,
    _Source,
    _Where,
)
from .reader_components import _ComponentReader
from .sweep import SWEEP_KEYS, parse_sweep


class _JobReader(_ComponentReader):
    """One job of each kind, its bindings, limits and outputs."""

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
            resources = raw.get("resources")
            overridden = frozenset(str(key) for key in resources) if isinstance(resources, dict) else frozenset()
            comp = self._component_ref(name, raw["component"], where, overridden=overridden)
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
            if (
                not self.scope
                and isinstance(raw_path, str)
                and (b.is_asset_ref(raw_path) or b.parse_remote_ref(raw_path))
            ):
                hoisted = self._hoist(job, name, value, where, path)
                return None if hoisted is None else (hoisted, hint or data_type)
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

    def _hoist(self, job: str, name: str, value: dict, where: _Where, path: tuple[str, ...]) -> ParentInput | None:
        """Data given to a job by a registered asset, a datastore path or a web address.

        Azure ML resolves it when the job is submitted; here a run does when it is created, as it
        does a pipeline input's: the job's input becomes a pipeline input of its own, named
        JOB_INPUT, which the job binds. Inside a pipeline component, `parent` is the component,
        whose data its pipeline job gives it: refused there, as before.
        """
        hoisted, description = b.hoisted_input(job, name, self.input_names | set(self.hoisted_inputs))
        given = {key: value[key] for key in ("type", "path") if key in value}
        decl = self._decl(hoisted, given, where, path, pipeline_level=True, job=job)
        if decl is None:
            return None
        decl.description = description
        self.hoisted_inputs[hoisted] = decl
        return ParentInput(hoisted)

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
