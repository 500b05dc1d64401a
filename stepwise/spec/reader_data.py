"""Input and output declarations, local data and code folders: the pipeline reader's data part."""

from __future__ import annotations

from pathlib import Path

from . import bindings as b
from .files import FilesError, read_file_into, read_folder, resolve_local
from .model import (
    DATA_TYPES,
    INPUT_TYPES,
    OUTPUT_TYPES,
    DataPath,
    InputDecl,
    OutputDecl,
    ParentInput,
    ParentOutputRef,
    code_key,
    data_key,
)
from .reader_base import (
    DataLookupError,
    _Reader,
    _Where,
)


class _DataReader(_Reader):
    """Declarations (`inputs`, `outputs`), local data and registered assets, code folders."""

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
            elif key in ("min", "max"):
                # Read as Azure ML reads a value of the input's type ("1" is 1); the validator
                # refuses a bound on an input that is not a number, or one the type cannot hold.
                bound = b.azureml_scalar("integer" if type_ == "integer" else "number", value)
                if isinstance(bound, bool) or not isinstance(bound, int | float):
                    self.error(f"{key} must be a number, got {value!r}", where, *path, key, job=job)
                else:
                    setattr(decl, key, bound)
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
                f"'{value}' is not supported: use a local path, azureml://datastores/STORE/paths/PATH, "
                "https:// or wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH",
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
