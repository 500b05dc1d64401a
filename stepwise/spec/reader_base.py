"""The pipeline reader's shared parts: where a problem sits, the component and source records, and
the base class that collects problems and reads files (see loader.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import bindings as b
from .files import Budget, FilesError
from .model import (
    Distribution,
    InputDecl,
    OutputDecl,
    Problem,
)
from .yaml_safe import LineDict

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

# The type an inline job's `{type: mltable, ...}` input implies (`_binding`), until its declaration
# is made from it: a uri_folder read as a table (InputDecl.table).
MLTABLE_HINT = "mltable"


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


class _Reader:
    """What every part of the pipeline reader shares: the problems found and where they sit, the
    files read, and small typed getters."""

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
        # Data given to a top-level job by a registered asset, a datastore path or a web address,
        # which a run resolves when it is created: made pipeline inputs of their own (reader_jobs).
        self.hoisted_inputs: dict[str, InputDecl] = {}
        # The pipeline's own input names (hoisted ones must not take them), and the group whose
        # jobs are being read ("": the pipeline's own).
        self.input_names: set[str] = set()
        self.scope = ""

    def _add(self, severity: str, message: str, where: _Where, path: tuple[str, ...], job: str, field: str) -> None:
        line = _line(where.tree, where.prefix + path)
        self.problems.append(Problem(message, file=where.file, job=job, field=field, line=line, severity=severity))

    def error(self, message: str, where: _Where, *path: str, job: str = "") -> None:
        self._add("error", message, where, path, job, ".".join(path))

    def warn(self, message: str, where: _Where, *path: str, job: str = "") -> None:
        self._add("warning", message, where, path, job, ".".join(path))

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

    def _base(self, where: _Where) -> Path | None:
        """The folder that paths in the pipeline file are relative to (components pass their own)."""
        return where.base if where.base is not None else self.base_dir

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
