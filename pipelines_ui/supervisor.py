"""Keeps `serve`'s children running: one that dies is restarted after a backoff, and only a
requested stop (or the death of an essential child, the web server) ends them all.

Not honcho (a Procfile runner): it stops every process as soon as one exits, the opposite of
what a server that must outlive a step worker killed by the kernel's OOM killer needs.

Each child runs in a process group of its own, so that a Ctrl-C typed in the terminal reaches
this supervisor alone, which then stops the children in order (Redis after the processes
that use it); and each gets SIGTERM from the kernel if the supervisor itself dies (SIGKILL
included), so none outlives it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
POLL_S = 0.1
# After the grace period a child gets SIGTERM again (an RQ worker's cold shutdown, which stops
# the step it runs), then SIGKILL this long after.
KILL_AFTER_S = 5.0
READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial_s`, doubled at each death of a child that had not stayed up
    `stable_s`, at most `maximum_s`; a child that stayed up that long starts over at `initial_s`."""

    initial_s: float = 1.0
    maximum_s: float = 30.0
    stable_s: float = 60.0

    def next_delay(self, previous_s: float | None, uptime_s: float) -> float:
        if previous_s is None or uptime_s >= self.stable_s:
            return self.initial_s
        return min(previous_s * 2, self.maximum_s)


