"""What a step's `environment` asks for, read from its conda file: a Python and pip packages.

Azure ML builds a Docker image from `image` plus `conda_file`; Stepwise builds no image: it
installs the conda file's `pip:` list into a virtual environment (runs/environments.py).
Conda's own packages cannot be had that way, so naming any but Python and pip is an error
that `validate` reports, not a surprise at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Conda packages that only serve to install the `pip:` list, which Stepwise installs its own way.
PROVIDED = ("pip", "setuptools", "wheel")
# A conda match spec's name: what comes before the version, build or channel parts.
_SPEC_NAME = re.compile(r"^(?:[\w.-]+::)?([A-Za-z0-9_.-]+)")


@dataclass
class CondaEnv:
    """The parts of a conda file Stepwise uses."""

    # The version spec after `python` as conda writes it (`3.10`, `>=3.8`), "" when any will do.
    python: str = ""
    pip: list[str] = field(default_factory=list)
    # Conda packages that are not Python or pip: refused (`validate` names them).
    conda_only: list[str] = field(default_factory=list)
    # Conda packages skipped: Stepwise's installer stands in for them.
    provided: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def conda_env(conda: object) -> CondaEnv:
    """Read an inlined conda file (a mapping); malformed parts are listed in `errors`."""
    result = CondaEnv()
    if not isinstance(conda, dict):
        result.errors.append("conda_file must be a mapping with `dependencies`")
        return result
    deps = conda.get("dependencies") or []
    if not isinstance(deps, list):
        result.errors.append("conda_file dependencies must be a list")
        return result
    for dep in deps:
        if isinstance(dep, dict):
            for key, value in dep.items():
                if key != "pip":
                    result.errors.append(f"conda_file dependency '{key}:' is not supported (only 'pip:')")
                elif not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
                    result.errors.append("conda_file 'pip:' must be a list of requirement strings")
                else:
                    result.pip.extend(str(v).strip() for v in value if str(v).strip())
            continue
        if not isinstance(dep, str):
            result.errors.append(f"conda_file dependency {dep!r} is not a package spec")
            continue
        spec = dep.strip()
        match = _SPEC_NAME.match(spec)
        name = match.group(1).lower() if match else spec
        if name == "python":
            result.python = spec[match.end() :].strip() if match else ""
        elif name in PROVIDED:
            result.provided.append(spec)
        else:
            result.conda_only.append(spec)
    return result


def environment_conda(environment: str | dict[str, object]) -> object | None:
    """The inlined conda file of an inline environment; None when it has none."""
    if isinstance(environment, dict):
        return environment.get("conda_file")
    return None


def image_only(environment: str | dict[str, object]) -> bool:
    """An inline environment naming an image (or a build context) and no conda file: Stepwise
    pulls no image, so the step runs in its target's own environment."""
    return isinstance(environment, dict) and environment.get("conda_file") is None and bool(environment)
