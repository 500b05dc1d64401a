"""The deployer: keeps one scorer process (stepwise/scoring.py) per deployment serving the
version the deployment names, and swaps versions without a failed request.

A swap starts the new version's scorer beside the old one, waits until it answers /health,
switches the deployment's `address` to it (the web view reads the address for each request),
and only DRAIN_S later sends the old scorer SIGTERM: it stops accepting, answers what it holds,
and exits. A request that read the old address just before the switch and reaches the old
scorer after it stopped accepting gets "connection refused", which the web view answers by
reading the address again (runs/registry/scoring_proxy.py).

`tick()` does one pass and returns what it did, so tests drive it directly; `manage.py
stepwise_deployments` loops over it under `serve`, which restarts the loop if it dies (the
scorers die with it: the kernel signals each when the deployer goes).

Loading a model runs code its author chose (a pickle), so a scorer is confined as a step is:
when the default compute target sandboxes its steps, the scorer runs in the same sandbox
(runs/sandbox.py) with no network at all, its model and the `stepwise` package read-only, its
own folder the only one it writes, and an environment with none of the server's settings. It
serves on a Unix socket in that folder, which the web process reaches and nothing else can.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from runs import artifacts
from runs import sandbox as sandbox_
from runs.executor import ENV_PASSTHROUGH, STEPWISE_PACKAGE_DIR, SYSTEM_PATH
from runs.models import ComputeTarget, Isolation
from runs.registry import scorer_client
from runs.registry.models import Deployment, ModelVersion

log = logging.getLogger(__name__)

DRAIN_S = 1.0
RETRY_S = 2.0
READY_TIMEOUT_S = 60.0
# A scorer told to drain that has not exited by then is killed.
KILL_AFTER_S = 30.0
SOCKET_NAME = "scorer.sock"
# What an error message takes of a scorer's log: its last 1000 characters are in these bytes.
LOG_TAIL_BYTES = 4096
PR_SET_PDEATHSIG = 1

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ScorerProcess:
    deployment_id: int
    version_id: int
    proc: subprocess.Popen
    folder: Path
    log_file: Path
    started_at: float = field(default_factory=time.monotonic)
    address: str = ""
    stop_at: float | None = None
    termed: bool = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def address_file(self) -> Path:
        return self.folder / "address"

    def log_tail(self) -> str:
        # Only its end: the scorer writes this file through its stdout, and can seek that far
        # ahead (a sparse file, no disk), which read whole would take this process's memory.
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - LOG_TAIL_BYTES))
                data = handle.read(LOG_TAIL_BYTES)
        except OSError:
            return ""
        return data.decode(errors="replace")[-1000:].strip()


def _request(address: str, method: str, path: str) -> tuple[int, dict]:
    conn = scorer_client.connection(address, timeout=2)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _healthy(address: str, version_id: int) -> bool:
    try:
        status, answer = _request(address, "GET", "/health")
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return status == 200 and answer.get("version_id") == version_id


def scorer_environment(folder: Path) -> dict[str, str]:
    """A scorer's whole environment: the locale and time zone, its own folders, the `stepwise`
    package; never the server's settings (its database, its keys)."""
    env = {key: os.environ[key] for key in ENV_PASSTHROUGH if key in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        HOME=str(folder / "home"),
        TMPDIR=str(folder / "tmp"),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), SYSTEM_PATH]),
        PYTHONPATH=str(STEPWISE_PACKAGE_DIR.parent),
        PYTHONUNBUFFERED="1",
    )
    return env


def scorers_sandboxed() -> bool:
    """Whether scorers are confined: as the default compute target's steps are."""
    target = ComputeTarget.objects.filter(is_default=True).order_by("name").first()
    return target is None or target.isolation == Isolation.SANDBOX


