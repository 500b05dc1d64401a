"""A `type: data_transfer` job's own fields: read from the YAML, checked, and written back on export.

Stepwise runs the three file tasks Azure ML has (`copy_data`, and `import_data` / `export_data`
with a `file_system` source or sink); database sources and sinks need Azure ML's connections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from .model import DATA_COPY_MODES, TRANSFER_TASKS, TransferSettings

# Keys of a data_transfer job besides those every job has (inputs, outputs, compute, ...).
JOB_KEYS = frozenset({"task", "component", "data_copy_mode", "source", "sink"})
ENDPOINT_KEYS = frozenset({"type", "path", "connection"})
# Azure ML names them so in its built-in import and export components.
IMPORT_OUTPUT = "sink"
EXPORT_INPUT = "source"
_DATASTORE_URI = re.compile(r"azureml://datastores/([A-Za-z0-9][A-Za-z0-9_.\-]{0,99})/paths/(.*)", re.DOTALL)
_S3_URI = re.compile(r"s3://([a-z0-9][a-z0-9.\-]{1,62})(/.*)?", re.DOTALL)

Findings = list[tuple[str, tuple[str, ...]]]


@dataclass(frozen=True)
class Location:
    """Where a transfer reads or writes: a datastore by name, or an S3 bucket (its datastore found per run)."""

    kind: str  # "datastore" or "s3"
    name: str  # the datastore's name, or the bucket
    path: str  # relative, POSIX, no `..`; "" for the root


def parse_location(text: str) -> Location | None:
    """`azureml://datastores/NAME/paths/PATH` or `s3://bucket/key`; None when it is neither or leaves its root."""
    text = text.strip()
    match = _DATASTORE_URI.fullmatch(text)
    kind = "datastore"
    if match is None:
        match = _S3_URI.fullmatch(text)
        kind = "s3"
    if match is None:
        return None
    rel = (match.group(2) or "").replace("\\", "/")
    parts = [p for p in PurePosixPath("/" + rel).parts[1:] if p != "."]
    if ".." in parts or "\x00" in rel:
        return None
    return Location(kind=kind, name=match.group(1), path="/".join(parts))


def _endpoint(raw: object, key: str, found: Findings) -> tuple[str, str]:
    """(path, connection) of a `source:` or `sink:` mapping; ("", "") after a problem."""
    if not isinstance(raw, dict):
        found.append((f"{key} is required: {{type: file_system, path: azureml://datastores/NAME/paths/PATH}}", (key,)))
        return "", ""
    type_ = raw.get("type", "file_system")
    if type_ != "file_system":
        found.append(
            (f"{key} type '{type_}' is not supported (only file_system: datastores and S3 paths)", (key, "type"))
        )
        return "", ""
    for extra in raw:
        if extra not in ENDPOINT_KEYS:
            found.append((f"unknown key '{extra}' in {key}", (key, extra)))
    path = raw.get("path")
    if not isinstance(path, str) or parse_location(path) is None:
        found.append(
            (
                f"{key} path {str(path)[:200]!r} is not azureml://datastores/NAME/paths/PATH or s3://bucket/key "
                "(inside it, without '..')",
                (key, "path"),
            )
        )
        return "", ""
    connection = raw.get("connection", "")
    return path.strip(), connection if isinstance(connection, str) else ""


def read_transfer(raw: dict) -> tuple[TransferSettings | None, Findings]:
    """The settings of a data_transfer job's mapping `raw`; problems by field path."""
    found: Findings = []
    task = raw.get("task")
    if task not in TRANSFER_TASKS:
        found.append((f"task must be one of {', '.join(TRANSFER_TASKS)}, got {str(task)[:100]!r}", ("task",)))
        return None, found
    settings = TransferSettings(task=task)
    component = raw.get("component")
    if component is not None:
        # Azure ML's built-in transfer components; Stepwise's worker is the component here.
        if not isinstance(component, str) or not component.startswith("azureml://registries/"):
            found.append(
                (
                    "a data_transfer job's component must be Azure ML's built-in one (azureml://registries/...): "
                    "Stepwise reads no data transfer component files",
                    ("component",),
                )
            )
        else:
            settings.component = component
    mode = raw.get("data_copy_mode")
    if mode is not None:
        if task != "copy_data":
            found.append(("data_copy_mode applies to task copy_data only", ("data_copy_mode",)))
        elif mode not in DATA_COPY_MODES:
            found.append(
                (f"data_copy_mode must be one of {', '.join(DATA_COPY_MODES)}, got {mode!r}", ("data_copy_mode",))
            )
        else:
            settings.data_copy_mode = mode
    for key, wanted in (("source", "import_data"), ("sink", "export_data")):
        if key in raw and task != wanted:
            found.append((f"{key} belongs to task {wanted}, not {task}", (key,)))
    if task == "import_data":
        settings.source, settings.connection = _endpoint(raw.get("source"), "source", found)
    elif task == "export_data":
        settings.sink, settings.connection = _endpoint(raw.get("sink"), "sink", found)
    return (None if found else settings), found


def endpoint_yaml(settings: TransferSettings) -> dict:
    """The job's own fields, as `read_transfer` reads them."""
    j: dict = {"task": settings.task}
    if settings.component:
        j["component"] = settings.component
    if settings.task == "copy_data":
        j["data_copy_mode"] = settings.data_copy_mode
    for key, path in (("source", settings.source), ("sink", settings.sink)):
        if path:
            endpoint: dict = {"type": "file_system", "path": path}
            if settings.connection:
                endpoint["connection"] = settings.connection
            j[key] = endpoint
    return j
