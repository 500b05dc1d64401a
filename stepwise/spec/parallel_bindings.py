"""A parallel job's run settings bound to pipeline inputs, as Azure ML lets a job write them:
`mini_batch_size: ${{parent.inputs.batch}}`, `resources: {instance_count: ${{parent.inputs.n}}}`.

They are read apart from the literal settings (`split`), checked against the pipeline's inputs
when the YAML is loaded (`check`), and take the run's values (its inputs, `--set` overrides
included) when the step starts (`resolve`): the same checks as a literal's then fail the step,
naming the setting and the value.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import replace

from .bindings import literal_type, parse_expression
from .model import Binding, InputDecl, ParallelSettings, ParentInput
from .parallel import Findings, driver_command, read_run_settings

# The settings a job may bind, by their path as written.
BINDABLE: tuple[tuple[str, ...], ...] = (
    ("mini_batch_size",),
    ("resources", "instance_count"),
    ("max_concurrency_per_instance",),
    ("error_threshold",),
    ("mini_batch_error_threshold",),
    ("retry_settings", "max_retries"),
    ("retry_settings", "timeout"),
    ("logging_level",),
)
# ParallelSettings' field for each setting, to put its default back when it is bound anew.
_FIELDS = {
    "mini_batch_size": "mini_batch_size",
    "resources.instance_count": "instance_count",
    "max_concurrency_per_instance": "max_concurrency_per_instance",
    "error_threshold": "error_threshold",
    "mini_batch_error_threshold": "mini_batch_error_threshold",
    "retry_settings.max_retries": "max_retries",
    "retry_settings.timeout": "timeout_s",
    "logging_level": "logging_level",
}
_DEFAULTS = ParallelSettings(input_data="", entry_script="")
# Input types whose values can become each setting (any other is refused when loaded).
_TYPES = {"mini_batch_size": ("integer", "string"), "logging_level": ("string",)}
_WHOLE_NUMBER_TYPES = ("integer", "string")
_WHOLE = re.compile(r"-?\d+")


def _get(raw: Mapping, path: tuple[str, ...]) -> object:
    node: object = raw
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def split(raw: Mapping) -> tuple[dict, dict[str, str], Findings]:
    """`raw` without its bound settings; the bound ones (path as written -> input name); and the
    expressions that are not `${{parent.inputs.NAME}}` (the only binding a setting takes)."""
    rest = {key: copy.copy(value) if isinstance(value, dict) else value for key, value in raw.items()}
    bound: dict[str, str] = {}
    found: Findings = []
    for path in BINDABLE:
        value = _get(rest, path)
        if not isinstance(value, str) or "${{" not in value:
            continue
        ref = parse_expression(value)
        if isinstance(ref, ParentInput):
            bound[".".join(path)] = ref.name
        else:
            message = f"{'.'.join(path)} must be a value or ${{{{parent.inputs.NAME}}}}, got {value!r}"
            found.append((message, path))
        parent = _get(rest, path[:-1]) if len(path) > 1 else rest
        assert isinstance(parent, dict)
        del parent[path[-1]]
    return rest, bound, found


def _coerced(setting: str, value: object) -> object:
    """A run's value as the setting reads it: a string input's "4" is the count 4, as Azure ML
    passes every input as text."""
    if setting == "mini_batch_size" or setting == "logging_level":
        return value
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _nested(setting: str, value: object) -> dict:
    path = setting.split(".")
    raw: dict = {path[-1]: value}
    for key in reversed(path[:-1]):
        raw = {key: raw}
    return raw


def apply_values(
    settings: ParallelSettings, values: Mapping[str, object]
) -> tuple[ParallelSettings, list[tuple[str, str]]]:
    """`settings` with the bound settings in `values` (path as written -> value; None keeps the
    default, as an optional input left unset does) set and no longer bound; the problems, each
    naming the setting and the value, with the setting's path."""
    result = replace(settings, bound={k: v for k, v in settings.bound.items() if k not in values})
    problems: list[tuple[str, str]] = []
    for setting, value in values.items():
        if value is None:
            continue
        found: Findings = []
        read_run_settings(_nested(setting, _coerced(setting, value)), result, found)
        problems += [(f"{setting} = {value!r}: {message}", setting) for message, _path in found]
    return result, problems


def rebind(settings: ParallelSettings, values: Mapping[str, Binding]) -> tuple[ParallelSettings, list[tuple[str, str]]]:
    """An inner step's settings with its bindings to its pipeline component's inputs (`values`:
    setting -> what the component's job gives that input) in the pipeline's terms: bound to a
    pipeline input, a value, or the default when nothing is given. Problems as `apply_values`'."""
    reset = {_FIELDS[key]: getattr(_DEFAULTS, _FIELDS[key]) for key in values if key in _FIELDS}
    result = replace(settings, bound={k: v for k, v in settings.bound.items() if k not in values}, **reset)
    literals: dict[str, object] = {}
    problems: list[tuple[str, str]] = []
    for setting, value in values.items():
        if isinstance(value, ParentInput):
            result.bound[setting] = value.name
        elif value is None or literal_type(value) is not None:
            literals[setting] = value
        else:
            problems.append((f"{setting} is bound to a component input given data, not a value", setting))
    result, more = apply_values(result, literals)
    return result, problems + more


def resolve(settings: ParallelSettings, inputs: Mapping[str, object]) -> ParallelSettings:
    """The settings with this run's input values (`inputs`: name -> value, defaults included);
    raises ValueError naming each setting, the input and the value that does not fit."""
    values = {setting: inputs.get(name) for setting, name in settings.bound.items()}
    result, problems = apply_values(settings, values)
    if problems:
        lines = (f"parallel run setting {text} (pipeline input '{settings.bound[key]}')" for text, key in problems)
        raise ValueError("; ".join(lines))
    return result


def resolved_command(settings: ParallelSettings, inputs: Mapping[str, object]) -> str:
    """The driver command with the run's values in place of the bound settings."""
    return driver_command(resolve(settings, inputs))


def check(settings: ParallelSettings, inputs: Mapping[str, InputDecl]) -> list[tuple[str, str]]:
    """(message, setting) for each binding to a missing input, an input of a type the setting
    cannot take, or an input whose default the setting refuses."""
    problems: list[tuple[str, str]] = []
    for setting, name in settings.bound.items():
        decl = inputs.get(name)
        if decl is None:
            declared = ", ".join(sorted(inputs)) or "none"
            message = f"{setting} is bound to pipeline input '{name}', which is not declared (declared: {declared})"
            problems.append((message, setting))
            continue
        allowed = _TYPES.get(setting, _WHOLE_NUMBER_TYPES)
        if decl.type not in allowed:
            message = (
                f"{setting} is bound to pipeline input '{name}' of type {decl.type}: "
                f"it takes {' or '.join(allowed)} inputs"
            )
            problems.append((message, setting))
            continue
        if decl.default is not None:
            _result, found = apply_values(replace(settings, bound={setting: name}), {setting: decl.default})
            problems += [(f"{text} (the default of pipeline input '{name}')", setting) for text, _key in found]
    return problems
