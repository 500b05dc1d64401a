"""Steps' Python environments: a conda file's `pip:` list installed into a cached virtualenv.

One virtual environment per content hash (the Python it runs on, the requirements, the
installer) under settings.STEPWISE_ENVS_CACHE, built once per host under a file lock, so
two workers asking for the same environment build it once; a `.stepwise-ready` marker,
written last, is all a later step checks. uv builds it when the worker has it (about ten
times faster than pip, docs/azureml.md), else the worker's own pip into a venv made
without pip (ensurepip alone costs seconds).

Only wheels are installed (`--only-binary :all:`): building an sdist runs the package's
code, and this runs in the worker, outside the step's sandbox.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from stepwise.spec.environment import (
    conda_env,
    conda_notes,
    environment_conda,
    environment_keys,
    image_only,
    local_paths,
)

MARKER = ".stepwise-ready"
LOG_PREFIX = "[environment] "
LOCK_POLL_S = 0.5
# How often a build beats the step's heart (the executor's own interval while a step runs).
TICK_S = 1.0
# The worker's variables an installer needs: its own configuration, proxies, certificates.
BUILD_ENV_PREFIXES = ("PIP_", "UV_")
BUILD_ENV_NAMES = ("LANG", "LC_ALL", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
BUILD_ENV_NAMES += ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
# Minor versions of Python 3 looked for on PATH when the conda file pins another than the worker's.
PYTHON_MINORS = range(8, 16)


class EnvironmentBuildError(Exception):
    """The step's environment cannot be had: the step fails with this message."""


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # "3.11.7"
    prefix: str  # sys.base_prefix: what a sandbox must see for the venv's python to start


@dataclass(frozen=True)
class Plan:
    """What to build, and its key."""

    digest: str
    interpreter: Interpreter
    requirements: tuple[str, ...]

    @property
    def folder(self) -> Path:
        return Path(settings.STEPWISE_ENVS_CACHE) / self.digest


# Marks an environment that a compute target's definition stands for (`for_target`).
DEFINED_BY = "defined_by_compute_target"


def for_target(environment: str | dict[str, object], target) -> str | dict[str, object]:
    """What a step of `target` (a ComputeTarget) is built from: a name the target defines
    (`ComputeTarget.environments`) becomes that definition, its conda file inline as if the
    step's YAML held it; anything else stays as written (a name it does not define runs in the
    target's own Python)."""
    if not isinstance(environment, str) or not environment or target is None or not target.environments:
        return environment
    for key in environment_keys(environment):
        conda = target.environments.get(key)
        if conda is not None:
            return {"name": environment, "conda_file": conda, DEFINED_BY: f"{target.name} ({key})"}
    return environment


def definition_problems(definitions: object) -> list[str]:
    """What is wrong with a compute target's `environments`, in words for its form; [] when fine."""
    if not isinstance(definitions, dict):
        return [
            'a mapping of environment names to conda files\' content, e.g. {"sklearn-1.5": {"dependencies": [...]}}'
        ]
    problems = []
    for name, conda in definitions.items():
        if environment_keys(str(name))[:1] != [name]:
            problems.append(f"{str(name)[:100]!r} is not an environment name: NAME or NAME:VERSION")
        elif not isinstance(conda, dict):
            problems.append(f"{name}: give the content of a conda file, a mapping with 'dependencies'")
        else:
            read = conda_env(conda)
            problems += [f"{name}: {message}" for message in read.errors]
            if read.conda_only:
                problems.append(
                    f"{name}: conda package specs that read as no pip requirement: {', '.join(read.conda_only)}"
                )
    return problems