def describe_exit(returncode: int) -> str:
    """`exited with status 1`, `killed by SIGKILL`: a returncode as Popen gives it, in words."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclass
class Program:
    """A child to keep running.

    `command(generation)` gives its argv: 0 at the first start, then 1, 2... at each restart.
    `on_exit(pid, returncode)` runs before the dead child is reaped: until then its pid is still
    taken, so no other process can be mistaken for it. `ready()` is awaited after the first
    start, before the next program starts.
    """

    name: str
    command: Callable[[int], list[str]]
    essential: bool = False
    stop_last: bool = False
    on_exit: Callable[[int, int], None] | None = None
    ready: Callable[[], bool] | None = None


class SupervisorError(Exception):
    """A program could not start."""


class _Child:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.generation = 0
        self.delay_s: float | None = None
        self.restart_at: float | None = None

    @property
    def name(self) -> str:
        return self.program.name


try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _end_with(parent: int) -> Callable[[], None]:
    """Runs in the child between fork and exec: SIGTERM when the supervisor dies."""

    def preexec() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        # The supervisor died before the prctl: nobody would ever stop this child.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _returncode(status: os.waitid_result) -> int:
    if status.si_code == os.CLD_EXITED:
        return status.si_status
    return -status.si_status


class Supervisor:
    def __init__(
        self,
        programs: Sequence[Program],
        *,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen
        grace_s: float = 10.0,
    ) -> None:
        self.children = [_Child(program) for program in programs]
        self.backoff = backoff
        self.grace_s = grace_s
        self.stopping = False
        self.kill_now = False

    # -- signals ---------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.request_stop)

    def request_stop(self, signum: int | None = None, frame: object = None) -> None:
        """The first request stops the children gracefully; a second one kills them at once."""
        if self.stopping:
            self.kill_now = True
        self.stopping = True

    # -- starting --------------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        for child in self.children:
            if child.name == name and child.proc is not None and child.proc.returncode is None:
                return child.proc.pid
        return None

    def start(self) -> None:
        """Start every program in order, each ready before the next one starts."""
        for child in self.children:
            if self.stopping:
                return
            self._spawn(child)
            if child.program.ready is not None:
                self._await_ready(child)

    def _spawn(self, child: _Child) -> None:
        child.proc = subprocess.Popen(
            child.program.command(child.generation),
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=_end_with(os.getpid()),
        )
        child.started_at = time.monotonic()
        child.restart_at = None

    def _await_ready(self, child: _Child) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not child.program.ready():
            returncode = self._exited(child)
            if returncode is not None:
                self._finish(child, returncode)
                raise SupervisorError(f"{child.name} {describe_exit(returncode)} as it started")
            if time.monotonic() > deadline:
                raise SupervisorError(f"{child.name} was not ready after {READY_TIMEOUT_S:.0f} s")
            if self.stopping:
                return
            time.sleep(POLL_S)

    # -- watching --------------------------------------------------------------------------
    def run(self) -> str | None:
        """Supervise until a stop is requested (None) or an essential program exits (why, in words)."""
        while not self.stopping:
            reason = self.poll()
            if reason is not None:
                return reason
            time.sleep(POLL_S)
        return None

    def poll(self) -> str | None:
        """One pass: note the children that exited, restart those whose backoff is over.
        Returns how an essential program ended, if one did."""
        for child in self.children:
            now = time.monotonic()
            if child.proc is not None and child.proc.returncode is None:
                returncode = self._exited(child)
                if returncode is None:
                    continue
                uptime = now - child.started_at
                what = f"{child.name} (pid {child.proc.pid}) {describe_exit(returncode)} after {uptime:.1f} s"
                if child.program.essential:
                    self._finish(child, returncode)
                    return what
                child.delay_s = self.backoff.next_delay(child.delay_s, uptime)
                child.restart_at = now + child.delay_s
                log.warning("serve: %s; restarting it in %g s", what, child.delay_s)
                self._finish(child, returncode)
            elif child.restart_at is not None and now >= child.restart_at:
                child.generation += 1
                try:
                    self._spawn(child)
                except OSError as exc:
                    child.delay_s = self.backoff.next_delay(child.delay_s, 0.0)
                    child.restart_at = now + child.delay_s
                    log.error("serve: %s could not restart (%s); trying again in %g s", child.name, exc, child.delay_s)
                    continue
                log.warning("serve: %s restarted (pid %d)", child.name, child.proc.pid)
        return None

    def _exited(self, child: _Child) -> int | None:
        """The child's returncode once it has exited, before it is reaped: until _finish, its pid
        is still taken."""
        try:
            status = os.waitid(os.P_PID, child.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped: Popen has its status
            return child.proc.poll()
        return None if status is None else _returncode(status)

    def _finish(self, child: _Child, returncode: int) -> None:
        """Run the child's on_exit, then reap it."""
        if child.program.on_exit is not None and child.proc.returncode is None:
            try:
                child.program.on_exit(child.proc.pid, returncode)
            except Exception:  # the reconciler's next passes do the same, later
                log.exception("serve: handling the exit of %s failed", child.name)
        child.proc.wait()

    # -- stopping --------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every child: SIGTERM, again after the grace period, SIGKILL after KILL_AFTER_S;
        the `stop_last` ones once the others are gone. After a second stop request, SIGKILL at once."""
        self.stopping = True
        for child in self.children:
            child.restart_at = None
        first = [c for c in self.children if not c.program.stop_last]
        last = [c for c in self.children if c.program.stop_last]
        for group in (first, last):
            self._signal(group, signal.SIGTERM)
            if not self._wait(group, self.grace_s):
                busy = ", ".join(c.name for c in self._alive(group))
                log.warning("serve: %s still running after %g s: stopping it now", busy, self.grace_s)
                self._signal(group, signal.SIGTERM)
                if not self._wait(group, KILL_AFTER_S):
                    self._signal(group, signal.SIGKILL)
                    self._wait(group, KILL_AFTER_S, killing=True)

    def _alive(self, group: list[_Child]) -> list[_Child]:
        return [c for c in group if c.proc is not None and c.proc.returncode is None]

    def _signal(self, group: list[_Child], signum: int) -> None:
        for child in self._alive(group):
            try:
                # Its group: what it started (RQ's scheduler) too. Not yet reaped, so the pid is still its own.
                os.killpg(child.proc.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def _wait(self, group: list[_Child], timeout_s: float, *, killing: bool = False) -> bool:
        """Until every child of the group has exited (True) or the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            for child in self._alive(group):
                returncode = self._exited(child)
                if returncode is not None:
                    log.info("serve: %s %s", child.name, describe_exit(returncode))
                    self._finish(child, returncode)
            if not self._alive(group):
                return True
            if self.kill_now and not killing:
                # A second Ctrl-C: everything, at once, Redis included.
                killing = True
                self._signal(self.children, signal.SIGKILL)
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S / 2)
