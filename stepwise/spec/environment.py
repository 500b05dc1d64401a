"""What a step's `environment` asks for, read from its conda file: a Python and pip packages.

Azure ML builds a Docker image from `image` plus `conda_file`; Stepwise builds no image: it
installs the conda file's `pip:` list into a virtual environment (runs/environments.py). A
conda package is installed from PyPI under its PyPI name, its conda version spec read as pip's
(Azure ML's conda files name numpy, scikit-learn, pytorch there as often as under `pip:`);
the libraries of the system (CUDA, MKL, compilers' runtimes) come from the worker's host. What
cannot be read that way is an error that `validate` reports, not a surprise at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Conda packages that only serve to install the `pip:` list, which Stepwise installs its own way.
PROVIDED = ("pip", "setuptools", "wheel")
# Conda packages that are libraries of the system, not Python's: a virtual environment cannot
# hold them, the worker's host provides them (its CUDA driver and toolkit, BLAS, C runtimes).
HOST_LIBRARIES = frozenset(
    {
        "cudatoolkit",
        "cuda-toolkit",
        "cuda",
        "cudnn",
        "nccl",
        "pytorch-cuda",
        "cpuonly",
        "mkl",
        "intel-openmp",
        "openblas",
        "libblas",
        "blas",
        "libgcc-ng",
        "libstdcxx-ng",
        "_libgcc_mutex",
        "_openmp_mutex",
        "openssl",
        "ca-certificates",
    }
)
# Conda packages whose PyPI name is another.
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-xgboost": "xgboost",
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "opencv": "opencv-python-headless",
    "py-opencv": "opencv-python-headless",
    "tensorflow-gpu": "tensorflow",
    "msgpack-python": "msgpack",
    "python-graphviz": "graphviz",
}
# The pip options a `pip:` line may hold: where packages come from. Never one that reads another
# file (`-r`, `-c`) or installs from a folder in place (`-e`): the worker installs, not the step.
PIP_OPTIONS = {
    "--index-url": True,
    "-i": True,
    "--extra-index-url": True,
    "--find-links": True,
    "-f": True,
    "--trusted-host": True,
    "--no-index": False,
    "--pre": False,
    "--prefer-binary": False,
}
# Options whose value is a place packages come from (a URL, or a local folder).
PIP_SOURCE_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f")
# A conda match spec's name: what comes before the version, build or channel parts.
_SPEC_NAME = re.compile(r"^(?:[\w.-]+::)?([A-Za-z0-9_.-]+)")


@dataclass
class CondaEnv:
    """The parts of a conda file Stepwise uses."""

    # The version spec after `python` as conda writes it (`3.10`, `>=3.8`), "" when any will do.
    python: str = ""
    pip: list[str] = field(default_factory=list)
    # Conda packages installed from PyPI: (the conda spec, the pip requirement it became).
    from_conda: list[tuple[str, str]] = field(default_factory=list)
    # Conda packages of the system, left to the worker's host.
    host: list[str] = field(default_factory=list)
    # Conda specs that read as no pip requirement: refused (`validate` names them).
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
                    lines = [str(v).strip() for v in value if str(v).strip()]
                    result.errors.extend(filter(None, (pip_line_problem(line) for line in lines)))
                    result.pip.extend(lines)
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
        elif name in HOST_LIBRARIES:
            result.host.append(spec)
        elif (requirement := conda_to_pip(spec)) is not None:
            result.from_conda.append((spec, requirement))
        else:
            result.conda_only.append(spec)
    # Ahead of the `pip:` list, whose options (an index, --no-index) pip applies to every line.
    result.pip[:0] = [requirement for _spec, requirement in result.from_conda]
    return result


def conda_notes(read: CondaEnv) -> list[str]:
    """What differs from a conda build, said at validation and in the step's build log."""
    notes = []
    if read.from_conda:
        installed = ", ".join(f"{spec} as {requirement}" for spec, requirement in read.from_conda)
        notes.append(f"conda packages installed from PyPI: {installed}")
    if read.host:
        notes.append(
            f"{', '.join(read.host)}: not installed (libraries of the system: the worker's host provides them)"
        )
    return notes


_CONDA_SPEC = re.compile(r"^(?:[\w.-]+::)?([A-Za-z0-9_.-]+)\s*(.*)$")
_PIP_VERSIONS = re.compile(r"^(?:==|>=|<=|!=|~=|>|<)[\w.*+!-]+(?:,(?:==|>=|<=|!=|~=|>|<)[\w.*+!-]+)*$")


