"""Binding expressions (`${{parent...}}`), literal types and the checks shared by loader and validator."""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass

from .model import DATA_TYPES, LITERAL_TYPES, SECRET_TYPE, JobOutput, ParentInput, ParentOutputRef, Pipeline

# Azure ML's rule for pipeline node names: a lower-case Python identifier.
JOB_NAME = re.compile(r"[a-z_][a-z0-9_]*")
MAX_NAME_LENGTH = 255
# Input, output and parameter names: identifiers (Azure ML accepts upper case here).
PORT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_WORD = r"([A-Za-z0-9_\-]+)"
_PARENT_INPUT = re.compile(rf"\$\{{\{{\s*parent\.inputs\.{_WORD}\s*\}}\}}")
_PARENT_OUTPUT = re.compile(rf"\$\{{\{{\s*parent\.outputs\.{_WORD}\s*\}}\}}")
_JOB_OUTPUT = re.compile(rf"\$\{{\{{\s*parent\.jobs\.{_WORD}\.outputs\.{_WORD}\s*\}}\}}")

# What an `integer` input may hold: a signed 64-bit integer, as every database column, JSON
# reader and program argument parser that a value passes through can hold it.
INTEGER_MIN, INTEGER_MAX = -(2**63), 2**63 - 1
# A step's `limits.timeout` and a run's timeout: a year at most (a database integer holds 68).
MAX_TIMEOUT_S = 366 * 24 * 3600
# `retry_settings.max_retries`: retries beyond this retry a step that will not succeed.
MAX_RETRIES = 100

# Folder-like Azure ML asset types that Stepwise handles as plain folders.
FOLDER_ALIASES = ("mlflow_model", "custom_model", "mltable", "triton_model")
# Of those, the types whose `azureml:NAME:VERSION` path names a registered model, not data.
MODEL_TYPES = ("mlflow_model", "custom_model")

_REMOTE_PREFIXES = ("azureml:", "http:", "https:", "wasb:", "wasbs:", "abfs:", "abfss:", "adl:", "s3:", "gs:", "git+")


_ASSET_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}"
_ASSET_VERSION = r"[A-Za-z0-9_.\-]{1,64}"
_ASSET_REF = re.compile(rf"azureml:(?P<name>{_ASSET_NAME})(?:@(?P<label>latest)|:(?P<version>{_ASSET_VERSION}))")
# What a data asset's name and version may hold (Stepwise's rule; Azure ML's is close to it).
ASSET_PART = {"name": re.compile(_ASSET_NAME), "version": re.compile(_ASSET_VERSION)}


def is_asset_ref(path: str) -> bool:
    """A registered data asset's reference (`azureml:NAME...`), not a datastore URI (`azureml://...`)."""
    return path.startswith("azureml:") and not path.startswith("azureml://")


def parse_asset_ref(ref: str) -> tuple[str, str | None] | None:
    """`azureml:NAME:VERSION` -> (NAME, VERSION), `azureml:NAME@latest` -> (NAME, None), else None."""
    m = _ASSET_REF.fullmatch(ref.strip())
    if m is None:
        return None
    return m.group("name"), m.group("version")


# Azure ML's datastore URIs: `azureml://datastores/STORE/paths/PATH`, or the long form that
# names the subscription, resource group and workspace first (Stepwise has one workspace).
_DATASTORE_URI = re.compile(
    r"azureml://(?:subscriptions/[^/]+/resource[gG]roups/[^/]+/(?:providers/Microsoft\.MachineLearningServices/)?"
    rf"workspaces/[^/]+/)?datastores/(?P<store>{_ASSET_NAME})/paths/(?P<path>.*)"
)


