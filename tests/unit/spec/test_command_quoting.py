"""Placeholders are escaped for the shell quoting they stand in, or refused where none is safe."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepwise.spec import EnvRef, render_command
from stepwise.spec.command import command_errors

from .helpers import load_errors, one, write

Q, OUT, S = "${{inputs.q}}", "${{outputs.o}}", "${{inputs.s}}"

HOSTILE = [
    "$(touch pwned)",
    "`touch pwned`",
    "$(id)",
    '"',
    "'",
    "\\",
    "\\\\",
    '\\"',
    "\\$",
    "!",
    "!!",
    "!$",
    "\n",
    "a\nb",
    "\r\n",
    "$VAR",
    "$HOME",
    "${HOME}",
    "$1",
    "*",
    "?",
    "[a-z]*",
    "{a,b}",
    "~",
    "~root",
    "#",
    " # comment",
    ";",
    "&& touch pwned",
    "| touch pwned",
    "> pwned",
    "'\"'\"'",
    '"; touch pwned; echo "',
    "'; touch pwned; echo '",
    "-n",
    "--",
    "%s%n",
    "é ü 日本 🙂",
    "\t",
    " ",
    "",
]

values = st.one_of(
    st.sampled_from(HOSTILE),
    st.lists(st.sampled_from(HOSTILE), max_size=4).map("".join),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20),
)

# (template fragment, the argument bash must hand printf), with Q/O/S standing for a value.
CONTEXTS = [
    (Q, "{q}"),
    (f'"{Q}"', "{q}"),
    (f'--x="a{Q}b"', "--x=a{q}b"),
    (f"a{Q}b", "a{q}b"),
    (f"{Q}\"{Q}\"'lit'{Q}", "{q}{q}lit{q}"),
    (f"\"dq=$HOME-{Q}-\"'sq'", "dq=/nonexistent-{q}-sq"),
    # Command substitution strips trailing new lines: the dot keeps them.
    (f'"$(printf %s. {Q})"', "{q}."),
    (f'"$(printf %s. "{Q}")"', "{q}."),
    (f'$[[--opt="{Q}"]]', "--opt={q}"),
    (OUT, "{o}"),
    (f'"out: {OUT}"', "out: {o}"),
    (S, "{s}"),
    (f'"s={S}"', "s={s}"),
    (f'--s="{S}"$[["{S}"]]', "--s={s}{s}"),
]


def run_printf(command: str, cwd: Path, env: dict[str, str]) -> list[bytes]:
    """Run `printf '%s\\0' ARGS` with bash and return the arguments printf received."""
    subprocess.run(["/bin/bash", "-c", f"printf '%s\\0' {command} > args.bin"], cwd=cwd, env=env, check=True)
    return (cwd / "args.bin").read_bytes().split(b"\0")[:-1]


@settings(max_examples=300, deadline=None)
@given(q=values, o=values, s=values)
def test_hostile_values_arrive_byte_for_byte_in_every_context(q: str, o: str, s: str) -> None:
    template = " ".join(fragment for fragment, _ in CONTEXTS)
    assert command_errors(template) == []
    rendered = render_command(template, inputs={"q": q, "s": EnvRef("STEPWISE_SECRET_S")}, outputs={"o": o})
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C.UTF-8", "STEPWISE_SECRET_S": s}
    with tempfile.TemporaryDirectory() as tmp:
        received = run_printf(rendered, Path(tmp), env)
        assert sorted(os.listdir(tmp)) == ["args.bin"], "the command created a file: a value ran as code"
    expected = [arg.format(q=q, o=o, s=s).encode() for _, arg in CONTEXTS]
    assert received == expected


@given(q=values)
@settings(max_examples=100, deadline=None)
def test_an_unset_optional_segment_leaves_the_contexts_after_it_alone(q: str, tmp_path_factory) -> None:
    template = f'$[[--opt "{Q}" ${{{{inputs.unset}}}}]] "{Q}" {Q}'
    rendered = render_command(template, inputs={"q": q, "unset": None}, outputs={})
    received = run_printf(rendered, tmp_path_factory.mktemp("run"), {"PATH": "/usr/bin:/bin"})
    assert received == [q.encode(), q.encode()]


def test_double_quoted_values_are_escaped_and_bare_values_shell_quoted() -> None:
    rendered = render_command(
        'echo "dq=${{inputs.q}}" ${{inputs.q}}', inputs={"q": 'a $(id) `id` "b" \\ c!'}, outputs={}
    )
    assert rendered == 'echo "dq=a \\$(id) \\`id\\` \\"b\\" \\\\ c"\'!\'"" \'a $(id) `id` "b" \\ c!\''


def test_a_secret_inside_double_quotes_is_a_bare_variable_reference() -> None:
    rendered = render_command(
        'curl -H "Authorization: Bearer ${{inputs.token}}" ${{inputs.token}}',
        inputs={"token": EnvRef("STEPWISE_SECRET_TOKEN")},
        outputs={},
    )
    assert rendered == 'curl -H "Authorization: Bearer ${STEPWISE_SECRET_TOKEN}" "${STEPWISE_SECRET_TOKEN}"'


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("echo 'sq=${{inputs.q}}'", "inside single quotes"),
        ("echo \"a 'b' c\" 'x ${{inputs.q}} y'", "inside single quotes"),
        ("echo $'${{inputs.q}}'", "inside $'...'"),
        ("echo hi # ${{inputs.q}}", "inside a shell comment"),
        ("echo hi\n  # note: ${{inputs.q}}\necho bye", "inside a shell comment"),
        ("cat <<EOF\nvalue: ${{inputs.q}}\nEOF", "inside a here-document"),
        ("cat <<-'END' > f\n\tvalue: ${{inputs.q}}\n\tEND", "inside a here-document"),
        ("echo `echo ${{inputs.q}}`", "inside backticks"),
        ("echo ${X:-${{inputs.q}}}", "inside ${...}"),
        ("echo $((${{inputs.q}} + 1))", "inside shell arithmetic"),
        ("(( ${{inputs.q}} > 1 )) && echo big", "inside shell arithmetic"),
        ("echo \\${{inputs.q}}", "follows a backslash"),
        ('echo "\\${{inputs.q}}"', "follows a backslash"),
        ("echo $${{inputs.q}}", "follows a '$'"),
        ('echo "$${{inputs.q}}"', "follows a '$'"),
        ("x=$(case a in a) echo;; esac); echo ${{inputs.q}}", "after a case statement inside parentheses"),
        ("echo `date +'%F'` ${{inputs.q}}", 'after a "\'" inside backticks'),
    ],
)
def test_placeholders_where_no_quoting_is_safe_are_refused(command: str, why: str) -> None:
    errors = command_errors(command)
    assert len(errors) == 1 and errors[0].startswith("${{inputs.q}} ") and why in errors[0], errors
    with pytest.raises(ValueError, match="inputs.q"):
        render_command(command, inputs={"q": "v"}, outputs={})


@pytest.mark.parametrize(
    "command",
    [
        'python train.py --lr ${{inputs.q}} --name "run ${{inputs.q}}" --out ${{outputs.o}}',
        "cd src && python -c 'import sys; print(sys.argv)' ${{inputs.q}} # done",
        'cat <<\'EOF\' > cfg.txt\nit\'s "quoted" $(not run)\nEOF\npython x.py "${{inputs.q}}"',
        "cat <<A <<B\na\nA\nb\nB\necho ${{inputs.q}}",
        'echo "$(date +%F)" ${HOME} $HOME a#b "$#" ${{inputs.q}}',
        "for ((i = 0; i < 3; i++)); do echo $i; done; echo ${{inputs.q}}",
        "case x in (x) echo;; y) echo;; esac; echo ${{inputs.q}}",
        "echo $(( 1 + (2 * 3) )) ${{inputs.q}} \\\n  --next ${{outputs.o}}",
        "[[ -f a ]] && echo $[[--q=${{inputs.q}}]] <<< 'here string'",
    ],
)
def test_ordinary_shell_around_placeholders_is_accepted(command: str) -> None:
    assert command_errors(command) == []


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ('echo "unclosed ${{inputs.q}}', 'a double quote (") is never closed'),
        ("echo 'unclosed", "a single quote (') is never closed"),
        ("echo $(date", "( is never closed"),
        ("cat <<EOF\nno end", "never ended by a line 'EOF'"),
        ('echo $[[--a "${{inputs.q}}]]"', "must close every quote it opens"),
        ("echo ${{inputs.q", "'${{' is never closed"),
    ],
)
def test_malformed_quoting_is_an_error(command: str, error: str) -> None:
    assert any(error in message for message in command_errors(command)), command_errors(command)


def test_dropping_an_optional_segment_cannot_move_a_placeholder_into_a_comment() -> None:
    command = "echo a $[[${{inputs.b}}]]#c ${{inputs.q}}"
    assert any("inside a shell comment" in error for error in command_errors(command))
    assert render_command(command, inputs={"b": 1, "q": "v"}, outputs={}) == "echo a 1#c v"
    with pytest.raises(ValueError, match="inside a shell comment"):
        render_command(command, inputs={"q": "v"}, outputs={})
    # A segment that uses no input is always kept, so it cannot be dropped.
    assert command_errors("echo a $[[b]]#c ${{inputs.q}}") == []


def test_a_nul_character_is_refused_naming_the_input() -> None:
    with pytest.raises(ValueError, match="input 'q' holds a NUL"):
        render_command("echo ${{inputs.q}}", inputs={"q": "a\0b"}, outputs={})


def test_validation_names_file_job_field_and_placeholder(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "pipeline.yml": """
                type: pipeline
                jobs:
                  greet:
                    type: command
                    component: ./greet.yml
                    inputs: {who: world}
            """,
            "greet.yml": """
                type: command
                inputs: {who: {type: string}}
                command: echo 'hello ${{inputs.who}}'
            """,
        },
    )
    problem = one(load_errors(path), "inside single quotes")
    assert (problem.job, problem.field) == ("greet", "command")
    assert problem.message.startswith("${{inputs.who}} is inside single quotes")
    assert "remove the single quotes" in problem.message
    assert problem.file.endswith("yml")