def conda_to_pip(spec: str) -> str | None:
    """A conda match spec as a pip requirement; None when it does not read as one.

    conda's `name=1.2` (and `name 1.2`) is 1.2 or any 1.2.x: pip's `==1.2.*`; with a build
    string (`name=1.2=py310_0`) the version is exact. Operators (`>=1.2,<2`, `==1.2.3`) are
    pip's own; conda's `|` and build-only specs are not.
    """
    match = _CONDA_SPEC.match(spec.strip())
    if match is None:
        return None
    name, rest = match.group(1), match.group(2).strip()
    name = CONDA_TO_PYPI.get(name.lower(), name)
    if not rest:
        return name
    if rest[0] in "<>!~" or rest.startswith("=="):
        versions = rest.replace(" ", "")
    else:
        parts = [part for part in re.split(r"[=\s]+", rest) if part]
        if not parts:
            return None
        version, *build = parts
        exact = version.endswith("*") or bool(build)
        versions = f"=={version}" if exact else f"=={version}.*"
    return f"{name}{versions}" if _PIP_VERSIONS.match(versions) else None


_LONG_OPTION = re.compile(r"^(--[\w-]+)(?:[=\s]\s*(.*))?$")
_SHORT_OPTION = re.compile(r"^(-\w)\s*(.*)$")


def pip_option(line: str) -> tuple[str, str] | None:
    """(option, value) of a `pip:` line that is an option (`--find-links x`, `-f x`); None for a requirement."""
    match = _LONG_OPTION.match(line) or _SHORT_OPTION.match(line)
    if not line.startswith("-") or match is None:
        return None
    return match.group(1), (match.group(2) or "").strip()


def pip_line_problem(line: str) -> str | None:
    """Why a `pip:` line cannot be used; None when it can."""
    if "\n" in line or "\r" in line or line.endswith("\\"):
        return f"pip line {line!r} must be one line"
    if "${" in line:
        # pip expands `${NAME}` from the installer's environment, which is the worker's.
        return f"pip line {line!r}: variables (${{...}}) are not expanded"
    if not line.startswith("-"):
        return None
    parsed = pip_option(line)
    option, value = parsed if parsed is not None else (line, "")
    if option not in PIP_OPTIONS:
        allowed = ", ".join(sorted(PIP_OPTIONS))
        return f"pip option '{option}' is not supported in a conda file (only {allowed})"
    if PIP_OPTIONS[option] and not value:
        return f"pip option '{option}' needs a value"
    if not PIP_OPTIONS[option] and value:
        return f"pip option '{option}' takes no value"
    return None


def _is_local(place: str) -> bool:
    return place.startswith("file:") or ("://" not in place and ("/" in place or place.startswith(("~", "."))))


def local_paths(lines: list[str]) -> list[str]:
    """The local files and folders `pip:` lines name (`-f /wheels`, `x @ file:///a.whl`, `./a.whl`)."""
    found = []
    for line in lines:
        parsed = pip_option(line)
        if parsed is not None:
            place = parsed[1] if parsed[0] in PIP_SOURCE_OPTIONS else ""
        else:
            # A direct reference's URL, or the line itself (a bare path, or a name and version).
            place = line.split(";", 1)[0].split(" @ ", 1)[-1].strip()
        if place and _is_local(place):
            found.append(place)
    return found


def environment_conda(environment: str | dict[str, object]) -> object | None:
    """The inlined conda file of an inline environment; None when it has none."""
    if isinstance(environment, dict):
        return environment.get("conda_file")
    return None


def image_only(environment: str | dict[str, object]) -> bool:
    """An inline environment naming an image (or a build context) and no conda file: Stepwise
    pulls no image, so the step runs in its target's own environment."""
    return isinstance(environment, dict) and environment.get("conda_file") is None and bool(environment)


# A registered environment, as components name one: `azureml:NAME:VERSION`, `azureml:NAME@LABEL`,
# `NAME`, or a registry's `azureml://registries/REG/environments/NAME/(versions/V | labels/L)`.
_REGISTRY_ENVIRONMENT = re.compile(
    r"azureml://registries/[^/]+/environments/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+)|/labels/[^/]+)?/?"
)
_NAMED_ENVIRONMENT = re.compile(r"(?:azureml:)?(?P<name>[A-Za-z0-9][\w.-]*)(?::(?P<version>[\w.-]+)|@[\w.-]+)?")


def environment_keys(reference: str) -> list[str]:
    """The names a compute target may define a named environment under, the most exact first:
    `azureml:sklearn-1.5:3` -> ["sklearn-1.5:3", "sklearn-1.5"]; `azureml:sklearn-1.5@latest` and
    `azureml://registries/azureml/environments/sklearn-1.5/labels/latest` -> ["sklearn-1.5"]."""
    text = reference.strip()
    found = _REGISTRY_ENVIRONMENT.fullmatch(text) or _NAMED_ENVIRONMENT.fullmatch(text)
    if found is None:
        return []
    name, version = found.group("name"), found.group("version")
    return [f"{name}:{version}", name] if version else [name]
