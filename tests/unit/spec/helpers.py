"""Shared helpers for the spec tests: write fixtures, collect problems, run a pipeline locally."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stepwise.spec import (
    DataPath,
    JobOutput,
    ParentInput,
    Pipeline,
    Problem,
    SpecError,
    load_pipeline,
    parse_text,
    render_command,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    """Write files (dedented text or bytes) under folder; return the folder's pipeline.yml path."""
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))
    return folder / "pipeline.yml"


def errors_of(text: str, **kwargs: object) -> list[Problem]:
    """The errors parse_text raises for text (dedented); fails if it parses."""
    with pytest.raises(SpecError) as info:
        parse_text(textwrap.dedent(text), **kwargs)  # type: ignore[arg-type]
    return [p for p in info.value.problems if p.severity == "error"]


def load_errors(path: Path, **kwargs: object) -> list[Problem]:
    with pytest.raises(SpecError) as info:
        load_pipeline(path, **kwargs)  # type: ignore[arg-type]
    return [p for p in info.value.problems if p.severity == "error"]


def one(problems: list[Problem], needle: str) -> Problem:
    """The single problem whose message contains needle."""
    found = [p for p in problems if needle in p.message]
    assert len(found) == 1, f"{needle!r} not found once in {[str(p) for p in problems]}"
    return found[0]


def _order(p: Pipeline) -> list[str]:
    deps = p.upstream()
    done: list[str] = []
    while len(done) < len(p.jobs):
        ready = [n for n in p.jobs if n not in done and deps[n] <= set(done)]
        assert ready, "cycle"
        done.extend(ready)
    return done


def run_locally(p: Pipeline, workdir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run each step as the executor will: a shell command in a folder holding its code."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    for key, data in p.files.items():
        if key.startswith("data/"):
            (workdir / key).parent.mkdir(parents=True, exist_ok=True)
            (workdir / key).write_bytes(data)

    def data_path(d: DataPath) -> str:
        folder = workdir / d.key
        if d.type == "uri_file":
            return str(next(folder.iterdir()))
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    outputs: dict[tuple[str, str], str] = {}
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    for name in _order(p):
        step = p.jobs[name]
        cwd = workdir / "steps" / name
        cwd.mkdir(parents=True)
        for rel, data in p.step_files(name).items():
            (cwd / rel).parent.mkdir(parents=True, exist_ok=True)
            (cwd / rel).write_bytes(data)
        values: dict[str, object | None] = {}
        for input_name, decl in step.input_decls.items():
            binding = step.inputs.get(input_name)
            if isinstance(binding, ParentInput):
                parent = p.inputs[binding.name]
                values[input_name] = data_path(parent.data) if parent.data else parent.default
            elif isinstance(binding, JobOutput):
                values[input_name] = outputs[(binding.job, binding.output)]
            elif isinstance(binding, DataPath):
                values[input_name] = data_path(binding)
            else:
                values[input_name] = binding if binding is not None else decl.default
        step_outputs = {}
        for output_name in step.output_decls:
            folder = workdir / "outputs" / name / output_name
            folder.mkdir(parents=True)
            step_outputs[output_name] = outputs[(name, output_name)] = str(folder)
        command = render_command(step.command, inputs=values, outputs=step_outputs)
        result = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, f"{name} failed:\n{command}\n{result.stdout}\n{result.stderr}"
        results[name] = result
    return results
