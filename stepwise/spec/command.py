"""Command templates: `${{inputs.X}}`, `${{outputs.Y}}` and optional `$[[ ... ]]` segments.

Values are substituted escaped for the quoting they stand in (`shell.py` tells which): outside
quotes as one shell word, inside double quotes escaped for double quotes; a placeholder where
no escaping is safe (inside single quotes, `$'...'`, a comment, a here-document, ...) is a
validation error. Whatever a user types into a parameter so reaches the step as data and is
never interpreted by the shell. A secret input is never substituted: the command gets a
reference to the environment variable that holds it (`EnvRef`), so its value appears in no
stored or shown command line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .shell import Context, Slot, scan

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


def _unclosed_expression(command: str) -> bool:
    covered = {m.start() for m in _ANY_EXPR.finditer(command)}
    return any(m.start() not in covered for m in re.finditer(re.escape("${{"), command))


def _structure_errors(command: str) -> list[str]:
    errors: list[str] = []
    try:
        _segments(command)
    except ValueError as exc:
        errors.append(str(exc))
    for match in _ANY_EXPR.finditer(command):
        if not _REF.fullmatch(match.group(0)):
            errors.append(f"unsupported expression '{match.group(0)}' (only ${{{{inputs.X}}}} and ${{{{outputs.Y}}}})")
    if _unclosed_expression(command):
        errors.append("an expression '${{' is never closed with '}}'")
    return errors


def _uses_inputs(text: str) -> bool:
    return any(kind == "inputs" for kind, _ in _REF.findall(text))


def _refusals(slots: tuple[Slot, ...]) -> list[str]:
    return [f"{slot.expression} {slot.refusal}" for slot in slots if slot.refusal and _REF.fullmatch(slot.expression)]


def command_errors(command: str) -> list[str]:
    """Problems of the template: optional segments left open or nested, expressions other than
    inputs/outputs, and placeholders standing where the shell would not take their value as data.
    """
    errors = _structure_errors(command)
    try:
        pieces = _segments(command)
    except ValueError:
        return errors  # already among the errors; where segments end is unknown
    kept: list[str] = []
    marks: set[int] = set()
    spans: list[tuple[int, int, str]] = []
    offset = 0
    for optional, text in pieces:
        if optional:
            spans.append((offset, offset + len(text), text))
            marks.update((offset, offset + len(text)))
        kept.append(text)
        offset += len(text)
    full = scan("".join(kept), marks=frozenset(marks))
    errors += _refusals(full.slots)
    for start, end, text in spans:
        if full.states[start] != full.states[end] and "lost" not in full.states[end]:
            errors.append(f"optional segment '$[[{text}]]' must close every quote it opens")
    if full.unterminated:
        errors.append(f"in the command, {full.unterminated}")
    if any(_uses_inputs(text) for _, _, text in spans):
        # Dropping the optional segments can put what follows them in another context.
        without = scan("".join(text for optional, text in pieces if not (optional and _uses_inputs(text))))
        errors += [error for error in _refusals(without.slots) if error not in errors]
    return errors


def format_value(value: object) -> str:
    """A value as the command sees it, before quoting. Booleans as Azure ML renders them: True/False."""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _double_quoted(text: str) -> str:
    """`text` escaped to stand inside "...": backslash, `$`, backtick and `"` backslash-escaped.

    Each `!` is put in single quotes (closing and reopening the double quotes) instead: a shell
    with history expansion on would expand a bare one, and keeps the backslash of a `\\!`.
    """
    return re.sub(r'([\\$`"])', r"\\\1", text).replace("!", "\"'!'\"")


def _quoted(value: object, context: Context) -> str:
    if isinstance(value, EnvRef):
        return f'"${{{value.name}}}"' if context is Context.WORD else f"${{{value.name}}}"
    text = format_value(value)
    return shlex.quote(text) if context is Context.WORD else _double_quoted(text)


def render_command(command: str, *, inputs: dict[str, object | None], outputs: dict[str, str]) -> str:
    """Substitute references with values escaped for where they stand; drop optional segments
    whose inputs are unset.

    An `EnvRef` value becomes a reference to its environment variable (`"${NAME}"` outside
    quotes, `${NAME}` inside double quotes): the shell expands it, as data, when the step runs.

    Raises ValueError naming the input (or output) when a reference outside an optional
    segment has no value, when the template itself is malformed, or when a placeholder stands
    where no value can be quoted safely.
    """
    for error in _structure_errors(command):
        raise ValueError(error)
    text = "".join(
        piece
        for optional, piece in _segments(command)
        if not optional or all(inputs.get(name) is not None for kind, name in _REF.findall(piece) if kind == "inputs")
    )
    result = scan(text)
    for error in _refusals(result.slots):
        raise ValueError(error)
    if result.unterminated:
        raise ValueError(f"in the command, {result.unterminated}")

    rendered: list[str] = []
    pos = 0
    for slot in result.slots:
        match = _REF.fullmatch(slot.expression)
        assert match is not None and slot.context is not None  # refusals and bad expressions raised above
        kind, name = match.group(1), match.group(2)
        if kind == "inputs":
            value = inputs.get(name)
            if value is None:
                raise ValueError(f"input '{name}' is required by the command but has no value")
            what = f"input '{name}'"
        else:
            value = outputs.get(name)
            if value is None:
                raise ValueError(f"output '{name}' is used by the command but has no path")
            what = f"output '{name}'"
        if not isinstance(value, EnvRef) and "\x00" in format_value(value):
            raise ValueError(f"{what} holds a NUL character, which no command line can carry")
        rendered += [text[pos : slot.start], _quoted(value, slot.context)]
        pos = slot.end
    rendered.append(text[pos:])
    return "".join(rendered)
