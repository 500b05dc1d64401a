"""One step attempt in a worker: prepare its folder, run it as a subprocess, record it.

The subprocess runs in its own session, so cancel, timeout and fencing kill its
whole process tree. One thread does everything (select() on the output pipe with a
short timeout), so each flush of log lines doubles as the heartbeat, and the
compare-and-set on (state=running, attempt) fences a stale attempt out of logs,
states and artifacts alike.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import importlib.util
import json
import logging
import math
import os
import random
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import stepwise
from pipelines_ui.models import FileBlob
from runs import (
    artifacts,
    broadcast,
    distribution,
    environments,
    logs,
    orchestrator,
    processes,
    queues,
    rows,
    sweep_driver,
    transfer,
    transitions,
    trial_handles,
)
from runs import sandbox as sandbox_
from runs import worker as worker_
from runs.artifact_files import Manifest
from runs.data_assets import register_named_outputs, run_data_artifacts
from runs.models import Artifact, ComputeTarget, Isolation, Metric, Param, StepOutput, StepRun, StepState, SweepTrial
from runs.registry.services import register_named_model_outputs
from runs.secrets import Masker, SecretError, secrets_decrypt
from runs.specs import (
    resolve_literal_inputs,
    resolve_secret_inputs,
    step_command,
    tree_hash,
    version_file_map,
    version_spec,
)
from runs.step_records import MetricRecord, ParamRecord, live_sample
from runs.transitions import step_run_fail, step_run_try_transition
from stepwise.spec import EnvRef, render_command, secret_env_var
from stepwise.spec.model import DataPath, JobOutput, ParentInput, Pipeline, Step

log = logging.getLogger(__name__)

# On steps' PYTHONPATH: `stepwise` (a link to the Django-free package, for `from stepwise import
# log_metric`) and, where mlflow is not installed, a shim that sends mlflow's calls there. A
# sandboxed step sees this folder read-only, its links followed, and nothing else of the server.
SDK_DIR = Path(__file__).resolve().parent / "step_sdk"
# What the link points at.
STEPWISE_PACKAGE_DIR = Path(stepwise.__file__).resolve().parent
# Started as a distributed step's one process, which starts its ranks (stdlib only): a link in
# SDK_DIR to runs/distribution.py.
DISTRIBUTION_LAUNCHER = SDK_DIR / "stepwise_distribution.py"
FLUSH_INTERVAL_S = 0.1
FLUSH_LINES = 500
CHECK_INTERVAL_S = 1.0
KILL_GRACE_S = 3.0
# How long output is still read after the step's shell ended while a stray holds the pipe.
STRAY_DRAIN_S = 1.0


def attempt_workdir(step_run: StepRun) -> Path:
    """An attempt's folder on its worker's host: per install, since run ids repeat across databases."""
    return (
        settings.STEPWISE_WORKDIR
        / queues.instance_id()
        / f"run-{step_run.run_id}"
        / f"{step_run.name}-{step_run.attempt}"
    )


class StepSetupError(Exception):
    """The step cannot start (a missing input, a bad binding): it fails with this reason."""


# The worker's environment is not the step's: a step gets these of it (the locale, the time
# zone) and settings.STEPWISE_STEP_ENV_PASSTHROUGH, never its credentials or configuration.
ENV_PASSTHROUGH = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Targets this worker warned about once: their steps run unsandboxed (`isolation: none`).
_unisolated_targets: set[str] = set()


def step_environment(*, workdir: Path, declared: dict[str, str], stepwise: dict[str, str]) -> dict[str, str]:
    """The step's whole environment: an allow-list, then the variables its target and spec declare,
    then Stepwise's own (its inputs, outputs, metrics and secrets), which nothing replaces."""
    allowed = (*ENV_PASSTHROUGH, *settings.STEPWISE_STEP_ENV_PASSTHROUGH)
    env = {key: os.environ[key] for key in allowed if key in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update(HOME=str(workdir / "home"), TMPDIR=str(workdir / "tmp"), PATH=SYSTEM_PATH)
    env.update(declared)
    env.update(stepwise)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env["PYTHONPATH"] = os.pathsep.join(_python_path_extra() + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@dataclass
class Prepared:
    command: str
    cwd: Path
    env: dict[str, str]
    outputs: dict[str, tuple[Path, str]] = field(default_factory=dict)  # name -> (path, type)
    metrics_file: Path | None = None
    # The values of the step's secret inputs, to mask in its log.
    secrets: list[str] = field(default_factory=list)
    # None when its compute target runs steps without isolation (`isolation: none`).
    sandbox: sandbox_.Sandbox | None = None
    # What starts: the command in a shell, or the launcher of its ranks (runs/distribution.py).
    argv: list[str] = field(default_factory=list)
    # The virtual environment its conda file asks for (runs/environments.py), built before it starts.
    environment: environments.Plan | None = None
    # {input: local path} of its data inputs (a data transfer step reads them in the worker).
    data_inputs: dict[str, str] = field(default_factory=dict)


def _write_files(dest: Path, files: dict[str, str]) -> None:
    """Materialize `{relpath: blob sha}` under dest; relpaths were checked when the version was saved."""
    if not files:
        return
    blobs = {b.sha256: bytes(b.content) for b in FileBlob.objects.filter(sha256__in=set(files.values()))}
    root = dest.resolve()
    for rel, sha in files.items():
        target = (dest / rel).resolve()
        if not target.is_relative_to(root):
            raise StepSetupError(f"file {rel!r} would be written outside the step's folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blobs[sha])


def _open_step_file(path: Path) -> BinaryIO | None:
    """A regular file that the step wrote in its folder, opened for reading; None when there is none.

    This process runs outside the sandbox: a link the step put there could name any file of the
    worker's (another step's metrics, say) and a FIFO or device could hang it or fill its memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # missing, or a link (ELOOP)
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def _files_under(file_map: dict[str, str], prefix: str) -> dict[str, str]:
    prefix = prefix.rstrip("/") + "/"
    return {k[len(prefix) :]: v for k, v in file_map.items() if k.startswith(prefix)}


def _data_path(file_map: dict[str, str], key: str, kind: str) -> Path:
    """Local data of a version, materialized once per content hash and shared read-only."""
    digest = tree_hash(file_map, key)
    if digest is None:
        raise StepSetupError(f"data input {key!r} has no files")
    folder = settings.STEPWISE_WORKDIR / "data" / digest
    if not folder.exists():
        staging = folder.with_name(f"{digest}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        _write_files(staging, _files_under(file_map, key))
        try:
            os.rename(staging, folder)
        except OSError:
            # Another worker materialized the same data first.
            shutil.rmtree(staging, ignore_errors=True)
    if kind == "uri_file":
        return next(p for p in folder.iterdir() if p.is_file())
    return folder


@functools.cache
def _python_path_extra() -> list[str]:
    paths = [str(SDK_DIR)]
    if importlib.util.find_spec("mlflow") is None:
        paths.append(str(SDK_DIR / "mlflow_shim"))
    return paths


def prepare(
    step_run: StepRun,
    pipeline: Pipeline,
    step: Step,
    file_map: dict[str, str],
    workdir: Path,
    *,
    held: contextlib.ExitStack | None = None,
    target: ComputeTarget | None = None,
    process_tag: str | None = None,
) -> Prepared:
    """The step's command, folder and environment; with `held`, its inputs stay in the cache until it closes.

    `process_tag` tags its processes in place of the attempt's own tag (a sweep's trials, each
    killed apart from the others; see processes.kill_attempt_processes).
    """
    run = step_run.run
    target = target or ComputeTarget(name="default")
    shutil.rmtree(workdir, ignore_errors=True)
    code_dir = workdir / "code"
    if not sandbox_.take_spare(workdir):
        code_dir.mkdir(parents=True)
    _write_files(code_dir, _files_under(file_map, f"code/{step.name}"))

    values: dict[str, object | None] = dict(resolve_literal_inputs(pipeline, step, run.inputs))
    try:
        secrets = resolve_secret_inputs(pipeline, step, secrets_decrypt(run.secrets))
    except SecretError as exc:
        raise StepSetupError(str(exc)) from None
    # The command refers to a secret by its environment variable, so the value is in no command line.
    secret_env = {secret_env_var(name): value for name, value in secrets.items() if value is not None}
    for name, value in secrets.items():
        values[name] = EnvRef(secret_env_var(name)) if value is not None else None
    # A step its run's advance started for this worker comes with them (orchestrator.run_advance).
    upstream = getattr(step_run, "upstream_artifacts", None)
    if upstream is None:
        jobs = {b.job for b in step.inputs.values() if isinstance(b, JobOutput)}
        upstream = {
            (job, output): Artifact(pk=artifact_id, sha256=sha, kind=kind)
            for job, output, artifact_id, sha, kind in rows.run_outputs(run.pk, sorted(jobs))
        }
    data_inputs: set[str] = set()
    data_artifacts = run_data_artifacts(run) if any(d.asset for d in pipeline.inputs.values()) else {}
    for name in step.input_decls:
        if name in values:
            continue
        binding = step.inputs.get(name)
        data_inputs.add(name)
        if isinstance(binding, JobOutput):
            artifact = upstream.get((binding.job, binding.output))
            if artifact is None:
                raise StepSetupError(f"input {name}: step {binding.job} has no output {binding.output}")
            values[name] = str(artifacts.artifact_path(artifact, binding.output, held=held))
        elif isinstance(binding, DataPath):
            values[name] = str(_data_path(file_map, binding.key, binding.type))
        elif isinstance(binding, ParentInput) and binding.name in data_artifacts:
            values[name] = str(artifacts.artifact_path(data_artifacts[binding.name], binding.name, held=held))
        elif isinstance(binding, ParentInput) and pipeline.inputs.get(binding.name) is not None:
            parent = pipeline.inputs[binding.name]
            values[name] = str(_data_path(file_map, parent.data.key, parent.type)) if parent.data else None
        else:
            values[name] = None

    outputs: dict[str, tuple[Path, str]] = {}
    out_root = workdir / "outputs"
    out_root.mkdir(exist_ok=True)
    for name, decl in step.output_decls.items():
        path = out_root / name
        if decl.type == "uri_folder":
            path.mkdir()
        outputs[name] = (path, decl.type)

    try:
        command = step_command(pipeline, step, run.inputs)
        command = render_command(command, inputs=values, outputs={k: str(v[0]) for k, v in outputs.items()})
    except ValueError as exc:
        raise StepSetupError(str(exc)) from exc
    try:
        env_plan = environments.plan(environments.for_target(step.environment, target))
    except environments.EnvironmentBuildError as exc:
        raise StepSetupError(f"environment: {exc}") from None
    argv = ["/bin/bash", "-c", command]
    if step.distribution is not None:
        config = distribution.write_config(
            workdir, kind=step.distribution.type, processes=step.distribution.processes, command=command
        )
        argv = [sys.executable, "-I", str(DISTRIBUTION_LAUNCHER), str(config)]

    metrics_file = workdir / "metrics.jsonl"
    env = step_environment(
        workdir=workdir,
        declared={**(target.environment_variables or {}), **step.environment_variables},
        # A secret is never replaced by a value written in the YAML.
        stepwise={
            **secret_env,
            "PYTHONUNBUFFERED": "1",
            "STEPWISE_RUN_ID": str(run.pk),
            "STEPWISE_STEP": step.name,
            "STEPWISE_ATTEMPT": str(step_run.attempt),
            "STEPWISE_METRICS_FILE": str(metrics_file),
            processes.ATTEMPT_ENV: process_tag or processes.attempt_id(step_run.pk, step_run.attempt),
            processes.WORKER_ENV: processes.worker_tag(),
        },
    )
    sandbox = None
    if target.isolation == Isolation.NONE and target.name not in _unisolated_targets:
        _unisolated_targets.add(target.name)
        log.warning("compute target %s has isolation none: its steps run as this worker, seeing all it sees", target)
    # A data transfer step starts no process: the worker copies its files itself (runs/transfer.py).
    if target.isolation == Isolation.SANDBOX and step.transfer is None:
        sandbox_.check()
        read_only = [Path(v) for n, v in values.items() if n in data_inputs and isinstance(v, str)]
        if env_plan is not None:
            read_only.append(env_plan.folder)
            # The Python the environment was made from, unless the system's (bound already).
            prefix = Path(env_plan.interpreter.prefix)
            if not any(prefix.is_relative_to(top) for top in sandbox_.SYSTEM_DIRS):
                read_only.append(prefix)
        sandbox = sandbox_.Sandbox(
            workdir=workdir, cwd=code_dir, read_only=read_only, network=target.network, sdk=SDK_DIR
        )
    sandbox_.prepare_workdir(workdir, hand_over=sandbox is not None)
    return Prepared(
        command=command,
        cwd=code_dir,
        env=env,
        outputs=outputs,
        metrics_file=metrics_file,
        secrets=list(secret_env.values()),
        sandbox=sandbox,
        argv=argv,
        environment=env_plan,
        data_inputs={n: v for n, v in values.items() if n in data_inputs and isinstance(v, str)},
    )


LINE_TRUNCATED = " … [line truncated]"
PARAM_VALUE_MAX = 6000  # mlflow's own limit on a parameter's value
# What one read of a step's metrics file takes (each second, and once as it ends); a longer line
# (far beyond any metric or parameter, PARAM_VALUE_MAX included) is skipped.
METRICS_READ_MAX = 4 * 1024 * 1024
# The lines a sweep trial keeps between two takes of its driver (each SHIP_S, runs/trial_runner.py,
# for a trial run elsewhere, which ships them as one row): a trial printing faster (`yes`) would
# otherwise fill this process's memory and that row; the oldest go, and a line says how many.
TRIAL_LINES_MAX = 5000
METRICS_FINAL_READS = 16
METRIC_INSERT_BATCH = 1000
# Live `metric` events of one read of the metrics file (each second): see step_records.live_sample.
LIVE_POINTS_PER_NAME = 50
LIVE_METRIC_NAMES = 100
LIVE_METRIC_BUDGET = 1000


class LineSplitter:
    """Bytes in, complete text lines out; a line longer than `limit` is cut, never buffered whole.

    Each read is decoded and split at once, not line by line: a step printing a million lines
    costs the worker little more than the bytes themselves (UTF-8 never has a newline byte inside
    a character, so decoding the block replaces the same bytes as decoding each line would).
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.partial = b""
        self.dropping = False

    def feed(self, data: bytes) -> list[str]:
        buffer = self.partial + data
        end = buffer.rfind(b"\n")
        lines: list[str] = []
        if end >= 0:
            complete, buffer = buffer[:end], buffer[end + 1 :]
            if self.dropping:
                # The rest of a line already cut and marked, up to its newline.
                self.dropping = False
                first = complete.find(b"\n")
                lines = self._decode(complete[first + 1 :]) if first >= 0 else []
            else:
                lines = self._decode(complete)
        if len(buffer) > self.limit and not self.dropping:
            lines.append(self._decode(buffer[: self.limit])[0] + LINE_TRUNCATED)
            self.dropping = True
            buffer = b""
        elif self.dropping:
            buffer = b""
        self.partial = buffer
        return lines

    def close(self) -> list[str]:
        rest, self.partial = self.partial, b""
        return self._decode(rest) if rest and not self.dropping else []

    def _decode(self, raw: bytes) -> list[str]:
        text = raw.decode("utf-8", errors="replace")
        if "\x00" in text:
            # PostgreSQL text cannot hold NUL: it would make the log write (and the attempt) fail.
            text = text.replace("\x00", "\ufffd")
        lines = text.split("\n")
        if "\r" in text:
            lines = [line.rstrip("\r") for line in lines]
        if len(text) > self.limit:
            lines = [line[: self.limit] for line in lines]
        return lines


class Attempt:
    """The running subprocess of one attempt and its bookkeeping."""

    # Called once the step's process has started (see execute_chain); a sweep's trials have none.
    after_start: Callable[[], None] | None = None

    def __init__(self, step_run: StepRun, prepared: Prepared):
        self.step_run = step_run
        self.prepared = prepared
        # The workdir is the folder of the step's code (see prepare); the whole log goes beside it.
        self.recorder = logs.AttemptLogRecorder(
            step_run,
            logs.full_log_path(prepared.cwd.parent),
            head=settings.STEPWISE_LOG_HEAD_LINES,
            tail=settings.STEPWISE_LOG_TAIL_LINES,
        )
        self.last_flush = time.monotonic()
        self.metrics_offset = 0
        self.metrics_dropping = False
        self.metrics_more = False
        self.stop_reason = ""
        self.fenced = False
        self.masker = Masker(prepared.secrets)
        self.timeout_s = step_run.timeout_s
        # Outputs already in the artifact store (a sweep's best trial run by another worker).
        self.stored_outputs: dict[str, tuple[Manifest, str]] = {}

    # -- log, heartbeat, fencing ---------------------------------------------------
    def add_lines(self, lines: list[str]) -> None:
        if self.masker:
            # Before anything stores or broadcasts them, as GitHub Actions masks secrets.
            lines = [self._mask(line) for line in lines]
        self.recorder.add(lines)
        if self.recorder.head_pending() >= FLUSH_LINES:
            self.flush()

    @property
    def pending_lines(self) -> list[str]:
        """Lines not stored yet: `run` flushes while there are some."""
        return self.recorder.pending

    def _mask(self, line: str) -> str:
        # A line the splitter cut (marked, or silently at the limit) may end in half a secret.
        if line.endswith(LINE_TRUNCATED):
            return self.masker.mask(line[: -len(LINE_TRUNCATED)], cut=True) + LINE_TRUNCATED
        return self.masker.mask(line, cut=len(line) >= settings.STEPWISE_LOG_LINE_MAX)

    def flush(self, *, force: bool = False) -> bool:
        """Store pending lines and beat the heart; False when this attempt no longer owns the step."""
        now = time.monotonic()
        self.last_flush = now
        # Fast output past the log's head is stored once a second (runs/logs.py); the heartbeat
        # goes with it, well within the reconciler's limit.
        if not force and not self.recorder.due(now):
            return True
        sr = self.step_run
        with transaction.atomic():
            owned = StepRun.objects.filter(pk=sr.pk, state=StepState.RUNNING, attempt=sr.attempt).update(
                heartbeat_at=timezone.now(), log_lines=self.recorder.next_seq
            )
            if not owned:
                self.fenced = True
                return False
            messages = self.recorder.store(now)
        for message in messages:
            broadcast.send(sr.run_id, message)
        return True

    def finish_log(self) -> None:
        """Store the lines still pending, then the whole log (runs/logs.py): once the step's process
        is over, before its fate is written, on every path. Never raises."""
        try:
            if not self.fenced and self.pending_lines:
                self.flush(force=True)
        except Exception:
            log.exception("the last lines of attempt %s of %s were not stored", self.step_run.attempt, self.step_run)
        self.recorder.archive()

    def new_records(self) -> list[MetricRecord | ParamRecord]:
        """What the step logged since the last call, checked and masked, in the order it logged it."""
        path = self.prepared.metrics_file
        if path is None:
            return []
        handle = _open_step_file(path)
        if handle is None:
            return []
        # At most METRICS_READ_MAX bytes a call: the step writes this file, and a sparse one
        # (`truncate -s 1T`) costs it no disk but would cost this process its memory, read whole.
        with handle:
            handle.seek(self.metrics_offset)
            data = handle.read(METRICS_READ_MAX)
        self.metrics_more = len(data) == METRICS_READ_MAX
        if self.metrics_dropping:
            # The rest of a line too long to be a record, up to its newline.
            first = data.find(b"\n")
            self.metrics_offset += len(data) if first < 0 else first + 1
            if first < 0:
                return []
            self.metrics_dropping = False
            data = data[first + 1 :]
        complete = data[: data.rfind(b"\n") + 1]
        self.metrics_offset += len(complete)
        if not complete and len(data) == METRICS_READ_MAX:
            # A whole read without a newline: no record is that long, so it is dropped, not kept.
            self.metrics_offset += len(data)
            self.metrics_dropping = True
        records: list[MetricRecord | ParamRecord] = []
        for raw in complete.splitlines():
            try:
                record = json.loads(raw)
                if isinstance(record, dict) and "param" in record:
                    param = self._param_record(str(record["param"]), str(record.get("value", "")))
                    if param is not None:
                        records.append(param)
                    continue
                name, value, index = str(record["name"]), float(record["value"]), int(record.get("step", 0))
            except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
                continue  # a line the step wrote that is no metric: the step's own code is not trusted
            # Metric names are shown on the run page too.
            name = self.masker.mask(name)[:255]
            # What the database cannot store would fail the attempt: NUL in text (PostgreSQL),
            # NaN (SQLite stores NULL), a step index beyond a 32-bit integer.
            if "\x00" in name or not math.isfinite(value) or not -(2**31) <= index < 2**31:
                continue
            records.append(MetricRecord(name, value, index))
        return records

    def read_metrics(self) -> None:
        metrics: list[MetricRecord] = []
        for record in self.new_records():
            if isinstance(record, ParamRecord):
                self.store_param(record.name, record.value)
            else:
                metrics.append(record)
        # One INSERT a batch: a row each took the worker ~0.3 ms a point, behind a step logging a
        # point a batch (its file grew faster than the worker read it).
        Metric.objects.bulk_create(
            [Metric(step_run=self.step_run, name=m.name, value=m.value, step=m.step) for m in metrics],
            batch_size=METRIC_INSERT_BATCH,
        )
        for m in live_sample(
            metrics, per_name=LIVE_POINTS_PER_NAME, names=LIVE_METRIC_NAMES, budget=LIVE_METRIC_BUDGET
        ):
            payload = broadcast.metric_payload(self.step_run, name=m.name, value=m.value, step=m.step)
            broadcast.send(self.step_run.run_id, payload)

    def _param_record(self, name: str, value: str) -> ParamRecord | None:
        # Names and values are shown on the run and compare pages: secrets masked, NUL refused.
        name = self.masker.mask(name)[:255]
        value = self.masker.mask(value)[:PARAM_VALUE_MAX]
        if not name or "\x00" in name or "\x00" in value:
            return None
        return ParamRecord(name, value)

    def store_param(self, name: str, value: str) -> None:
        record = self._param_record(name, value)
        if record is None:
            return
        name, value = record
        Param.objects.update_or_create(step_run=self.step_run, name=name, defaults={"value": value})
        broadcast.send(self.step_run.run_id, broadcast.param_payload(self.step_run, name=name, value=value))

    # -- the process ------------------------------------------------------------------
    def use_environment(self, environment: str | dict[str, object]) -> None:
        """Build (or find) the step's virtual environment and run it there, its build log in the step's log."""
        self.add_lines(environments.notes(environment))
        plan = self.prepared.environment
        if plan is None:
            return
        folder = environments.ensure(plan, log=self.add_lines, tick=self.flush)
        env = self.prepared.env
        environments.activate(env, folder)
        if environments.has_package(folder, "mlflow"):
            # The real mlflow, not the shim that stands in for it where the worker has none.
            shim = str(SDK_DIR / "mlflow_shim")
            env["PYTHONPATH"] = os.pathsep.join(p for p in env["PYTHONPATH"].split(os.pathsep) if p != shim)

    def run(self) -> int:
        prepared = self.prepared
        argv = prepared.argv or ["/bin/bash", "-c", prepared.command]
        start = (
            subprocess.Popen
            if prepared.sandbox is None
            else functools.partial(sandbox_.start, sandbox=prepared.sandbox)
        )
        proc = start(
            argv,
            cwd=prepared.cwd,
            env=prepared.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # The events of the commit that started this step go out while it runs (runs/broadcast.py).
        broadcast.flush()
        if self.after_start is not None:
            self.after_start()
        splitter = LineSplitter(settings.STEPWISE_LOG_LINE_MAX)
        started = time.monotonic()
        last_check = started
        timeout = self.timeout_s
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        fd = proc.stdout.fileno()
        exited_at: float | None = None
        try:
            while True:
                events = selector.select(timeout=FLUSH_INTERVAL_S)
                if events:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    self.add_lines(splitter.feed(data))
                now = time.monotonic()
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                # The step's shell has ended but something it started in the background still holds
                # the pipe open: once the pipe is drained, the step is over (the stray is killed below).
                # The select(0) because a select interrupted by SIGSTOP returns nothing when resumed.
                if exited_at is not None and (now - exited_at > STRAY_DRAIN_S or not selector.select(timeout=0)):
                    break
                if self.pending_lines and now - self.last_flush >= FLUSH_INTERVAL_S:
                    if not self.flush():
                        self._kill(proc, "superseded")
                if now - last_check >= CHECK_INTERVAL_S:
                    last_check = now
                    self.read_metrics()
                    if not self.flush():
                        self._kill(proc, "superseded")
                    if timeout and now - started > timeout and not self.stop_reason:
                        self._kill(proc, f"timeout: the step ran longer than {timeout} s")
        except BaseException:
            # A database error (or a bug) here must not leave the step's processes running.
            self._kill(proc, "the worker failed while running the step")
            self.kill_strays()
            raise
        finally:
            selector.close()
            proc.stdout.close()
        self.add_lines(splitter.close())
        returncode = proc.wait()
        strays = self.kill_strays()
        # A sandbox's leftovers are killed with its PID namespace as its shell ends; one still
        # dying may pass through this worker (their subreaper) and is no stray of the step's.
        if strays and not self.stop_reason and self.prepared.sandbox is None:
            self.add_lines([f"[stepwise] stopped {len(strays)} process(es) the step left running: {strays}"])
        if not self.fenced and self.pending_lines:
            self.flush()
        # What the step wrote since the last read may take more than one (up to METRICS_FINAL_READS).
        for _ in range(METRICS_FINAL_READS):
            self.read_metrics()
            if not self.metrics_more:
                break
        return returncode

    def kill_strays(self) -> list[int]:
        """Kill what the step started and left behind (`cmd &`, `setsid`, daemons): no process outlives its step."""
        return processes.kill_leftovers(self.step_run.pk, self.step_run.attempt)

    def _kill(self, proc: subprocess.Popen, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + KILL_GRACE_S
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class TrialAttempt(Attempt):
    """One trial of a sweep: `Attempt.run` in a thread of its own, touching no database.

    Its lines (masked) and metrics pile up here until the sweep's driver takes them and stores
    them from its own thread; `stop` is the driver's word to kill it, heard where `run` checks
    whether it still owns the step.
    """

    def __init__(self, step_run: StepRun, prepared: Prepared, *, number: int, timeout_s: int | None, tag: str):
        self.step_run = step_run
        self.prepared = prepared
        self.number = number
        self.timeout_s = timeout_s
        self.tag = tag
        self.outputs = prepared.outputs
        self.last_flush = time.monotonic()
        self.metrics_offset = 0
        self.metrics_dropping = False
        self.metrics_more = False
        self.stop_reason = ""
        self.stopped_by = ""
        self.fenced = False
        self.masker = Masker(prepared.secrets)
        self.returncode: int | None = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        # The newest lines only, between two takes: see TRIAL_LINES_MAX.
        self._lines: collections.deque[str] = collections.deque(maxlen=TRIAL_LINES_MAX)
        self._lines_left_out = 0
        self._records: list[MetricRecord | ParamRecord] = []
        self._thread = threading.Thread(target=self._main, name=f"sweep-trial-{number}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _main(self) -> None:
        try:
            self.returncode = self.run()
        except BaseException as exc:
            self.error = exc

    def stop(self, reason: str) -> None:
        if not self.stopped_by:
            self.stop_reason = self.stop_reason or reason
            self.stopped_by = reason

    def take(self) -> tuple[list[str], list[MetricRecord | ParamRecord]]:
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
            if self._lines_left_out:
                left_out = f"[stepwise] {self._lines_left_out} line(s) left out: printed faster than the log is taken"
                lines.insert(0, left_out)
                self._lines_left_out = 0
            records, self._records = self._records, []
        return lines, records

    def add_lines(self, lines: list[str]) -> None:
        if self.masker:
            lines = [self._mask(line) for line in lines]
        with self._lock:
            self._lines_left_out += max(0, len(self._lines) + len(lines) - TRIAL_LINES_MAX)
            self._lines.extend(lines)

    @property
    def pending_lines(self) -> list[str]:
        return []  # handed to the driver as they come

    def flush(self, *, force: bool = False) -> bool:
        return not self.stopped_by

    def read_metrics(self) -> None:
        records = self.new_records()
        with self._lock:
            self._records.extend(records)

    def kill_strays(self) -> list[int]:
        # Its own processes only: the attempt's whole tree holds the other trials too.
        return processes.kill_tagged(self.tag)

    def finish_log(self) -> None:
        pass


def prepare_sweep(workdir: Path) -> Prepared:
    """A sweep step's own folder: its log, and its trials' folders under `trials/`. Its outputs are
    its best trial's, known when the sweep ends."""
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "code").mkdir(parents=True)
    return Prepared(command="", cwd=workdir / "code", env={})


def trial_workdir(step_run: StepRun, number: int) -> Path:
    return attempt_workdir(step_run) / "trials" / str(number)


def prepare_trial(
    step_run: StepRun,
    pipeline: Pipeline,
    step: Step,
    file_map: dict[str, str],
    *,
    number: int,
    params: dict[str, object],
    held: contextlib.ExitStack,
    target: ComputeTarget | None,
) -> tuple[Prepared, str]:
    """A sweep trial prepared as a command step with its sampled inputs, whichever worker runs it
    (the sweep's own, or another: runs/trial_runner.py); with the tag of its processes."""
    trial_step = dataclasses.replace(step, inputs={**step.inputs, **params}, sweep=None)
    tag = processes.trial_tag(step_run.pk, step_run.attempt, number)
    try:
        prepared = prepare(
            step_run,
            pipeline,
            trial_step,
            file_map,
            trial_workdir(step_run, number),
            held=held,
            target=target,
            process_tag=tag,
        )
        if prepared.sandbox is not None:
            # The steps' network helper (pasta) dies with the thread that starts it, and takes
            # the namespace's spawner thread, and so every sandboxed trial, with it: start it
            # here, from the thread that runs the sweep (or the remote trial), which outlives
            # every trial it starts.
            sandbox_.network_namespace(outbound=prepared.sandbox.network)
    except (StepSetupError, artifacts.ArtifactError, sandbox_.SandboxError, OSError) as exc:
        raise sweep_driver.TrialSetupError(str(exc)) from exc
    return prepared, tag


class SweepAttempt(Attempt):
    """A sweep step's attempt: its own log, heartbeat and fencing, while runs/sweep_driver.py
    starts its trials through `launch`, each prepared and run as a command step is."""

    def __init__(
        self,
        step_run: StepRun,
        prepared: Prepared,
        *,
        pipeline: Pipeline,
        step: Step,
        file_map: dict[str, str],
        held: contextlib.ExitStack,
        target: ComputeTarget | None,
    ):
        super().__init__(step_run, prepared)
        self.pipeline = pipeline
        self.step = step
        self.file_map = file_map
        self.held = held
        self.target = target

    def launch(self, number: int, params: dict[str, object]) -> trial_handles.ClaimableTrial:
        """Offer the trial (its row just created, queued) to every worker of the sweep's queue;
        this worker runs it itself when none claims it in time (runs/trial_handles.py)."""
        row = SweepTrial.objects.select_related("step_run").get(
            step_run=self.step_run, attempt=self.step_run.attempt, number=number
        )
        queues.enqueue_trial(row, self.step_run.queue)
        return trial_handles.ClaimableTrial(row, run_here=functools.partial(self._run_here, number, params))

    def _run_here(self, number: int, params: dict[str, object]) -> TrialAttempt:
        assert self.step.sweep is not None
        prepared, tag = prepare_trial(
            self.step_run,
            self.pipeline,
            self.step,
            self.file_map,
            number=number,
            params=params,
            held=self.held,
            target=self.target,
        )
        trial = TrialAttempt(
            self.step_run, prepared, number=number, timeout_s=self.step.sweep.limits.trial_timeout_s, tag=tag
        )
        trial.start()
        return trial

    def run(self) -> int:
        assert self.step.sweep is not None
        driver = sweep_driver.SweepDriver(
            spec=self.step.sweep,
            input_types={name: decl.type for name, decl in self.step.input_decls.items()},
            log=self,
            launch=self.launch,  # type: ignore[arg-type]
            seed=random.SystemRandom().randrange(2**31),
        )
        try:
            outcome = driver.run()
        finally:
            strays = self.kill_strays()
            if strays and self.prepared.sandbox is None:
                self.add_lines([f"[stepwise] stopped {len(strays)} process(es) the trials left running: {strays}"])
        if outcome.fenced:
            return 1
        if outcome.failure:
            self.stop_reason = outcome.failure
            return 1
        self.prepared.outputs.update(outcome.outputs)
        self.stored_outputs.update(outcome.stored_outputs)
        record = {name: str(value) for name, value in driver.ended[outcome.best].row.params.items()}
        for name, value in record.items():
            self.store_param(name, value)
        return 0


def _fail(step_run: StepRun, reason: str, exit_code: int | None = None) -> None:
    """Fail the attempt (or queue its retry) and advance the run, in one transaction."""
    with transaction.atomic(), transitions.audited_together():
        run = orchestrator.lock_run(step_run.run_id)
        step_run_fail(step_run=step_run, reason=reason, exit_code=exit_code)
        orchestrator.run_advance(step_run.run_id, run=run)


def execute_chain(step_run_id: int, attempt: int) -> str:
    """Run a step, then each step its success made ready on the same queue that this worker
    kept for itself (see `run_advance`); returns what happened to each, for the RQ job's result."""
    outcomes = []
    # The working folders of the chain's succeeded steps: each is removed once the next step's
    # process has started, while it runs, rather than between the two; the last as the job ends.
    ended: list[Path] = []
    try:
        outcome, started = _execute(step_run_id, attempt, keep_next=True, ended=ended)
        outcomes.append(outcome)
        while started is not None:
            step_run = started
            outcome, started = _execute(step_run.pk, step_run.attempt, keep_next=True, started=step_run, ended=ended)
            outcomes.append(f"then step run {step_run.pk}: {outcome}")
    finally:
        broadcast.flush()  # what the last step's end held (see _execute)
        _remove_folders(ended)
    return "; ".join(outcomes)


def execute(step_run_id: int, attempt: int) -> str:
    """Run one attempt of a step and advance its run; returns what happened, for the RQ job's result."""
    try:
        return _execute(step_run_id, attempt, keep_next=False)[0]
    finally:
        broadcast.flush()


def _after_start(ended: list[Path] | None) -> None:
    """While a step's process runs: remove the folders of the steps before it, and make the next one's."""
    if ended:
        _remove_folders(ended)
    sandbox_.make_spare()


def _remove_folders(folders: list[Path]) -> None:
    while folders:
        shutil.rmtree(folders.pop(), ignore_errors=True)


def _execute(
    step_run_id: int,
    attempt: int,
    *,
    keep_next: bool,
    started: StepRun | None = None,
    ended: list[Path] | None = None,
) -> tuple[str, StepRun | None]:
    """Run the attempt; with `keep_next`, return the step its success started as this worker's.

    `started`: such a step, already running as this worker's since the previous one's advance,
    read there with its run and version: not read again. `ended`: where to leave the working
    folder of a success for the caller to remove (removed here without it), and folders of the
    caller's to remove once this step's process has started.

    From the end of the step's process, the events of this thread wait (broadcast.hold) until
    the next step's process has started, or the caller flushes them as its job ends.
    """
    if started is not None:
        step_run = started
    else:
        found = rows.select(StepRun, {"id": step_run_id}, fields=orchestrator.STEP_FIELDS)
        if not found:
            return "no such step run (deleted, or a job from another database)", None
        step_run = found[0]
        if step_run.attempt != attempt or step_run.state != StepState.QUEUED:
            return f"stale delivery: step is {step_run.state}, attempt {step_run.attempt}", None
        if not step_run_try_transition(step_run=step_run, to=StepState.RUNNING, worker=worker_.worker_name()):
            return "another worker took it", None
        step_run.run = orchestrator.run_with_version(step_run.run_id)
    version = step_run.run.version
    pipeline = version_spec(version)
    step = pipeline.jobs[step_run.name]
    workdir = attempt_workdir(step_run)
    # A remote store's cache keeps the step's inputs until the step has ended: other workers of this
    # host trimming the cache meanwhile pass over what this stack holds (see runs/artifact_cache.py).
    with contextlib.ExitStack() as inputs:
        try:
            target = next(iter(rows.select(ComputeTarget, {"queue": step_run.queue})), None)
            if step.sweep is None:
                prepared = prepare(
                    step_run, pipeline, step, version_file_map(version), workdir, held=inputs, target=target
                )
            else:
                prepared = prepare_sweep(workdir)
        except (StepSetupError, artifacts.ArtifactError, sandbox_.SandboxError, OSError) as exc:
            # ArtifactError: an input could not be fetched from the artifact store.
            _fail(step_run, f"could not start: {exc}")
            return "setup failed", None

        if step.sweep is None:
            attempt_: Attempt = Attempt(step_run, prepared)
            attempt_.after_start = functools.partial(_after_start, ended)
        else:
            attempt_ = SweepAttempt(
                step_run,
                prepared,
                pipeline=pipeline,
                step=step,
                file_map=version_file_map(version),
                held=inputs,
                target=target,
            )
        if step.sweep is not None or step.transfer is not None or not environments.built(prepared.environment):
            # What this step does before its process starts may take long: the last one's events go now.
            broadcast.flush()
        try:
            if step.transfer is None:
                attempt_.use_environment(environments.for_target(step.environment, target))
        except (environments.EnvironmentBuildError, OSError, subprocess.SubprocessError) as exc:
            attempt_.finish_log()
            _fail(step_run, f"could not build the step's environment: {exc}")
            return "environment failed", None
        if attempt_.fenced:
            # Canceled or superseded while its environment was built: nothing starts.
            attempt_.finish_log()
            return "superseded or canceled while its environment was built", None
        try:
            if step.transfer is not None:
                returncode = transfer.run(attempt_, step, team=step_run.run.pipeline.team)
            else:
                returncode = attempt_.run()
            broadcast.hold()
        except Exception as exc:
            log.exception("attempt %s of %s failed in the worker", step_run.attempt, step_run)
            attempt_.finish_log()
            _fail(step_run, f"worker error: {exc}")
            return "worker error", None
        attempt_.finish_log()
    if attempt_.fenced:
        return "superseded or canceled while running", None
    if attempt_.stop_reason:
        _fail(step_run, attempt_.stop_reason, exit_code=returncode)
        return attempt_.stop_reason, None
    if returncode != 0:
        _fail(step_run, f"exit code {returncode}", exit_code=returncode)
        return "failed", None
    try:
        # Content already stored stays in the step's folder, removed with it off this path.
        stored = {
            name: (artifacts.store_files(path, kind, leave_if_stored=True), kind)
            for name, (path, kind) in prepared.outputs.items()
        }
        stored.update(attempt_.stored_outputs)
    except artifacts.ArtifactError as exc:
        _fail(step_run, str(exc), exit_code=returncode)
        return "failed to store outputs", None
    # Files first, then every row at once: an output that fails to store leaves no Artifact row
    # of its siblings behind (their files are content-addressed, and gc removes unreferenced ones).
    # Advancing the run in the same transaction saves a commit between a step and the next.
    with transaction.atomic(), transitions.audited_together():
        run = orchestrator.lock_run(step_run.run_id)
        # The compare-and-set first: an attempt canceled or superseded meanwhile writes no row.
        if not step_run_try_transition(step_run=step_run, to=StepState.SUCCEEDED, exit_code=0):
            return "finished after being canceled or superseded", None
        registered = {name: artifacts.register(manifest, kind) for name, (manifest, kind) in stored.items()}
        for name, artifact in registered.items():
            rows.insert(StepOutput, {"step_run_id": step_run.pk, "name": name, "artifact_id": artifact.pk})
        register_named_outputs(step_run=step_run)
        register_named_model_outputs(step_run=step_run)
        # A draining (or stopping) worker starts no further step: they all go to the queue.
        started = orchestrator.run_advance(
            step_run.run_id,
            start_one_of_queue=step_run.queue if keep_next else None,
            worker=worker_.worker_name(),
            draining=worker_.draining,
            run=run,
            finished=(step_run.name, registered),
        )
    if ended is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        ended.append(workdir)
    return "succeeded", started