# A file of an Azure blob container (`wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH`, as
# Azure ML's samples name public datasets): read over https, anonymously, as a public container
# serves it; a private one answers 404, which the run's error names.
_BLOB_URI = re.compile(
    r"wasbs?://(?P<container>[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])?)@(?P<account>[a-z0-9]{3,24})"
    r"\.blob\.core\.windows\.net/(?P<path>.+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RemoteRef:
    """A data input read from outside the pipeline's files: `store` and `path` for a datastore
    URI, `url` for a web address. Resolved (read and hashed) when a run is created."""

    store: str = ""
    path: str = ""
    url: str = ""


def parse_remote_ref(ref: str) -> RemoteRef | None:
    """A datastore URI, an http(s) address or an Azure blob's wasbs:// address as a RemoteRef;
    None for anything else."""
    text = ref.strip()
    if m := _DATASTORE_URI.fullmatch(text):
        path = m.group("path").strip("/")
        return RemoteRef(store=m.group("store"), path=path) if path else None
    if text.lower().startswith(("https://", "http://")) and len(text) > len("https://"):
        return RemoteRef(url=text)
    if m := _BLOB_URI.fullmatch(text):
        account, container = m.group("account").lower(), m.group("container").lower()
        return RemoteRef(url=f"https://{account}.blob.core.windows.net/{container}/{m.group('path')}")
    return None


def is_run_resolved(ref: str) -> bool:
    """A data reference that a run resolves when it is created (a registered asset or a remote path)."""
    return parse_asset_ref(ref) is not None or parse_remote_ref(ref) is not None


def hoisted_input(job: str, name: str, taken: Collection[str]) -> tuple[str, str]:
    """The pipeline input that data given to a job by reference becomes: its name (JOB_INPUT, made
    unique among `taken`) and its description. The loader and the SDK both name it here, so a
    pipeline written in YAML and the same one built in Python get the same content hash."""
    hoisted, number = f"{job}_{name}", 2
    while hoisted in taken:
        hoisted, number = f"{job}_{name}_{number}", number + 1
    return hoisted, f"the data job {job} reads as its input {name}"


def parse_expression(text: str) -> ParentInput | JobOutput | ParentOutputRef | None:
    """The binding a whole-value `${{...}}` string denotes, or None when it is not one."""
    text = text.strip()
    if m := _PARENT_INPUT.fullmatch(text):
        return ParentInput(m.group(1))
    if m := _JOB_OUTPUT.fullmatch(text):
        return JobOutput(m.group(1), m.group(2))
    if m := _PARENT_OUTPUT.fullmatch(text):
        return ParentOutputRef(m.group(1))
    return None


def has_expression(text: str) -> bool:
    return "${{" in text


def format_binding(binding: ParentInput | JobOutput | ParentOutputRef) -> str:
    if isinstance(binding, ParentInput):
        return f"${{{{parent.inputs.{binding.name}}}}}"
    if isinstance(binding, JobOutput):
        return f"${{{{parent.jobs.{binding.job}.outputs.{binding.output}}}}}"
    return f"${{{{parent.outputs.{binding.name}}}}}"


def literal_type(value: object) -> str | None:
    """The input type a YAML scalar implies (bool before int: bool is an int in Python)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def range_error(value: object, minimum: int | float | None, maximum: int | float | None) -> str | None:
    """Why a number falls outside an input's inclusive `min`/`max`, or None (also for a non-number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if minimum is not None and value < minimum:
        return f"{value} is below the minimum {minimum}"
    if maximum is not None and value > maximum:
        return f"{value} is above the maximum {maximum}"
    return None


def input_range_error(p: Pipeline, name: str, value: object) -> str | None:
    """Why `value`, given for pipeline input `name` when a run starts, falls outside that input's
    `min`/`max` or those of a job input bound to it (where Azure ML would fail the job), or None."""
    decl = p.inputs.get(name)
    if decl is not None and (error := range_error(value, decl.min, decl.max)):
        return error
    # Steps hold their bindings resolved, a pipeline component's inner ones too; a component job
    # itself binds the pipeline's inputs only at the top level (a nested one binds its parent's).
    jobs = [*p.jobs.values(), *(g for g in p.groups.values() if not g.parent)]
    for job in jobs:
        for input_name, binding in job.inputs.items():
            target = job.input_decls.get(input_name)
            if binding != ParentInput(name) or target is None:
                continue
            if error := range_error(value, target.min, target.max):
                return f"{error} of job '{job.name}' input '{input_name}'"
    return None


def literal_error(
    value: object,
    type_: str,
    enum: list[str] | None = None,
    *,
    minimum: int | float | None = None,
    maximum: int | float | None = None,
) -> str | None:
    """Why `value` cannot be a value of input type `type_` (within `enum`, `minimum` and
    `maximum` when given), or None when it can."""
    if type_ == SECRET_TYPE:
        # Never echo the value: whoever wrote it in the YAML meant it to stay secret.
        return (
            "a secret cannot be written in the pipeline: bind a secret pipeline input "
            "(${{parent.inputs.NAME}}) and give its value when the run starts"
        )
    if type_ in DATA_TYPES:
        return f"a {type_} input needs data ({{type: {type_}, path: ...}}), not the literal {value!r}"
    if type_ == "boolean" and not isinstance(value, bool):
        return f"expected a boolean (true/false), got {value!r}"
    if type_ == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {value!r}"
        if not INTEGER_MIN <= value <= INTEGER_MAX:
            return f"expected an integer from {INTEGER_MIN} to {INTEGER_MAX}, got {value}"
    if type_ == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
    if type_ == "string" and not isinstance(value, str):
        return f"expected a string, got {value!r}"
    if type_ not in LITERAL_TYPES:
        return f"unknown type '{type_}'"
    if enum is not None and value not in enum:
        return f"{value!r} is not one of the allowed values {enum}"
    return range_error(value, minimum, maximum)


def azureml_scalar(type_: str, value: object) -> object:
    """A YAML scalar given to a literal input, read as Azure ML reads it for that input's type.

    Azure ML sends every literal to the service as text (`str(value)`) and parses it back by
    the input's type: a string input gets Python's text of the value (`true` -> "True"), a
    boolean input takes "true"/"false" in any case, an integer input a whole number written
    as text, a number input any number written as text. A value that cannot be read is
    returned unchanged, for the validator to report with the job, input and value.
    """
    if isinstance(value, dict | list) or value is None:
        return value
    if type_ == "string":
        return value if isinstance(value, str) else str(value)
    if type_ == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return value
    if type_ == "integer":
        number = _number_or_text(value) if isinstance(value, str) else value
        # The SDK truncates 2.5 to 2 (`int(float(text))`); Stepwise refuses to lose the fraction.
        if isinstance(number, float) and number.is_integer():
            return int(number)
        return number if isinstance(number, int) and not isinstance(number, bool) else value
    if type_ == "number" and isinstance(value, str):
        number = _number_or_text(value)
        return number if not isinstance(number, float) or math.isfinite(number) else value
    return value


def _number_or_text(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


# `compute: serverless`: Azure ML's managed compute; here, the default compute target.
SERVERLESS_COMPUTE = "serverless"


def compute_input(compute: str) -> str | None:
    """The pipeline input a `compute: ${{parent.inputs.X}}` reads its name from, else None."""
    expr = parse_expression(compute) if has_expression(compute) else None
    return expr.name if isinstance(expr, ParentInput) else None


def compute_target_name(compute: str) -> str:
    """The target name a literal `compute` value asks for: `azureml:` dropped; "" for the default."""
    name = compute.strip().removeprefix("azureml:")
    return "" if name == SERVERLESS_COMPUTE else name


_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why `text` cannot reach a step's command line or the database, or None: NUL ends a C
    string (and PostgreSQL refuses it), an unpaired surrogate cannot be encoded."""
    if "\x00" in text:
        return "holds a NUL character, which no command line can carry"
    if _SURROGATE.search(text):
        return "holds an unpaired surrogate (\\ud800-\\udfff), which is no character"
    return None


def json_problem(value: object, *, max_depth: int = 50) -> str | None:
    """Why a JSON value given for the spec (an environment object) cannot be stored and exported
    like YAML, or None: text that `text_problem` refuses, or deeper than YAML may nest."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"nested too deeply (more than {max_depth} levels)"
        if isinstance(item, str):
            if problem := text_problem(item):
                return f"a string {problem}"
        elif isinstance(item, float) and not math.isfinite(item):  # 1e400 parses to inf
            return f"{item} is not a finite number"
        elif isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return None


def coerce_literal(
    type_: str,
    value: object,
    *,
    enum: list[str] | None = None,
    minimum: int | float | None = None,
    maximum: int | float | None = None,
) -> object:
    """A literal typed in a form, on the command line or sent as JSON, as a value of input type
    `type_` (within `enum`, `minimum` and `maximum` when given): text is parsed, typed values
    pass through; ValueError names what is wrong."""
    if type_ == SECRET_TYPE and value is not None:
        # The messages never quote the value, unlike the others below.
        if not isinstance(value, str):
            raise ValueError("a secret is text")
        if value == "":
            raise ValueError("a secret cannot be empty")
        if problem := text_problem(value):
            raise ValueError(f"a secret {problem}")
        return value
    if value is None:
        return value
    if not isinstance(value, str):
        # A typed value (JSON from the API, the SDK): read as Azure ML reads it for the input's
        # type (5 for a string is "5", 3.0 for an integer is 3), then of that type or refused.
        value = azureml_scalar(type_, value)
        if error := literal_error(value, type_, enum, minimum=minimum, maximum=maximum):
            raise ValueError(error)
        return value
    if problem := text_problem(value):
        raise ValueError(problem)
    if type_ in ("integer", "number"):
        try:
            number = int(value.strip()) if type_ == "integer" else float(value.strip())
        except ValueError:
            # Python's own text ("invalid literal for int() with base 10") means nothing to a user.
            kind = "a whole number" if type_ == "integer" else "a number"
            raise ValueError(f"{value[:100]!r} is not {kind}") from None
        # Out of range or not finite: no database or JSON reader would hold it.
        if error := literal_error(number, type_, minimum=minimum, maximum=maximum):
            raise ValueError(error)
        return number
    if type_ == "boolean":
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"{value[:100]!r} is not a boolean (use true or false)")
    if enum and value not in enum:
        raise ValueError(f"{value[:100]!r} is not one of {', '.join(enum)}")
    return value


def types_compatible(source: str, target: str) -> bool:
    """Whether a value of type `source` may feed an input of type `target`."""
    if source == target:
        return True
    if SECRET_TYPE in (source, target):
        # A secret feeding a string would be rendered and shown in clear; a string feeding a
        # secret would be a secret written in the YAML.
        return False
    if source in DATA_TYPES or target in DATA_TYPES:
        # Azure ML lets a file feed a folder input and the reverse; data never feeds a literal.
        return source in DATA_TYPES and target in DATA_TYPES
    return target == "string" or (source == "integer" and target == "number")


def is_remote(path: str) -> bool:
    lowered = path.strip().lower()
    return lowered.startswith(_REMOTE_PREFIXES) or "://" in lowered