def plan(environment: str | dict[str, object]) -> Plan | None:
    """The environment a step's spec asks for; None when it has no conda file (the target's own)."""
    conda = environment_conda(environment)
    if conda is None:
        return None
    read = conda_env(conda)
    if read.errors:
        raise EnvironmentBuildError("; ".join(read.errors))
    if read.conda_only:
        raise EnvironmentBuildError(
            f"conda package specs that read as no pip requirement: {', '.join(read.conda_only)} "
            "(write them as 'name', 'name=1.2' or 'name>=1.2,<2', or list them under 'pip:')"
        )
    for place in local_paths(read.pip):
        check_local_path(place)
    interpreter = choose_python(read.python)
    content = {"python": interpreter.version, "pip": read.pip, "installer": "uv" if uv_binary() else "pip"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return Plan(digest=digest, interpreter=interpreter, requirements=tuple(read.pip))


def notes(environment: str | dict[str, object]) -> list[str]:
    """Lines for the step's log about what of its environment is not built as Azure ML would."""
    conda = environment_conda(environment)
    if conda is not None:
        lines = [f"{LOG_PREFIX}{note}" for note in conda_notes(conda_env(conda))]
        if isinstance(environment, dict) and environment.get(DEFINED_BY):
            defined = f"{environment.get('name')} is built as compute target {environment[DEFINED_BY]} defines it"
            lines.insert(0, f"{LOG_PREFIX}{defined}")
        return lines
    if isinstance(environment, str) and environment:
        return [
            f"{LOG_PREFIX}{environment}: no definition of this name on the step's compute target, so the step runs "
            "in the target's own Python environment (a compute target builds the named environments it defines)"
        ]
    if not image_only(environment):
        return []
    assert isinstance(environment, dict)
    what = f"image {environment['image']} is not pulled" if environment.get("image") else "build context is not built"
    return [
        f"{LOG_PREFIX}warning: the environment's {what} (it has no conda_file): "
        "the step runs in its compute target's own Python environment"
    ]


def check_local_path(place: str) -> None:
    """A local path a `pip:` line names must lie in settings.STEPWISE_ENV_PACKAGE_DIRS."""
    path = urllib.parse.unquote(urllib.parse.urlparse(place).path) if place.startswith("file:") else place
    roots = [Path(root).resolve() for root in settings.STEPWISE_ENV_PACKAGE_DIRS]
    if Path(path).is_absolute() and any(Path(path).resolve().is_relative_to(root) for root in roots):
        return
    where = ", ".join(str(root) for root in roots) or "none are configured"
    raise EnvironmentBuildError(
        f"local package path {place!r} is not in a folder this worker installs packages from "
        f"(STEPWISE_ENV_PACKAGE_DIRS: {where}); give an absolute path there, or an index URL"
    )


# -- the interpreter ----------------------------------------------------------------------


def _current() -> Interpreter:
    version = ".".join(str(part) for part in sys.version_info[:3])
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return Interpreter(str(base if base.exists() else sys.executable), version, sys.base_prefix)


def version_matches(spec: str, version: str) -> bool:
    """Whether Python `version` satisfies a conda version spec (`=3.10`, `3.10.*`, `>=3.8,<3.12`)."""
    spec = spec.replace(" ", "")
    if not spec:
        return True
    fuzzy = spec.lstrip("=")
    if re.fullmatch(r"\d+(\.\d+)*(\.\*)?", fuzzy):
        # conda's `python=3.10` (and `==3.10`) means any 3.10.x.
        wanted = fuzzy.removesuffix(".*").split(".")
        return version.split(".")[: len(wanted)] == wanted
    try:
        return SpecifierSet(spec).contains(version)
    except InvalidSpecifier:
        raise EnvironmentBuildError(f"python version {spec!r} in the conda file is not a version spec") from None


@cache
def _installed_pythons() -> tuple[Interpreter, ...]:
    found: dict[str, Interpreter] = {}
    for minor in PYTHON_MINORS:
        path = shutil.which(f"python3.{minor}")
        if path is None:
            continue
        probe = subprocess.run(
            [path, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3]))); print(sys.base_prefix)"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        # A version manager's shim exists on PATH whether or not that version is installed.
        if probe.returncode == 0 and len(lines := probe.stdout.split("\n")) >= 2:
            found.setdefault(lines[0], Interpreter(path, lines[0], lines[1]))
    return tuple(found.values())


def choose_python(spec: str) -> Interpreter:
    """The worker's own Python when it satisfies `spec` (no probing: the common, fast case), else another on PATH."""
    current = _current()
    if version_matches(spec, current.version):
        return current
    others = _installed_pythons()
    for interpreter in others:
        if version_matches(spec, interpreter.version):
            return interpreter
    have = ", ".join(sorted({current.version, *(i.version for i in others)}))
    raise EnvironmentBuildError(
        f"the conda file asks for python {spec.lstrip('=')}, which is not installed on this worker "
        f"(it has {have}): change the conda file's python pin, or install that Python on the worker's host"
    )


# -- building --------------------------------------------------------------------------------


@cache
def uv_binary() -> str | None:
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    return find_uv_bin()


def built(plan: Plan | None) -> bool:
    """Whether the plan's environment is ready on this host (or there is none to build)."""
    return plan is None or (plan.folder / MARKER).exists()


