from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from stepwise.spec import command_references, render_command
from stepwise.spec.command import command_errors

ARGV = f"{sys.executable} -c 'import sys; print(repr(sys.argv[1:]))'"


def run_argv(command: str, tmp_path) -> list[str]:
    """Run a rendered command with bash and return the arguments the python program received."""
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, check=True)
    return ast.literal_eval(result.stdout.strip())


def test_substitutes_inputs_and_outputs_quoted():
    rendered = render_command(
        "python train.py --lr ${{inputs.lr}} --name ${{ inputs.name }} --out ${{outputs.model}}",
        inputs={"lr": 0.01, "name": "my model"},
        outputs={"model": "/tmp/out dir"},
    )
    assert rendered == "python train.py --lr 0.01 --name 'my model' --out '/tmp/out dir'"


def test_booleans_render_as_azure_ml_does():
    assert render_command("x ${{inputs.a}} ${{inputs.b}}", inputs={"a": True, "b": False}, outputs={}) == "x True False"


def test_optional_segment_dropped_when_input_unset_and_kept_when_set():
    command = "python train.py $[[--max_depth ${{inputs.max_depth}}]] --out ${{outputs.m}}"
    assert render_command(command, inputs={"max_depth": None}, outputs={"m": "o"}) == "python train.py  --out o"
    assert render_command(command, inputs={}, outputs={"m": "o"}) == "python train.py  --out o"
    assert (
        render_command(command, inputs={"max_depth": 3}, outputs={"m": "o"}) == "python train.py --max_depth 3 --out o"
    )


def test_optional_segment_with_several_inputs_needs_all():
    command = "run $[[--range ${{inputs.lo}} ${{inputs.hi}}]]"
    assert render_command(command, inputs={"lo": 1, "hi": None}, outputs={}) == "run "
    assert render_command(command, inputs={"lo": 1, "hi": 2}, outputs={}) == "run --range 1 2"


def test_missing_required_input_names_it():
    with pytest.raises(ValueError, match="input 'epochs'"):
        render_command("train --epochs ${{inputs.epochs}}", inputs={"epochs": None}, outputs={})
    with pytest.raises(ValueError, match="input 'epochs'"):
        render_command("train --epochs ${{inputs.epochs}}", inputs={}, outputs={})
    with pytest.raises(ValueError, match="output 'model'"):
        render_command("train --out ${{outputs.model}}", inputs={}, outputs={})


def test_malformed_templates_raise():
    with pytest.raises(ValueError, match="never closed"):
        render_command("x $[[--a ${{inputs.a}}", inputs={"a": 1}, outputs={})
    with pytest.raises(ValueError, match="unsupported expression"):
        render_command("x ${{parent.inputs.a}}", inputs={}, outputs={})
    assert command_errors("x $[[ a $[[ b ]] ]]") == ["optional segments '$[[ ... ]]' cannot be nested"]


def test_command_references():
    refs = command_references("a ${{inputs.x}} $[[--y ${{ inputs.y }}]] ${{outputs.z}} ${{outputs.z}}")
    assert refs == ({"x", "y"}, {"z"})
    assert command_references("echo hi") == (set(), set())


@pytest.mark.parametrize(
    "hostile",
    [
        "; touch pwned",
        "$(touch pwned)",
        "`touch pwned`",
        "a\ntouch pwned",
        "' ; touch pwned; echo '",
        '" ; touch pwned; echo "',
        "$HOME ${PATH} *",
        "&& touch pwned ||",
        "> pwned",
        "",
        "-- --help",
        "\\",
    ],
)
def test_hostile_values_arrive_as_one_literal_argument(hostile, tmp_path):
    command = render_command(f"{ARGV} ${{{{inputs.x}}}}", inputs={"x": hostile}, outputs={})
    assert run_argv(command, tmp_path) == [hostile]
    assert not (tmp_path / "pwned").exists()


def test_hostile_output_path_and_optional_segment(tmp_path):
    command = render_command(
        f"{ARGV} $[[--flag ${{{{inputs.flag}}}}]] ${{{{outputs.o}}}}",
        inputs={"flag": "$(touch pwned)"},
        outputs={"o": "out; touch pwned"},
    )
    assert run_argv(command, tmp_path) == ["--flag", "$(touch pwned)", "out; touch pwned"]
    assert not (tmp_path / "pwned").exists()


def test_numbers_and_booleans_reach_the_program(tmp_path):
    command = render_command(
        f"{ARGV} ${{{{inputs.n}}}} ${{{{inputs.f}}}} ${{{{inputs.b}}}}",
        inputs={"n": -3, "f": 1e-05, "b": True},
        outputs={},
    )
    assert run_argv(command, tmp_path) == ["-3", "1e-05", "True"]
