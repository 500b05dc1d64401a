"""Command templates: `${{inputs.X}}`, `${{outputs.Y}}` and optional `$[[ ... ]]` segments.

Values are substituted shell-quoted, so whatever a user types into a parameter reaches the
step as one literal argument and is never interpreted by the shell. A secret input is never
substituted: the command gets a quoted reference to the environment variable that holds it
(`EnvRef`), so its value appears in no stored or shown command line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

SECRET_ENV_PREFIX = "STEPWISE_SECRET_"

_REF = re.compile(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ANY_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_OPEN, _CLOSE = "$[[", "]]"


@dataclass(frozen=True)
class EnvRef:
    """An input whose value the step reads from the environment variable `name`."""

    name: str


def secret_env_var(input_name: str) -> str:
    """The environment variable that carries a secret input to its step: `STEPWISE_SECRET_<NAME>`.

    The prefix keeps a secret named `path` or `home` from replacing PATH or HOME.
    """
    return SECRET_ENV_PREFIX + input_name.upper()


def _segments(command: str) -> list[tuple[bool, str]]:
    """Split into (is_optional, text) pieces; raise ValueError on a `$[[` left open or nested."""
    pieces: list[tuple[bool, str]] = []
    pos = 0
    while True:
        start = command.find(_OPEN, pos)
        if start < 0:
            pieces.append((False, command[pos:]))
            return pieces
        end = command.find(_CLOSE, start + len(_OPEN))
        if end < 0:
            raise ValueError("optional segment '$[[' is never closed with ']]'")
        inner = command[start + len(_OPEN) : end]
        if _OPEN in inner:
            raise ValueError("optional segments '$[[ ... ]]' cannot be nested")
        pieces.append((False, command[pos:start]))
        pieces.append((True, inner))
        pos = end + len(_CLOSE)


def command_references(command: str) -> tuple[set[str], set[str]]:
    """(input names, output names) that the command refers to, inside optional segments too."""
    inputs: set[str] = set()
    outputs: set[str] = set()
    for kind, name in _REF.findall(command):
        (inputs if kind == "inputs" else outputs).add(name)
    return inputs, outputs


def optional_inputs_used(command: str) -> set[str]:
    """Input names referenced inside `$[[ ... ]]` (empty when the command is malformed)."""
    try:
        pieces = _segments(command)
    except ValueError:
        return set()
    return {name for optional, text in pieces if optional for kind, name in _REF.findall(text) if kind == "inputs"}


def required_inputs_used(command: str) -> set[str]:
    """Input names referenced outside any `$[[ ... ]]` segment."""
    try:
        pieces = _segments(command)
    except ValueError:
        return set()
    return {name for optional, text in pieces if not optional for kind, name in _REF.findall(text) if kind == "inputs"}


def command_errors(command: str) -> list[str]:
    """Syntax problems: unclosed or nested optional segments, expressions other than inputs/outputs."""
    errors: list[str] = []
    try:
        _segments(command)
    except ValueError as exc:
        errors.append(str(exc))
    for match in _ANY_EXPR.finditer(command):
        if not _REF.fullmatch(match.group(0)):
            errors.append(f"unsupported expression '{match.group(0)}' (only ${{{{inputs.X}}}} and ${{{{outputs.Y}}}})")
    return errors


def format_value(value: object) -> str:
    """A value as the command sees it, before quoting. Booleans as Azure ML renders them: True/False."""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def render_command(command: str, *, inputs: dict[str, object | None], outputs: dict[str, str]) -> str:
    """Substitute references with shell-quoted values; drop optional segments whose inputs are unset.

    An `EnvRef` value becomes `"${NAME}"`: the shell expands it, as one word, when the step runs.

    Raises ValueError naming the input (or output) when a reference outside an optional
    segment has no value, or when the template itself is malformed.
    """
    for error in command_errors(command):
        raise ValueError(error)

    def substitute(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "inputs":
            value = inputs.get(name)
            if value is None:
                raise ValueError(f"input '{name}' is required by the command but has no value")
            if isinstance(value, EnvRef):
                return f'"${{{value.name}}}"'
            return shlex.quote(format_value(value))
        if outputs.get(name) is None:
            raise ValueError(f"output '{name}' is used by the command but has no path")
        return shlex.quote(str(outputs[name]))

    rendered: list[str] = []
    for optional, text in _segments(command):
        if optional:
            used = {name for kind, name in _REF.findall(text) if kind == "inputs"}
            if any(inputs.get(name) is None for name in used):
                continue
        rendered.append(_REF.sub(substitute, text))
    return "".join(rendered)
