"""A `type: parallel` job's own fields: read from the YAML (the job's, over its parallel
component's), checked, and turned into the command that runs Stepwise's driver
(`stepwise.parallel.driver`), and back into YAML on export."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import PurePosixPath

from stepwise.parallel.batches import parse_mini_batch_size

from .model import InputDecl, ParallelSettings

TASK_TYPES = ("run_function",)
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DRIVER_MODULE = "stepwise.parallel.driver"
# What a parallel component holds and a job that uses it may set again: the job's value wins,
# key by key. A mapping (task, resources, retry_settings) is taken whole, not merged key by key:
# azure-ai-ml builds the node from the job's mapping, else the component's.
SETTINGS_KEYS = (
    "task",
    "input_data",
    "mini_batch_size",
    "partition_keys",
    "resources",
    "max_concurrency_per_instance",
    "error_threshold",
    "mini_batch_error_threshold",
    "retry_settings",
    "logging_level",
)
# Keys of a parallel job besides those every job has (inputs, outputs, compute, ...).
JOB_KEYS = frozenset(SETTINGS_KEYS) | {"environment_variables"}
# Keys of a parallel component file besides its settings.
COMPONENT_KEYS = frozenset({"$schema", "type", "name", "version", "display_name", "description", "is_deterministic"})
COMPONENT_KEYS |= {"inputs", "outputs", "tags"}
TASK_KEYS = frozenset({"type", "code", "entry_script", "program_arguments", "environment", "environment_variables"})
TASK_KEYS |= {"append_row_to"}
_INPUT_REF = re.compile(r"\$\{\{\s*inputs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_OUTPUT_REF = re.compile(r"\$\{\{\s*outputs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

# (message, path of the field) for each problem found.
Findings = list[tuple[str, tuple[str, ...]]]


def _whole_number(value: object, minimum: int, what: str, path: tuple[str, ...], found: Findings) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        found.append((f"{what} must be a whole number of at least {minimum}, got {value!r}", path))
        return None
    return value


def entry_script_error(entry_script: str) -> str | None:
    """Why `entry_script` is not a relative path inside the code folder, or None."""
    path = PurePosixPath(entry_script.replace("\\", "/"))
    if not entry_script.strip() or path.is_absolute() or ".." in path.parts or entry_script.startswith("~"):
        return f"entry_script '{entry_script}' must be a relative path inside the task's code folder"
    if path.suffix != ".py":
        return f"entry_script '{entry_script}' must be a Python file (.py)"
    return None


def merge_component(component: Mapping, job: Mapping) -> tuple[dict, frozenset[str]]:
    """The settings a job runs with: its own, else its component's; and the keys taken from the
    component (their problems are reported in the component's file)."""
    merged: dict = {}
    taken: set[str] = set()
    for key in SETTINGS_KEYS:
        if job.get(key) is not None:
            merged[key] = job[key]
        elif component.get(key) is not None:
            merged[key] = component[key]
            taken.add(key)
    return merged, frozenset(taken)


def _partition_keys(value: object, found: Findings) -> list[str]:
    path = ("partition_keys",)
    if not isinstance(value, list) or not value:
        found.append(("partition_keys must be a list of column names, e.g. [store, brand]", path))
        return []
    if not all(isinstance(key, str) and key.strip() for key in value):
        found.append((f"partition_keys must be column names (non-empty strings), got {value!r}", path))
        return []
    if len(set(value)) != len(value):
        found.append((f"partition_keys names a column twice: {value!r}", path))
        return []
    return [key.strip() for key in value]


def read_parallel(raw: dict, task: dict) -> tuple[ParallelSettings | None, Findings]:
    """The settings of a parallel job's mapping `raw` (its `task` given apart); problems by field path."""
    found: Findings = []
    settings = ParallelSettings(input_data="", entry_script="")

    task_type = task.get("type", "run_function")
    if task_type not in TASK_TYPES:
        found.append((f"unknown task type '{task_type}' (only {', '.join(TASK_TYPES)})", ("task", "type")))
    entry = task.get("entry_script")
    if entry is None:
        found.append(("entry_script is required: the Python file with init() and run(mini_batch)", ("task",)))
    elif not isinstance(entry, str):
        found.append(("entry_script must be a path", ("task", "entry_script")))
    else:
        error = entry_script_error(entry)
        if error:
            found.append((error, ("task", "entry_script")))
        settings.entry_script = str(PurePosixPath(entry.replace("\\", "/")))
    arguments = task.get("program_arguments", "")
    if not isinstance(arguments, str):
        found.append(("program_arguments must be a string", ("task", "program_arguments")))
    else:
        settings.program_arguments = arguments.strip()
    append = task.get("append_row_to")
    if append is not None:
        match = _OUTPUT_REF.fullmatch(append.strip()) if isinstance(append, str) else None
        if match is None:
            found.append(("append_row_to must be ${{outputs.NAME}}", ("task", "append_row_to")))
        else:
            settings.append_row_to = match.group(1)

    data = raw.get("input_data")
    match = _INPUT_REF.fullmatch(data.strip()) if isinstance(data, str) else None
    if data is None:
        found.append(("input_data is required: ${{inputs.NAME}} of the data to split", ("input_data",)))
    elif match is None:
        found.append(("input_data must be ${{inputs.NAME}}", ("input_data",)))
    else:
        settings.input_data = match.group(1)

    if raw.get("partition_keys") is not None:
        settings.partition_keys = _partition_keys(raw["partition_keys"], found)

    read_run_settings(raw, settings, found)
    return (None if found else settings), found


def read_run_settings(raw: Mapping, settings: ParallelSettings, found: Findings) -> None:
    """The run settings in `raw` (mini_batch_size, resources, concurrency, thresholds, retries,
    logging_level) into `settings`; used for the YAML's literals and for values bound to pipeline
    inputs once a run gives them (parallel_bindings)."""
    size = raw.get("mini_batch_size")
    if size is not None:
        try:
            parse_mini_batch_size(size)
            settings.mini_batch_size = str(size).strip().lower()
        except ValueError as exc:
            found.append((str(exc), ("mini_batch_size",)))

    resources = raw.get("resources") or {}
    if isinstance(resources, dict) and "instance_count" in resources:
        count = _whole_number(resources["instance_count"], 1, "instance_count", ("resources", "instance_count"), found)
        settings.instance_count = count or 1
    if "max_concurrency_per_instance" in raw:
        path = ("max_concurrency_per_instance",)
        settings.max_concurrency_per_instance = _whole_number(raw[path[0]], 1, path[0], path, found) or 1
    for key in ("error_threshold", "mini_batch_error_threshold"):
        if key in raw:
            value = _whole_number(raw[key], -1, key, (key,), found)
            setattr(settings, key, -1 if value is None else value)
    retry = raw.get("retry_settings") or {}
    if isinstance(retry, dict):
        if "max_retries" in retry:
            path = ("retry_settings", "max_retries")
            value = _whole_number(retry["max_retries"], 0, "max_retries", path, found)
            settings.max_retries = 0 if value is None else value
        if "timeout" in retry:
            path = ("retry_settings", "timeout")
            settings.timeout_s = _whole_number(retry["timeout"], 1, "timeout (seconds)", path, found) or 60
    level = raw.get("logging_level")
    if level is not None:
        if not isinstance(level, str) or level.upper() not in LOGGING_LEVELS:
            message = f"logging_level must be one of {', '.join(LOGGING_LEVELS)}, got {level!r}"
            found.append((message, ("logging_level",)))
        else:
            settings.logging_level = level.upper()


def ignored_mini_batch_size(settings: ParallelSettings) -> str | None:
    """Why mini_batch_size does nothing here, or None. Azure ML accepts both and lets the
    partition keys take effect, so this is a warning, not an error."""
    if settings.partition_keys and settings.mini_batch_size:
        keys = ", ".join(settings.partition_keys)
        return (
            f"mini_batch_size '{settings.mini_batch_size}' is ignored: partition_keys ({keys}) take effect, "
            "one mini-batch per distinct value (Azure ML does the same; remove one of them)"
        )
    return None


def _option_values(s: ParallelSettings) -> dict[str, object]:
    """Each bindable run setting by its path as written -> its value, or `${{parent.inputs.X}}`
    while it is bound (resolved when the step starts)."""
    values: dict[str, object] = {
        "mini_batch_size": s.mini_batch_size,
        "resources.instance_count": s.instance_count,
        "max_concurrency_per_instance": s.max_concurrency_per_instance,
        "error_threshold": s.error_threshold,
        "mini_batch_error_threshold": s.mini_batch_error_threshold,
        "retry_settings.max_retries": s.max_retries,
        "retry_settings.timeout": s.timeout_s,
        "logging_level": s.logging_level,
    }
    for key, name in s.bound.items():
        values[key] = f"${{{{parent.inputs.{name}}}}}"
    return values


def driver_command(settings: ParallelSettings) -> str:
    """The step's command: the driver, its options, then the program arguments after `--`."""
    s = settings
    v = _option_values(s)
    parts = [
        "python -m",
        DRIVER_MODULE,
        f"--input-data ${{{{inputs.{s.input_data}}}}}",
        f"--entry-script {shlex.quote(s.entry_script)}",
    ]
    if s.files:
        parts.append("--files")
    # The partition keys take effect over a size: leaving the size out keeps the fingerprint
    # from changing with a setting that does nothing.
    for key in s.partition_keys:
        parts.append(f"--partition-key {shlex.quote(key)}")
    if v["mini_batch_size"] and not s.partition_keys:
        size = str(v["mini_batch_size"])
        parts.append(f"--mini-batch-size {size if 'mini_batch_size' in s.bound else shlex.quote(size)}")
    if s.append_row_to:
        parts.append(f"--append-row-to ${{{{outputs.{s.append_row_to}}}}}")
    parts += [
        f"--instance-count {v['resources.instance_count']}",
        f"--max-concurrency-per-instance {v['max_concurrency_per_instance']}",
        f"--error-threshold {v['error_threshold']}",
        f"--mini-batch-error-threshold {v['mini_batch_error_threshold']}",
        f"--max-retries {v['retry_settings.max_retries']}",
        f"--timeout {v['retry_settings.timeout']}",
        f"--logging-level {v['logging_level']}",
    ]
    if s.program_arguments:
        parts += ["--", s.program_arguments]
    return " ".join(parts)


def read_as_files(settings: ParallelSettings, decls: Mapping[str, InputDecl]) -> None:
    """Mark the settings (and so the driver's command) for a uri_folder input_data, read as
    files whatever they are, once the job's input declarations are known."""
    decl = decls.get(settings.input_data)
    settings.files = decl is not None and decl.type == "uri_folder" and not decl.table


def parallel_fields(settings: ParallelSettings, *, bound: bool = True) -> dict:
    """The job-level fields for the YAML export (the task is written apart); with `bound` false,
    settings bound to inputs are left out (a component file cannot bind them: its job does)."""
    s = settings
    v = _option_values(s)
    if not bound:
        v = {key: value for key, value in v.items() if key not in s.bound}
    d: dict = {"input_data": f"${{{{inputs.{s.input_data}}}}}"}
    if v.get("mini_batch_size"):
        d["mini_batch_size"] = v["mini_batch_size"]
    if s.partition_keys:
        d["partition_keys"] = list(s.partition_keys)
    if "resources.instance_count" in v and v["resources.instance_count"] != 1:
        d["resources"] = {"instance_count": v["resources.instance_count"]}
    for key in ("max_concurrency_per_instance", "error_threshold", "mini_batch_error_threshold"):
        if key in v:
            d[key] = v[key]
    retry = {k: v[f"retry_settings.{k}"] for k in ("max_retries", "timeout") if f"retry_settings.{k}" in v}
    if retry:
        d["retry_settings"] = retry
    if "logging_level" in v:
        d["logging_level"] = v["logging_level"]
    return d


def task_fields(settings: ParallelSettings) -> dict:
    d: dict = {"type": "run_function", "entry_script": settings.entry_script}
    if settings.program_arguments:
        d["program_arguments"] = settings.program_arguments
    if settings.append_row_to:
        d["append_row_to"] = f"${{{{outputs.{settings.append_row_to}}}}}"
    return d
