"""Where each `${{...}}` placeholder of a command stands, as bash will read the rendered command.

A value is safe only when it is escaped for the quoting context it lands in: `shlex.quote`
makes one word outside quotes, but its single quotes are literal inside double quotes, so
`echo "${{inputs.q}}"` with `$(id)` would run `id`. This module is a small, pure tokenizer
of the bash syntax that changes how text is quoted: quotes, backslashes, `$'...'`, `$(...)`,
backticks, `${...}`, arithmetic, comments and here-documents. Placeholders are opaque word
characters to it (the template is substituted before the shell reads anything).

It errs on the side of refusing: where it cannot be certain how bash would read a
placeholder (inside backticks holding quotes, a `case` inside `$(...)`, ...), every
placeholder that follows is refused rather than guessed at, since either guess can run a
value as code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
# Characters that end a word (bash's metacharacters) and so may start a comment after them.
_META = frozenset(" \t\n;&|()<>")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_@*#?$!-]")


class Context(StrEnum):
    """How a placeholder's value must be escaped."""

    WORD = "word"  # outside quotes: the value becomes one shell word
    DOUBLE = "double"  # inside "...": the value is escaped for double quotes


@dataclass(frozen=True)
class Slot:
    """A `${{...}}` expression in the command: its text, and where it stands."""

    start: int
    end: int
    expression: str  # the whole `${{...}}`
    context: Context | None
    refusal: str = ""  # why no value can be substituted here (context is None)


@dataclass(frozen=True)
class Scan:
    slots: tuple[Slot, ...]
    # Quoting still open at the end (a command bash would refuse), or "" when the tokenizer
    # gave up before the end and cannot tell.
    unterminated: str
    # The open quoting at each offset asked for, as comparable tuples.
    states: dict[int, tuple[str, ...]]


_OPENED_BY = {
    "sq": "a single quote (')",
    "dq": 'a double quote (")',
    "ansi": "$'",
    "backtick": "a backtick (`)",
    "param": "${",
    "arith": "((",
    "paren": "(",
}

