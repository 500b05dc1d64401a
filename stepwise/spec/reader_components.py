"""Components (files, registered, inline, pipeline components), environments and distribution:
the pipeline reader's component part.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import bindings as b
from .distribution import read_distribution, read_resources
from .environment import conda_env, conda_notes, image_only
from .files import FilesError, resolve_local
from .model import (
    Distribution,
    SpecError,
    code_key,
)
from .reader_base import (
    _AZURE_ONLY_JOB_TYPES,
    _IGNORED_COMPONENT_KEYS,
    _NOT_YET_JOB_TYPES,
    ComponentLookupError,
    _Component,
    _plain,
    _Source,
    _Where,
)
from .reader_data import _DataReader
from .yaml_safe import LineDict, load_yaml, read_text

# Azure ML takes a prompt flow (a `flow.dag.yaml`, a flex flow, or a run file naming a flow folder)
# as a parallel job's component; only its prompt flow runtime runs one.
_FLOW_FILES = ("flow.dag.yaml", "flow.dag.yml", "flow.flex.yaml", "flow.flex.yml")


def _is_prompt_flow(path: Path, tree: dict) -> bool:
    if path.name in _FLOW_FILES or "/promptflow/" in str(tree.get("$schema", "")):
        return True
    return "flow" in tree and "type" not in tree


def _prompt_flow_message(ref: str) -> str:
    return f"component '{ref}' is a prompt flow: prompt flows run only on Azure ML; Stepwise cannot run them"


class _ComponentReader(_DataReader):
    """Command and pipeline components, their environments and distribution."""

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

    def _component_ref(
        self, step: str, ref: object, where: _Where, *, overridden: frozenset[str] = frozenset()
    ) -> _Component | None:
        """`overridden`: the `resources` keys the job sets itself, so the component's are not read."""
        source = self._component_source(step, ref, where)
        if source is None:
            return None
        return self._component_dict(
            step, source.raw, source.where, base=source.base, code_files=source.code_files, overridden=overridden
        )

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
        if path.is_dir() and any((path / name).is_file() for name in _FLOW_FILES):
            self.error(_prompt_flow_message(ref), where, "component", job=step)
            return None
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
        if _is_prompt_flow(path, tree):
            # Read as a parallel or command component, a flow gives a page of errors about keys it
            # never meant to have: say once what it is instead.
            self.error(_prompt_flow_message(ref), where, "component", job=step)
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
        overridden: frozenset[str] = frozenset(),
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
        self._component_body(comp, step, raw, where, base=base, code_files=code_files, overridden=overridden)
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
        self,
        comp: _Component,
        step: str,
        raw: dict,
        where: _Where,
        *,
        base: Path | None,
        code_files: dict | None,
        overridden: frozenset[str] = frozenset(),
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
        comp.distribution = self._distribution(raw, where, step, overridden=overridden)
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

    def _distribution(
        self, raw: dict, where: _Where, step: str, *, overridden: frozenset[str] = frozenset()
    ) -> Distribution | None:
        """`distribution` and `resources.instance_count`: processes on this one host.

        `overridden` resources keys are the job's to set: a component's value for them is never
        used, so it is neither refused (instance_count 2 that the job lowers to 1) nor reported twice.
        """
        resources = self._mapping(raw, "resources", where, job=step)
        found = read_resources({key: value for key, value in resources.items() if key not in overridden})
        distribution, more = read_distribution(self._mapping(raw, "distribution", where, job=step))
        for severity, path, message in found + more:
            self._add(severity, message, where, path, step, ".".join(path))
        return distribution