class Deployer:
    def __init__(self, *, run_dir: Path | None = None) -> None:
        self.run_dir = Path(run_dir or Path(settings.VAR_DIR) / "deployments")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.scorers: list[ScorerProcess] = []
        self.retry_at: dict[tuple[int, int], float] = {}
        self.serial = 0

    # -- one pass --------------------------------------------------------------------------
    def tick(self) -> list[str]:
        """Start, switch to, drain and reap scorers; what it did, in words."""
        did: list[str] = []
        now = time.monotonic()
        deployments = {
            d.pk: d for d in Deployment.objects.select_related("model_version__artifact", "model_version__model")
        }
        for d in deployments.values():
            try:
                did += self._converge(d, now)
            except Exception as exc:  # noqa: BLE001 - one broken deployment must not stop the others
                log.exception("deployer: %s", d)
                self.retry_at[(d.pk, d.model_version_id)] = now + RETRY_S
                Deployment.objects.filter(pk=d.pk).update(error=f"{d.model_version}: {exc}"[:2000])
                did.append(f"{d}: {exc}")
        for scorer in self.scorers:
            if scorer.deployment_id not in deployments and scorer.stop_at is None:
                scorer.stop_at = now
        did += self._stop_due(now)
        return did

    def _converge(self, d: Deployment, now: float) -> list[str]:
        did: list[str] = []
        mine = [s for s in self.scorers if s.deployment_id == d.pk and s.stop_at is None]
        wanted = next((s for s in mine if s.version_id == d.model_version_id and s.alive()), None)
        if wanted is None:
            for dead in [s for s in mine if s.version_id == d.model_version_id]:
                self._reap(dead)
                self._record_error(d, dead)
                self.retry_at[(d.pk, d.model_version_id)] = now + RETRY_S
                did.append(f"scorer of {d} ({d.model_version}) exited: {describe(dead)}")
            if now >= self.retry_at.get((d.pk, d.model_version_id), 0.0):
                wanted = self._start(d)
                did.append(f"started a scorer of {d} for {d.model_version} (pid {wanted.proc.pid})")
            else:
                return did
        if not wanted.address:
            # The address file says only that the scorer listens. Its folder is the scorer's own (a
            # model's pickle runs its author's code): what is written there is never read, and the
            # address is where the scorer was told to listen, so that neither a link (another
            # scorer's socket, a file of the host) nor a FIFO (read by this process, it would hang)
            # can stand in for it.
            if not os.path.lexists(wanted.address_file):
                if now - wanted.started_at > READY_TIMEOUT_S:
                    wanted.stop_at = now
                    self._record_error(d, wanted, why=f"not ready after {READY_TIMEOUT_S:.0f} s")
                return did
            wanted.address = f"unix:{wanted.folder / SOCKET_NAME}"
        if d.address != wanted.address and _healthy(wanted.address, wanted.version_id):
            Deployment.objects.filter(pk=d.pk).update(
                address=wanted.address, serving_version_id=wanted.version_id, error=""
            )
            did.append(f"{d} now served by {d.model_version} at {wanted.address}")
            for old in mine:
                if old is not wanted:
                    old.stop_at = now + DRAIN_S
        return did

    def _start(self, d: Deployment) -> ScorerProcess:
        self.serial += 1
        folder = self.run_dir / f"{d.pk}-{d.model_version_id}-{os.getpid()}-{self.serial}"
        log_file = folder.with_suffix(".log")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        version: ModelVersion = d.model_version
        model = artifacts.artifact_path(version.artifact)
        argv = [
            sys.executable,
            "-m",
            "stepwise.scoring",
            "--model",
            str(model),
            "--flavour",
            version.flavour,
            "--label",
            f"{version.model.name}:{version.version}",
            "--version-id",
            str(version.pk),
            "--socket",
            SOCKET_NAME,
            "--address-file",
            str(folder / "address"),
        ]
        sandboxed = scorers_sandboxed()
        sandbox_.prepare_workdir(folder, hand_over=sandboxed)
        popen = {
            "stdin": subprocess.DEVNULL,
            "stderr": subprocess.STDOUT,
            "cwd": str(folder),
            "env": scorer_environment(folder),
        }
        with log_file.open("wb") as log_handle:
            if sandboxed:
                box = sandbox_.Sandbox(
                    workdir=folder,
                    cwd=folder,
                    read_only=[model, STEPWISE_PACKAGE_DIR],
                    network=False,
                    isolated_network=True,
                )
                # bwrap's --die-with-parent ends the sandbox with the deployer.
                proc = sandbox_.start(argv, box, stdout=log_handle, start_new_session=True, **popen)
            else:
                proc = subprocess.Popen(argv, stdout=log_handle, process_group=0, preexec_fn=_die_with_parent, **popen)
        scorer = ScorerProcess(d.pk, version.pk, proc, folder, log_file)
        self.scorers.append(scorer)
        return scorer

    def _drain(self, scorer: ScorerProcess) -> None:
        """Tell the scorer to stop accepting and exit once it has answered what it holds; one
        that cannot be told (not ready yet, stuck) is signalled."""
        if scorer.address:
            try:
                if _request(scorer.address, "POST", "/drain")[0] == 202:
                    return
            except (OSError, ValueError, http.client.HTTPException):
                pass
        # Unconfined, the scorer drains on SIGTERM; in a sandbox, bwrap ends it at once.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(scorer.proc.pid, signal.SIGTERM)

    def _record_error(self, d: Deployment, scorer: ScorerProcess, why: str = "") -> None:
        text = why or scorer.log_tail() or describe(scorer)
        Deployment.objects.filter(pk=d.pk).update(error=f"{d.model_version}: {text}"[:2000])

    def _stop_due(self, now: float) -> list[str]:
        did = []
        for scorer in list(self.scorers):
            if scorer.stop_at is None or now < scorer.stop_at:
                continue
            if scorer.alive():
                if not scorer.termed:
                    self._drain(scorer)
                    scorer.termed = True
                    did.append(f"draining the scorer of version {scorer.version_id} (pid {scorer.proc.pid})")
                elif now > scorer.stop_at + KILL_AFTER_S:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(scorer.proc.pid, signal.SIGKILL)
                    did.append(f"killed the scorer of version {scorer.version_id}: it did not drain in time")
                continue
            self._reap(scorer)
        return did

    def _reap(self, scorer: ScorerProcess) -> None:
        scorer.proc.wait()
        shutil.rmtree(scorer.folder, ignore_errors=True)
        if scorer in self.scorers:
            self.scorers.remove(scorer)

    # -- the loop --------------------------------------------------------------------------
    def stop_all(self, timeout_s: float = 10.0) -> None:
        for scorer in self.scorers:
            if scorer.alive():
                self._drain(scorer)
        deadline = time.monotonic() + timeout_s
        for scorer in list(self.scorers):
            try:
                scorer.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                scorer.proc.kill()
                scorer.proc.wait()
            self._reap(scorer)


def describe(scorer: ScorerProcess) -> str:
    code = scorer.proc.returncode
    if code is None:
        return "running"
    return f"exited with status {code}" if code >= 0 else f"killed by signal {-code}"
