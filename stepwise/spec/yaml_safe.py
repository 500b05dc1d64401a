"""YAML in, plain data out, safely: bounded size, depth, alias expansion; strings for keys.

Pipeline files come from uploads, so the reader must stay quick and small on hostile
input. PyYAML's pure-Python loader is used (not libyaml) because composition has to be
interrupted as it happens: a 1 MB file of `[[[[` is refused at depth 51, not after a
recursion error, and a billion-laughs file is refused by counting what its aliases would
expand to, never by expanding them.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from .bindings import text_problem
from .model import Problem, SpecError

MAX_DEPTH = 50
MAX_ALIASES = 100
# Nodes the document would have with every alias expanded; a real pipeline has a few hundred.
MAX_EXPANDED_NODES = 100_000
# Nodes written out in the file: bounds parse time (pure-Python PyYAML) as well as memory.
MAX_NODES = 20_000


class LineDict(dict):
    """A mapping that remembers the 1-based line of each key, so problems can point at it."""

    __slots__ = ("line", "key_lines")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.line: int | None = None
        self.key_lines: dict[str, int] = {}


class _Refused(yaml.YAMLError):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Composer(Composer):
    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._aliases = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: object) -> Node:
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"too many YAML aliases (more than {MAX_ALIASES})", _line(self.peek_event()))
            return super().compose_node(parent, index)
        self._depth += 1
        self._nodes += 1
        try:
            if self._nodes > MAX_NODES:
                raise _Refused(f"YAML has too many nodes (more than {MAX_NODES})", _line(self.peek_event()))
            if self._depth > MAX_DEPTH:
                raise _Refused(f"YAML nested too deeply (more than {MAX_DEPTH} levels)", _line(self.peek_event()))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _line(event_or_node: object) -> int | None:
    mark = getattr(event_or_node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


class _Resolver(Resolver):
    """YAML 1.1 implicit types minus timestamps: `2024-01-01` stays a string, as JSON would have it."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}


class _Constructor(SafeConstructor):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, f"expected a mapping, found {node.id}", node.start_mark)
        seen: set[str] = set()
        for key_node, _value in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise ConstructorError(None, None, f"duplicate key '{key_node.value}'", key_node.start_mark)
                seen.add(key_node.value)
        self.flatten_mapping(node)
        mapping = LineDict()
        mapping.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConstructorError(None, None, f"keys must be strings, found {key!r}", key_node.start_mark)
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines.setdefault(key, key_node.start_mark.line + 1)
        return mapping

    def _map(self, node: MappingNode) -> LineDict:
        return self.construct_mapping(node, deep=True)

    def _seq(self, node: SequenceNode) -> list:
        return [self.construct_object(child, deep=True) for child in node.value]

    def _refuse(self, node: Node) -> None:
        raise ConstructorError(None, None, f"unsupported YAML type {node.tag}", node.start_mark)

    # Escapes (`"\0"`, `"\ud800"`, `.nan`) write what no command line, JSON column or
    # database text can hold: refused here, where the line is known, not at the run's start.
    def _str(self, node: ScalarNode) -> str:
        value = self.construct_yaml_str(node)
        if problem := text_problem(value):
            raise ConstructorError(None, None, f"a string that {problem}", node.start_mark)
        return value

    def _float(self, node: ScalarNode) -> float:
        value = self.construct_yaml_float(node)
        if not math.isfinite(value):
            raise ConstructorError(None, None, f"{node.value!r} is not a finite number", node.start_mark)
        return value


_Constructor.add_constructor("tag:yaml.org,2002:map", _Constructor._map)
_Constructor.add_constructor("tag:yaml.org,2002:seq", _Constructor._seq)
_Constructor.add_constructor("tag:yaml.org,2002:str", _Constructor._str)
_Constructor.add_constructor("tag:yaml.org,2002:float", _Constructor._float)
for _tag in ("binary", "set", "omap", "pairs", "timestamp"):
    _Constructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _Constructor._refuse)


class _Loader(Reader, Scanner, Parser, _Composer, _Constructor, _Resolver):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Composer.__init__(self)
        _Constructor.__init__(self)
        _Resolver.__init__(self)


def _check_expansion(root: Node) -> None:
    """Refuse documents whose aliases would expand past the limits, or refer to themselves.

    Iterative post-order walk memoized by node identity, so a shared subtree costs once
    here however many times it is referenced.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_stack.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_EXPANDED_NODES:
                raise _Refused(f"YAML aliases expand to too many nodes (more than {MAX_EXPANDED_NODES})", _line(node))
            if depth[key] > MAX_DEPTH:
                raise _Refused(f"YAML nested too deeply (more than {MAX_DEPTH} levels)", _line(node))
            continue
        if key in size:
            continue
        if key in on_stack:
            raise _Refused("recursive YAML alias", _line(node))
        on_stack.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_stack:
                raise _Refused("recursive YAML alias", _line(child))
            if id(child) not in size:
                stack.append((child, False))


def load_yaml(text: str, *, filename: str) -> object:
    """Parse one YAML document into dicts (LineDict), lists and scalars, or raise SpecError."""
    if "\x00" in text:
        raise SpecError([Problem("binary content, not a YAML text file", file=filename)])
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except _Refused as exc:
        raise SpecError([Problem(exc.message, file=filename, line=exc.line)])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise SpecError(
            [Problem(f"invalid YAML: {message}", file=filename, line=mark.line + 1 if mark is not None else None)]
        )
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise SpecError([Problem(f"invalid YAML: {exc.reason}", file=filename, line=line)])
    except yaml.YAMLError as exc:
        raise SpecError([Problem(f"invalid YAML: {exc}", file=filename)])
    except RecursionError:
        raise SpecError([Problem("YAML nested too deeply", file=filename)])
    finally:
        if loader is not None:
            loader.dispose()


def decode_text(data: bytes, *, filename: str, max_bytes: int) -> str:
    """Bytes of a YAML file to text: bounded size, UTF-8 only, no binary."""
    if len(data) > max_bytes:
        raise SpecError([Problem(f"file is larger than {max_bytes} bytes", file=filename)])
    if b"\x00" in data:
        raise SpecError([Problem("binary content, not a YAML text file", file=filename)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError([Problem("not UTF-8 text", file=filename, line=line)])
    return text.removeprefix("\ufeff")


def read_text(path: Path, *, filename: str, max_bytes: int) -> str:
    """Read a YAML file without ever holding more than max_bytes + 1 of it."""
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise SpecError([Problem(f"cannot read file: {exc.strerror or exc}", file=filename)])
    return decode_text(data, filename=filename, max_bytes=max_bytes)
