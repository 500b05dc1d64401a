"""Reaping a killed child: woken by its pidfd as it ends, polled where there are no pidfds,
given up after REAP_TIMEOUT_S for one that does not end."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from runs import processes

# Ends a moment after SIGTERM, the way a sandbox's init ends after tearing its namespace down.
SLOW_TO_END = (
    "import signal, time; signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.2), exit(0))); time.sleep(60)"
)


def started(code: str) -> subprocess.Popen:
    """A child of this process; the test holds its Popen so that nothing but _reap waits for it."""
    proc = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.3)  # let it install its handler
    return proc


def no_pidfd(_pid: int) -> int:
    raise OSError(38, "Function not implemented")


def is_reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_child_ending_late_is_reaped_woken_by_its_pidfd_not_by_polling(monkeypatch):
    child = started(SLOW_TO_END)
    pid = child.pid
    os.kill(pid, 15)

    def no_polling(_seconds: float) -> None:
        raise AssertionError("polled: _reap should wait on the child's pidfd")

    monkeypatch.setattr(processes.time, "sleep", no_polling)
    processes._reap(pid)
    assert is_reaped(pid)


def test_without_pidfds_a_child_is_reaped_by_polling(monkeypatch):
    monkeypatch.setattr(processes.os, "pidfd_open", no_pidfd)
    child = started(SLOW_TO_END)
    pid = child.pid
    os.kill(pid, 15)
    processes._reap(pid)
    assert is_reaped(pid)


@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfd", "polling"])
def test_a_child_that_does_not_end_is_given_up_after_the_timeout(monkeypatch, pidfds):
    if not pidfds:
        monkeypatch.setattr(processes.os, "pidfd_open", no_pidfd)
    monkeypatch.setattr(processes, "REAP_TIMEOUT_S", 0.2)
    child = started("import time; time.sleep(60)")
    pid = child.pid
    try:
        processes._reap(pid)
        assert not is_reaped(pid)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "still running, left for the next kill"
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_a_child_reaped_already_returns_at_once():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    processes._reap(proc.pid)  # no such child any more: nothing to wait for, no error


def test_a_worker_holding_over_a_thousand_descriptors_still_waits_on_the_pidfd():
    # select() refuses descriptors past 1024; a busy worker's pidfd can be one of those.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        child = started(SLOW_TO_END)
        os.kill(child.pid, 15)
        processes._reap(child.pid)
        assert is_reaped(child.pid)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
