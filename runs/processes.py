"""The processes of steps on this host: tagging them, and killing what a step or a dead
worker left behind, so that no user process outlives its step.

Every process of an attempt carries two tags in its environment (inherited by whatever it
starts): the attempt's, to find its processes after its worker died or froze, and its
worker's (pid and start time), to tell a dead worker's orphans from a live one's steps.
A worker is also a child subreaper (Linux): whatever its step leaves running, once that
step's shell has ended, becomes the worker's own child, found by parentage, which no
`setsid`, double fork or cleared environment escapes.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import multiprocessing
import os
import select
import signal
import threading
import time
from pathlib import Path

from django.db import connections

ATTEMPT_ENV = "STEPWISE_ATTEMPT_ID"
WORKER_ENV = "STEPWISE_WORKER"
PR_SET_CHILD_SUBREAPER = 36
REAP_TIMEOUT_S = 5.0

_subreaper = False
# Long-lived children of this worker that are not a step's (the steps' network helper).
_helpers: set[int] = set()


def register_helper(pid: int) -> None:
    _helpers.add(pid)


def unregister_helper(pid: int) -> None:
    _helpers.discard(pid)


def attempt_id(step_run_id: int, attempt: int) -> str:
    """The tag of one attempt's processes: database, step run and attempt (pids get reused; this does not)."""
    db = connections["default"].settings_dict
    key = f"{db.get('HOST') or ''}:{db.get('PORT') or ''}/{db['NAME']}#{step_run_id}.{attempt}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _tagged_processes(variable: str) -> dict[int, str]:
    """pid -> value of the environment variable, for every process of this host that has it (Linux /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return {}
    needle = f"\0{variable}=".encode()
    found: dict[int, str] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes()
        except OSError:
            continue
        at = environ.find(needle)
        if at >= 0:
            value = environ[at + len(needle) :].split(b"\0", 1)[0]
            found[int(entry.name)] = value.decode(errors="replace")
    return found


def _kill_processes(pids: list[int]) -> None:
    """SIGKILL the processes and their process groups (which catches children that cleared their environment)."""
    groups: set[int] = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            pass
    # A step runs in a session of its own: its groups never include this process or init.
    for pgid in groups - {0, 1, os.getpgrp()}:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def kill_attempt_processes(step_run_id: int, attempt: int) -> list[int]:
    """SIGKILL what an attempt left running on this host: strays after it ended, or everything
    after its worker died or froze. Returns the tagged pids found."""
    return kill_tagged(attempt_id(step_run_id, attempt))


def trial_tag(step_run_id: int, attempt: int, trial: int) -> str:
    """The tag of a sweep trial's processes: its attempt's, extended, so the attempt's kill finds them too."""
    return f"{attempt_id(step_run_id, attempt)}.{trial}"


def kill_tagged(tag: str) -> list[int]:
    """SIGKILL the processes tagged `tag` or a tag it extends (`tag.N`); returns their pids."""
    found = [
        pid for pid, value in _tagged_processes(ATTEMPT_ENV).items() if value == tag or value.startswith(tag + ".")
    ]
    _kill_processes(found)
    return found


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot: with the pid, it names one process for good."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


@functools.cache
def worker_tag() -> str:
    from runs.queues import instance_id

    return f"{os.getpid()}:{start_time(os.getpid())}:{instance_id()}"


def kill_orphans() -> list[int]:
    """SIGKILL step processes on this host whose worker is gone (SIGKILLed, crashed).

    Each worker runs this when it starts, so that a host's leftovers are reaped even where no
    reconciler runs; the pid and start time of the step's worker tell a dead worker from a live one.
    Another install's orphans on this host are its own to reap: its reconciler records them.
    """
    from runs.queues import instance_id

    ours = instance_id()
    orphans = []
    for pid, tag in _tagged_processes(WORKER_ENV).items():
        worker_pid, _, rest = tag.partition(":")
        started, _, instance = rest.partition(":")
        if instance and instance != ours:
            continue
        if not worker_pid.isdigit() or start_time(int(worker_pid)) != started:
            orphans.append(pid)
    _kill_processes(orphans)
    return orphans


def become_subreaper() -> bool:
    """Make this process the reaper of its steps' orphans; False where the kernel has no such thing."""
    global _subreaper
    try:
        _subreaper = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _subreaper = False
    return _subreaper


def _children() -> dict[int, str]:
    """This process's children and their states (always readable, even mid-exec).

    From each thread's /proc/self/task/<tid>/children: a few reads, where the scan of every
    /proc/<pid>/stat took a step 0.5 ms and more the busier the host (`make bench`). Kernels
    without those files (CONFIG_PROC_CHILDREN) get the scan. Plain os calls and bytes, not
    pathlib: this runs after every step.
    """
    if not _children_files():
        return _children_by_scan()
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as listing:
                pids.update(int(pid) for pid in listing.read().split())
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                found[pid] = stat.read().rpartition(b")")[2].split()[0].decode()
        except (OSError, IndexError):
            continue  # reaped meanwhile
    return found


@functools.cache  # the kernel's build: it does not change under a process
def _children_files() -> bool:
    return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")


def _children_by_scan() -> dict[int, str]:
    """The children by the parent pid in every /proc/<pid>/stat."""
    me = os.getpid()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(me):
            found[int(entry.name)] = fields[0]
    return found


def _reap(pid: int) -> None:
    """Wait (at most REAP_TIMEOUT_S) for a child killed or exiting to end, and reap it.

    Woken by its pidfd the moment it ends: a sandbox's PID-namespace init, still tearing its
    namespace down as the step's shell returns, ends within a millisecond or so, where polling
    every 5 ms cost a fifth of the steps 5 ms (`make bench`). Polled where pidfds do not exist.
    """
    deadline = time.monotonic() + REAP_TIMEOUT_S
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None  # before Linux 5.3, or reaped already (then waitpid says so)
    try:
        while True:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if fd is None:
                time.sleep(min(0.005, left))
            else:
                # poll, not select: a worker's descriptors may number past select's 1024.
                ended = select.poll()
                ended.register(fd, select.POLLIN)
                ended.poll(left * 1000)
    finally:
        if fd is not None:
            os.close(fd)


def kill_leftovers(step_run_id: int, attempt: int) -> list[int]:
    """Kill what an ended step left running on this host; returns the pids killed.

    In a subreaper worker, its leftovers are its children other than its own helpers (RQ's
    scheduler, a multiprocessing child): killed with their groups and reaped, until none is
    left (a killed one's own children come up next). Elsewhere, by the attempt's tag, which
    a process misses while it is in the middle of an exec.
    """
    if not _subreaper:
        return kill_attempt_processes(step_run_id, attempt)
    return kill_children()


def kill_children() -> list[int]:
    """In a subreaper, kill and reap its children other than its own helpers; returns the pids
    killed (one that had exited already is reaped, not counted)."""
    if not _subreaper:
        return []
    own = {child.pid for child in multiprocessing.active_children()} | _helpers
    killed: list[int] = []
    for _ in range(20):
        children = {pid: state for pid, state in _children().items() if pid not in own}
        # One that has already exited is no stray: reaped, not reported.
        for pid in [pid for pid, state in children.items() if state == "Z"]:
            _reap(pid)
        leftovers = [pid for pid, state in children.items() if state != "Z"]
        if not leftovers:
            break
        _kill_processes(leftovers)
        for pid in leftovers:
            _reap(pid)
        killed += leftovers
    return killed