_REFUSALS = {
    "sq": (
        "is inside single quotes, where its value cannot be quoted safely: remove the single quotes "
        "around it (use double quotes, or none: values are quoted for the shell when the step runs)"
    ),
    "ansi": "is inside $'...', where its value cannot be quoted safely: remove the $'...' quoting around it",
    "comment": "is inside a shell comment (after #), which a value with a new line would end: move it out",
    "backtick": "is inside backticks (`...`), where quoting does not nest: use $(...) instead",
    "param": "is inside ${...}, where its value cannot be quoted safely: assign it to a variable first",
    "arith": (
        "is inside shell arithmetic ((( ... )) or $(( ... ))), which would evaluate its value as code: "
        "pass it to a program as an argument instead"
    ),
    "heredoc": (
        "is inside a here-document (<<), which a value could end early: pass it as an argument "
        "or an environment variable instead"
    ),
    "backslash": "follows a backslash, which would escape the quoting of its value: remove the backslash",
    "dollar": "follows a '$', which would expand its value: remove the '$'",
}


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        # Open constructs, innermost last: [kind, depth]; depth counts parentheses in "arith".
        self.stack: list[list] = [["code", 0]]
        self.word_start = True
        self.heredocs: list[tuple[str, bool]] = []  # (delimiter, strip leading tabs), in order
        self.in_body = False
        self.line_start = 0
        self.pending = ""  # "backslash" or "dollar" when one stands right before a placeholder
        self.lost = ""  # why the tokenizer stopped tracking, with where
        self.slots: list[Slot] = []

    # -- helpers ---------------------------------------------------------------------------
    @property
    def top(self) -> str:
        return self.stack[-1][0]

    def lose(self, i: int, what: str) -> None:
        if not self.lost:
            line = self.text.count("\n", 0, i) + 1
            self.lost = f"{what} (line {line} of the command)"

    def state(self) -> tuple[str, ...]:
        body = ("heredoc",) if self.in_body else ()
        return tuple(kind for kind, _ in self.stack) + body + (("lost",) if self.lost else ())

    def placeholder_before(self, i: int) -> bool:
        return self.text.startswith("${{", i) and _EXPR.match(self.text, i) is not None

    # -- the scan --------------------------------------------------------------------------
    def scan(self, marks: frozenset[int]) -> Scan:
        text, n, i = self.text, len(self.text), 0
        states: dict[int, tuple[str, ...]] = {}
        waiting = sorted(marks, reverse=True)
        while i < n:
            while waiting and waiting[-1] <= i:
                states[waiting.pop()] = self.state()
            if self.in_body and i == self.line_start and self.end_of_body(i):
                i = self.line_start
                continue
            match = _EXPR.match(text, i) if text.startswith("${{", i) else None
            if match:
                self.slots.append(self.slot(match))
                self.pending = ""
                self.word_start = False
                i = match.end()
                continue
            self.pending = ""
            if self.lost:
                i += 1
            elif self.in_body:
                if text[i] == "\n":
                    self.line_start = i + 1
                i += 1
            else:
                i = self.step(i)
        for mark in waiting:
            states[mark] = self.state()
        unterminated = ""
        open_frames = [kind for kind, _ in self.stack if kind != "comment"]
        if self.lost:
            pass
        elif self.in_body:
            unterminated = f"a here-document is never ended by a line '{self.heredocs[0][0]}'"
        elif len(open_frames) > 1:
            unterminated = f"{_OPENED_BY[open_frames[-1]]} is never closed"
        return Scan(tuple(self.slots), unterminated, states)

    def slot(self, match: re.Match[str]) -> Slot:
        if self.lost:
            refusal = f"cannot be quoted safely after {self.lost}: simplify the command before it"
        elif self.in_body:
            refusal = _REFUSALS["heredoc"]
        elif self.pending:
            refusal = _REFUSALS[self.pending]
        elif self.top in ("code", "paren"):
            return Slot(match.start(), match.end(), match.group(0), Context.WORD)
        elif self.top == "dq":
            return Slot(match.start(), match.end(), match.group(0), Context.DOUBLE)
        else:
            refusal = _REFUSALS[self.top]
        return Slot(match.start(), match.end(), match.group(0), None, refusal)

    def end_of_body(self, i: int) -> bool:
        """At the start of a line of a here-document: end it when the line is its delimiter."""
        delimiter, strip_tabs = self.heredocs[0]
        end = self.text.find("\n", i)
        end = len(self.text) if end < 0 else end
        line = self.text[i:end]
        if (line.lstrip("\t") if strip_tabs else line) != delimiter:
            return False
        self.heredocs.pop(0)
        self.line_start = end + 1
        if not self.heredocs:
            self.in_body = False
            self.word_start = True
        return True

    def step(self, i: int) -> int:
        """Consume the shell syntax at `i`; return where to go on."""
        text, kind, c = self.text, self.top, self.text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if kind == "sq":
            if c == "'":
                self.stack.pop()
            return i + 1
        if kind == "comment":
            if c == "\n":
                self.stack.pop()
                return i  # the new line also ends the command line (here-documents start)
            return i + 1
        if c == "\\":
            if kind in ("param", "arith"):
                self.lose(i, "a backslash inside " + _OPENED_BY[kind])
                return i + 1
            if self.placeholder_before(i + 1):
                # Inside $'...' or backticks the placeholder is refused for where it stands.
                self.pending = "backslash" if kind in ("code", "paren", "dq") else ""
                return i + 1
            if kind in ("code", "paren") and nxt != "\n":
                self.word_start = False  # a backslash-newline joins lines and leaves the word as it was
            return i + 2
        if kind == "ansi":
            if c == "'":
                self.stack.pop()
            return i + 1
        if kind == "backtick":
            if c == "`":
                self.stack.pop()
            elif c in "'\"$":
                # Bash's rules for quotes inside backticks differ between its versions.
                self.lose(i, f"a {c!r} inside backticks")
            return i + 1
        if kind == "param":
            return self.step_param(i, c, nxt)
        if kind == "arith":
            return self.step_arith(i, c, nxt)
        if kind == "dq":
            if c == '"':
                self.stack.pop()
                return i + 1
            if c == "$":
                return self.dollar(i, in_double=True)
            if c == "`":
                self.stack.append(["backtick", 0])
            return i + 1
        return self.step_code(i, c, nxt)

    def step_code(self, i: int, c: str, nxt: str) -> int:
        text = self.text
        was_word_start, self.word_start = self.word_start, c in _META
        if c == "'":
            self.stack.append(["sq", 0])
        elif c == '"':
            self.stack.append(["dq", 0])
        elif c == "`":
            self.stack.append(["backtick", 0])
        elif c == "$":
            return self.dollar(i, in_double=False)
        elif c == "#" and was_word_start:
            self.stack.append(["comment", 0])
        elif c == "(":
            if was_word_start and nxt == "(":
                self.stack.append(["arith", 0])
                self.word_start = False
                return i + 2
            self.stack.append(["paren", 0])
        elif c == ")":
            if self.top == "paren":
                self.stack.pop()
            # At the top level a ')' ends a case pattern; nothing to close.
        elif c == "\n":
            if self.heredocs:
                self.in_body = True
                self.line_start = i + 1
        elif c == "<" and text.startswith("<<", i):
            if text.startswith("<<<", i):
                return i + 3
            return self.heredoc(i)
        elif was_word_start and self.top == "paren" and re.match(r"case(?=[\s;&|()<>]|$)", text[i:]):
            # A case pattern's ')' inside $(...) would be taken for the end of the substitution.
            self.lose(i, "a case statement inside parentheses")
        return i + 1

    def dollar(self, i: int, *, in_double: bool) -> int:
        text = self.text
        self.word_start = False
        if self.placeholder_before(i + 1):
            self.pending = "dollar"
            return i + 1
        if text.startswith("$((", i):
            self.stack.append(["arith", 0])
            return i + 3
        if text.startswith("$(", i):
            self.stack.append(["paren", 0])
            self.word_start = True
            return i + 2
        if text.startswith("${", i):
            self.stack.append(["param", 0])
            return i + 2
        if not in_double and text.startswith("$'", i):
            self.stack.append(["ansi", 0])
            return i + 2
        if not in_double and text.startswith('$"', i):
            self.stack.append(["dq", 0])
            return i + 2
        if text.startswith("$[", i):
            self.lose(i, "a '$[' arithmetic expansion")
        return i + 1

    def step_param(self, i: int, c: str, nxt: str) -> int:
        if c == "}":
            self.stack.pop()
            return i + 1
        if c == "$":
            if nxt == "{":
                self.stack.append(["param", 0])
                return i + 2
            if nxt and _NAME_CHAR.match(nxt):
                return i + 2
        if c in "'\"`$(){":
            self.lose(i, f"a {c!r} inside ${{...}}")
        return i + 1

    def step_arith(self, i: int, c: str, nxt: str) -> int:
        frame = self.stack[-1]
        if c == "(":
            frame[1] += 1
        elif c == ")":
            if frame[1] > 0:
                frame[1] -= 1
            elif nxt == ")":
                self.stack.pop()
                return i + 2
            else:
                self.lose(i, "a ')' that ends no arithmetic")
        elif c == "$":
            return self.dollar(i, in_double=True)
        elif c in "'\"`":
            self.lose(i, f"a {c!r} inside arithmetic")
        return i + 1

    def heredoc(self, i: int) -> int:
        """Read the delimiter word after `<<` or `<<-`; the body starts after this line."""
        text, n = self.text, len(self.text)
        j = i + 2
        strip_tabs = text.startswith("-", j)
        j += strip_tabs
        while j < n and text[j] in " \t":
            j += 1
        delimiter: list[str] = []
        while j < n and text[j] not in _META:
            c = text[j]
            if c in "'\"":
                close = text.find(c, j + 1)
                quoted = text[j + 1 : close] if close >= 0 else ""
                if close < 0 or any(ch in quoted for ch in "$`\\"):
                    break
                delimiter.append(quoted)
                j = close + 1
            elif c == "\\" and j + 1 < n:
                delimiter.append(text[j + 1])
                j += 2
            elif c in "$`":
                break
            else:
                delimiter.append(c)
                j += 1
        if not delimiter or (j < n and text[j] not in _META):
            self.lose(i, "a here-document delimiter this tokenizer does not read")
            return j + 1
        self.heredocs.append(("".join(delimiter), strip_tabs))
        self.word_start = True
        return j


def scan(text: str, *, marks: frozenset[int] = frozenset()) -> Scan:
    """Tokenize `text` (a command with `${{...}}` placeholders) and place every placeholder.

    `marks` are offsets whose open quoting the caller wants to compare (optional segments).
    """
    return _Scanner(text).scan(marks)
