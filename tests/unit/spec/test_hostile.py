"""Hostile YAML and files: rejected with a clear problem after bounded work.

The work is bounded by memory (tracemalloc's peak, which does not depend on how loaded the
machine is) rather than by a wall-clock time: each ceiling is a small fraction of what the
document would cost if the limit were missing.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable

import pytest

from stepwise.spec import SpecError, load_pipeline, parse_text

from .helpers import errors_of, load_errors, one, write

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
type: pipeline
"""


MiB = 1024 * 1024


def peak_bytes(fn: Callable[[], object]) -> tuple[object, int]:
    """fn's result and the most memory Python allocated while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bounded_errors(text: str, **kwargs) -> tuple[list, int]:
    def refused() -> list:
        with pytest.raises(SpecError) as info:
            parse_text(text, **kwargs)
        return info.value.problems

    return peak_bytes(refused)


def test_alias_bomb_is_rejected_before_expanding():
    problems, peak = bounded_errors(BILLION_LAUGHS)
    # Expanded, the document has 9**9 strings (gigabytes); refused, a few kilobytes.
    assert peak < 1 * MiB
    assert "aliases expand" in problems[0].message
    assert problems[0].file == "pipeline.yml"


def test_recursive_alias_is_rejected():
    problems, _ = bounded_errors("a: &a [*a]\n")
    assert "recursive" in problems[0].message


def test_many_aliases_are_rejected():
    text = "x: &x 1\nl: [" + ",".join(["*x"] * 500) + "]\n"
    problems, _ = bounded_errors(text)
    assert "too many YAML aliases" in problems[0].message


def test_small_anchors_and_merge_keys_are_fine():
    text = """\
    type: pipeline
    jobs:
      a: &job
        type: command
        command: echo hi
        environment_variables: &env {A: "1"}
      b:
        <<: *job
        environment_variables: *env
    """
    p, _ = parse_text(text.replace("\n    ", "\n").lstrip())
    assert p.jobs["b"].command == "echo hi"
    assert p.jobs["b"].environment_variables == {"A": "1"}


def test_deep_nesting_is_rejected_at_the_depth_limit():
    problems, peak = bounded_errors("x: " + "[" * 100_000 + "]" * 100_000)
    # The scanner stops at the 51st level instead of tokenizing 200,000 brackets.
    assert peak < 8 * MiB
    assert "nested too deeply" in problems[0].message
    problems, _ = bounded_errors("x:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)) + "  " * 60 + "v\n")
    assert "nested too deeply" in problems[0].message


def test_huge_text_is_rejected_by_size_before_parsing():
    problems, peak = bounded_errors("x: " + "a" * (50 * MiB))
    # Not even encoded to count its bytes: no copy of the 50 MiB is made.
    assert peak < 1 * MiB
    assert "larger than 1048576 bytes" in problems[0].message


def test_huge_file_is_rejected_by_size(tmp_path):
    path = tmp_path / "pipeline.yml"
    with path.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    problems, peak = peak_bytes(lambda: load_errors(path))
    # At most the limit plus one byte is read, never the 50 MiB.
    assert peak < 2 * MiB
    assert "larger than" in problems[0].message
    assert problems[0].file == str(path)


def test_many_nodes_are_rejected_at_the_node_limit():
    text = "x: [" + "1," * 400_000 + "]"
    problems, peak = bounded_errors(text)
    # Composing stops at 20,000 nodes (about 12 MiB); all 400,000 would take twenty times that.
    assert peak < 40 * MiB
    assert "too many nodes" in problems[0].message


def test_binary_junk_is_rejected(tmp_path):
    path = tmp_path / "pipeline.yml"
    path.write_bytes(os.urandom(4096) + b"\x00")
    assert "binary" in load_errors(path)[0].message
    path.write_bytes(b"type: pipeline\nname: caf\xe9\n")
    problem = load_errors(path)[0]
    assert problem.message == "not UTF-8 text" and problem.line == 2
    assert "special characters" in errors_of("type: pipeline\nname: \x07\n")[0].message


@pytest.mark.parametrize(
    "text, kind",
    [("", "empty"), ("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")],
)
def test_top_level_must_be_a_mapping(text, kind):
    assert kind in errors_of(text)[0].message


def test_syntax_error_reports_the_line():
    problem = errors_of("type: pipeline\njobs:\n  a:\n    command: [unclosed\n    type: command\n")[0]
    assert problem.message.startswith("invalid YAML")
    assert problem.line in (4, 5, 6)
    problem = errors_of("type: pipeline\njobs:\n  a: {\n")[0]
    assert problem.line is not None


def test_duplicate_keys_are_rejected_with_line():
    problem = errors_of("type: pipeline\njobs:\n  a:\n    command: x\n  a:\n    command: y\n")[0]
    assert "duplicate key 'a'" in problem.message and problem.line == 5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"x\\0"', "holds a NUL character"),
        ('"x\\ud800"', "unpaired surrogate"),
        (".inf", "'.inf' is not a finite number"),
        ("-.Inf", "is not a finite number"),
        (".nan", "'.nan' is not a finite number"),
    ],
)
def test_escapes_no_command_line_or_database_can_hold_are_refused_with_their_line(value, message):
    # They imported, then every run of the pipeline failed to start (a 500) or its edit page did.
    problem = errors_of(f"type: pipeline\ndisplay_name: p\njobs:\n  a:\n    command: echo {value}\n    x: {value}\n")[0]
    assert message in problem.message and problem.line in (4, 5, 6)


def test_python_tags_are_refused():
    assert "constructor" in errors_of("type: pipeline\nx: !!python/object/apply:os.system ['id']\n")[0].message


def test_oversized_component_file(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": "type: pipeline\njobs:\n  a:\n    component: ./c.yml\n",
            "c.yml": "x: " + "a" * 5000 + "\n",
        },
    )
    problem = load_errors(path, max_bytes=1000)[0]
    assert "larger than 1000 bytes" in problem.message and problem.file.endswith("c.yml") and problem.job == "a"


def code_pipeline(tmp_path, extra_files: dict | None = None):
    return write(
        tmp_path,
        {
            "pipeline.yml": """\
                type: pipeline
                jobs:
                  a:
                    type: command
                    code: ./src
                    command: python main.py
            """,
            "src/main.py": "print('hi')\n",
            **(extra_files or {}),
        },
    )


def test_code_folder_skips_pycache_and_git(tmp_path):
    path = code_pipeline(
        tmp_path, {"src/__pycache__/main.cpython-311.pyc": b"\x00junk", "src/.git/HEAD": "ref", "src/pkg/m.py": "x=1\n"}
    )
    p, _ = load_pipeline(path)
    assert sorted(p.files) == ["code/a/main.py", "code/a/pkg/m.py"]


def test_symlink_out_of_the_code_folder_is_refused(tmp_path):
    path = code_pipeline(tmp_path)
    secret = tmp_path.parent / f"{tmp_path.name}-secret.txt"
    secret.write_text("secret")
    (tmp_path / "src" / "leak.txt").symlink_to(secret)
    problem = one(load_errors(path), "points outside the folder")
    assert problem.job == "a" and problem.field == "code" and problem.file == str(path)


def test_symlink_to_a_folder_outside_is_refused(tmp_path):
    path = code_pipeline(tmp_path)
    (tmp_path / "src" / "etc").symlink_to("/etc")
    one(load_errors(path), "points outside the folder")


def test_symlink_inside_the_folder_is_read(tmp_path):
    path = code_pipeline(tmp_path)
    (tmp_path / "src" / "alias.py").symlink_to(tmp_path / "src" / "main.py")
    (tmp_path / "src" / "loop").symlink_to(tmp_path / "src")
    p, _ = load_pipeline(path)
    assert p.files["code/a/alias.py"] == b"print('hi')\n"


def test_code_outside_the_pipeline_folder_is_refused(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.py").write_text("x")
    path = write(
        tmp_path / "p",
        {"pipeline.yml": "type: pipeline\njobs:\n  a:\n    code: ../outside\n    command: python x.py\n"},
    )
    one(load_errors(path), "outside the pipeline folder")
    p, _ = load_pipeline(path, root=tmp_path)
    assert p.files == {"code/a/x.py": b"x"}


def test_total_file_size_is_bounded(tmp_path):
    path = code_pipeline(tmp_path, {"src/big.bin": b"x" * 5000})
    problem = one(load_errors(path, max_files_bytes=4000), "exceed 4000 bytes")
    assert problem.job == "a" and problem.field == "code"


def test_fifo_in_code_folder_is_skipped(tmp_path):
    path = code_pipeline(tmp_path)
    os.mkfifo(tmp_path / "src" / "pipe")
    p, _ = load_pipeline(path)
    assert sorted(p.files) == ["code/a/main.py"]