def ensure(plan: Plan, *, log: Callable[[list[str]], None], tick: Callable[[], object]) -> Path:
    """The plan's virtual environment, built first if this host has none; `log` gets the build's
    lines, `tick` is called while it runs (the step's heartbeat)."""
    folder = plan.folder
    if (folder / MARKER).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"{plan.digest}.lock").open("a") as lock:
        waited = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log([f"{LOG_PREFIX}another step on this host is building this environment: waiting for it"])
                    waited = True
                tick()
                time.sleep(LOCK_POLL_S)
        if (folder / MARKER).exists():
            return folder
        # What a build that died left behind.
        shutil.rmtree(folder, ignore_errors=True)
        try:
            _build(plan, folder, log=log, tick=tick)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        built = {"requirements": plan.requirements, "python": plan.interpreter.version}
        (folder / MARKER).write_text(json.dumps(built))
    return folder


def _build(plan: Plan, folder: Path, *, log: Callable[[list[str]], None], tick: Callable[[], object]) -> None:
    uv = uv_binary()
    installer = f"uv ({uv})" if uv else "pip"
    log([f"{LOG_PREFIX}building a virtual environment on python {plan.interpreter.version} with {installer}"])
    requirements = folder.parent / f"{plan.digest}.requirements.txt"
    requirements.write_text("".join(line + "\n" for line in plan.requirements))
    python = str(folder / "bin" / "python")
    if uv:
        create = [uv, "venv", "--quiet", "--python", plan.interpreter.path, str(folder)]
        install = [uv, "pip", "install", "--python", python, "--only-binary", ":all:", "-r", str(requirements)]
    else:
        create = [plan.interpreter.path, "-m", "venv", "--without-pip", str(folder)]
        install = [sys.executable, "-m", "pip", "--python", python, "install", "--no-input", "--progress-bar", "off"]
        install += ["--only-binary", ":all:", "-r", str(requirements)]
    try:
        _run(create, "could not create the virtual environment", log=log, tick=tick)
        if plan.requirements:
            _run(install, "could not install the environment's packages", log=log, tick=tick)
    finally:
        requirements.unlink(missing_ok=True)
    log([f"{LOG_PREFIX}environment ready: {folder}"])


def _build_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in BUILD_ENV_NAMES or k.startswith(BUILD_ENV_PREFIXES)}
    home = Path(settings.STEPWISE_ENVS_CACHE) / ".home"
    home.mkdir(parents=True, exist_ok=True)
    # Never the worker's credentials or configuration; the installers' caches are shared by builds.
    env.update(HOME=str(home), PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin:/usr/bin:/bin"]))
    env.setdefault("LANG", "C.UTF-8")
    return env


def _run(argv: list[str], failure: str, *, log: Callable[[list[str]], None], tick: Callable[[], object]) -> None:
    home = Path(settings.STEPWISE_ENVS_CACHE) / ".home"
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_build_env(),
        # Not the worker's folder: uv would read a project's configuration there.
        cwd=home,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    partial = b""
    started = last_tick = time.monotonic()
    limit = settings.STEPWISE_ENV_BUILD_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            # A download can be silent for minutes: the step's heartbeat goes on regardless.
            if selector.select(timeout=TICK_S):
                data = os.read(fd, 65536)
                if not data:
                    break
                *complete, partial = (partial + data).split(b"\n")
                new = [raw.decode("utf-8", errors="replace").rstrip("\r") for raw in complete]
                lines += new
                log([LOG_PREFIX + line for line in new])
            if time.monotonic() - last_tick >= TICK_S:
                last_tick = time.monotonic()
                tick()
            if time.monotonic() - started > limit:
                proc.kill()
                proc.wait()
                raise EnvironmentBuildError(f"{failure}: no result after {limit} s (STEPWISE_ENV_BUILD_TIMEOUT_S)")
    if partial:
        lines.append(partial.decode("utf-8", errors="replace"))
        log([LOG_PREFIX + lines[-1]])
    proc.stdout.close()
    code = proc.wait()
    if code != 0:
        raise EnvironmentBuildError(f"{failure} (exit code {code}): {_reason(lines)}")


def _reason(lines: list[str]) -> str:
    """The installer's own error line: pip's `ERROR: ...`, uv's `× ...` and what follows it."""
    text = [line.strip() for line in lines if line.strip()]
    errors = [line for line in text if line.startswith("ERROR:")]
    if errors:
        return errors[-1].removeprefix("ERROR:").strip()
    for i, line in enumerate(text):
        if line.startswith(("×", "error:")):
            return " ".join(text[i : i + 3])
    return text[-1] if text else "no output"


def activate(env: dict[str, str], folder: Path) -> None:
    """Make the step's environment `env` run in the virtual environment at `folder`."""
    env["VIRTUAL_ENV"] = str(folder)
    env["PATH"] = os.pathsep.join([str(folder / "bin"), env["PATH"]])
    env.pop("PYTHONHOME", None)


def has_package(folder: Path, name: str) -> bool:
    return any(folder.glob(f"lib/python*/site-packages/{name}/__init__.py"))
