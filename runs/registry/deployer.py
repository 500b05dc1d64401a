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
scorers die with it: each gets SIGTERM from the kernel when the deployer goes).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from runs import artifacts
from runs.registry.models import Deployment, ModelVersion

log = logging.getLogger(__name__)

DRAIN_S = 1.0
RETRY_S = 2.0
READY_TIMEOUT_S = 60.0
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
    port_file: Path
    log_file: Path
    started_at: float = field(default_factory=time.monotonic)
    address: str = ""
    stop_at: float | None = None
    termed: bool = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-1000:].strip()
        except OSError:
            return ""


def _healthy(address: str, version_id: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/health", timeout=2) as response:  # noqa: S310 - our own loopback
            return json.loads(response.read()).get("version_id") == version_id
    except (OSError, ValueError):
        return False


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
            try:
                wanted.address = f"127.0.0.1:{int(wanted.port_file.read_text())}"
            except (OSError, ValueError):
                if now - wanted.started_at > READY_TIMEOUT_S:
                    wanted.stop_at = now
                    self._record_error(d, wanted, why=f"not ready after {READY_TIMEOUT_S:.0f} s")
                return did
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
        base = self.run_dir / f"{d.pk}-{d.model_version_id}-{os.getpid()}-{self.serial}"
        port_file, log_file = base.with_suffix(".port"), base.with_suffix(".log")
        port_file.unlink(missing_ok=True)
        version: ModelVersion = d.model_version
        argv = [
            sys.executable,
            "-m",
            "stepwise.scoring",
            "--model",
            str(artifacts.artifact_path(version.artifact)),
            "--flavour",
            version.flavour,
            "--label",
            f"{version.model.name}:{version.version}",
            "--version-id",
            str(version.pk),
            "--port-file",
            str(port_file),
        ]
        with log_file.open("wb") as log_handle:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                cwd=str(settings.BASE_DIR),
                process_group=0,
                preexec_fn=_die_with_parent,
            )
        scorer = ScorerProcess(d.pk, version.pk, proc, port_file, log_file)
        self.scorers.append(scorer)
        return scorer

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
                    scorer.proc.send_signal(signal.SIGTERM)
                    scorer.termed = True
                    did.append(f"draining the scorer of version {scorer.version_id} (pid {scorer.proc.pid})")
                continue
            self._reap(scorer)
        return did

    def _reap(self, scorer: ScorerProcess) -> None:
        scorer.proc.wait()
        scorer.port_file.unlink(missing_ok=True)
        if scorer in self.scorers:
            self.scorers.remove(scorer)

    # -- the loop --------------------------------------------------------------------------
    def stop_all(self, timeout_s: float = 10.0) -> None:
        for scorer in self.scorers:
            if scorer.alive():
                scorer.proc.send_signal(signal.SIGTERM)
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
