"""The pipeline spec: Azure ML CLI v2 pipeline YAML in and out, as typed pure data.

Pure Python, no Django: limits come in as parameters.
"""

from __future__ import annotations

from .command import EnvRef, command_references, render_command, secret_env_var
from .loader import load_component, load_pipeline, parse_text
from .model import (
    DATA_TYPES,
    INPUT_TYPES,
    LITERAL_TYPES,
    OUTPUT_TYPES,
    SECRET_TYPE,
    Binding,
    DataPath,
    Distribution,
    InputDecl,
    JobOutput,
    OutputDecl,
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
from .reader_base import ComponentLookupError, ComponentResolver, DataLookupError, DataResolver
from .serialize import component_mapping, dump_folder, export_files, from_json, to_json, to_zip_bytes, yaml_files
from .validate import validate_pipeline

__all__ = [
    "DATA_TYPES",
    "INPUT_TYPES",
    "LITERAL_TYPES",
    "OUTPUT_TYPES",
    "SECRET_TYPE",
    "Binding",
    "ComponentLookupError",
    "DataLookupError",
    "DataResolver",
    "ComponentResolver",
    "DataPath",
    "Distribution",
    "EnvRef",
    "InputDecl",
    "JobOutput",
    "OutputDecl",
    "ParentInput",
    "ParentOutputRef",
    "Pipeline",
    "Problem",
    "Settings",
    "SpecError",
    "Step",
    "code_key",
    "command_references",
    "component_mapping",
    "data_key",
    "dump_folder",
    "export_files",
    "from_json",
    "load_component",
    "load_pipeline",
    "parse_text",
    "render_command",
    "secret_env_var",
    "to_json",
    "to_zip_bytes",
    "validate_pipeline",
    "yaml_files",
]
