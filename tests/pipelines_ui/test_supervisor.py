"""The supervisor behind `serve`: its backoff policy on plain numbers, and its handling of real
child processes and real signals."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines_ui import supervisor
from pipelines_ui.supervisor import Backoff, Program, Supervisor, describe_exit
from tests.integration.conftest import wait_for

FAST = Backoff(initial_s=0.05, maximum_s=0.2, stable_s=60)
ROOT = Path(__file__).resolve().parents[2]
IGNORES_SIGTERM = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)",
]


def sleeper(_generation: int) -> list[str]:
    return ["sleep", "600"]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


@pytest.fixture
def supervised():
    """Supervisors made by a test; whatever they still run is stopped after it."""
    made: list[Supervisor] = []

    def make(programs: list[Program], **kwargs) -> Supervisor:
        kwargs.setdefault("backoff", FAST)
        kwargs.setdefault("grace_s", 5)
        made.append(Supervisor(programs, **kwargs))
        return made[-1]

    yield make
    for sup in made:
        sup.kill_now = True
        sup.stop()


# ---- the policy ---------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_maximum_and_starts_over_after_a_stable_run():
    policy = Backoff(initial_s=1, maximum_s=30, stable_s=60)
    delays = []
    previous = None
    for _ in range(7):
        previous = policy.next_delay(previous, uptime_s=2)
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert policy.next_delay(30, uptime_s=60) == 1
    assert policy.next_delay(30, uptime_s=59.9) == 30


def test_exits_are_described_by_status_or_signal_name():
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"


# ---- real processes ----------------------------------------------------------------------------


def test_a_killed_child_is_restarted_after_its_backoff_and_its_death_logged(supervised, caplog):
    sup = supervised([Program("worker-0", sleeper), Program("other", sleeper)])
    sup.start()
    first, other = sup.pid("worker-0"), sup.pid("other")
    caplog.set_level(logging.INFO, logger="pipelines_ui.supervisor")

    os.kill(first, signal.SIGKILL)
    replaced = wait_for(
        lambda: sup.poll() is None and sup.pid("worker-0") not in (None, first) and sup.pid("worker-0"),
        timeout=10,
        message="a new worker-0",
    )
    assert alive(replaced)
    assert not alive(first)
    assert sup.pid("other") == other  # the others are left alone
    assert f"worker-0 (pid {first}) killed by SIGKILL" in caplog.text
    assert f"worker-0 restarted (pid {replaced})" in caplog.text


def test_each_restart_gets_the_next_generation_of_its_command(supervised):
    generations = []

    def command(generation: int) -> list[str]:
        generations.append(generation)
        return ["true"]  # exits at once: restarted again and again

    sup = supervised([Program("flaky", command)])
    sup.start()
    wait_for(lambda: sup.poll() is None and len(generations) >= 3, timeout=10, message="two restarts")
    assert generations[:3] == [0, 1, 2]


def test_on_exit_sees_the_dead_child_before_it_is_reaped(supervised):
    seen = []

    def on_exit(pid: int, returncode: int) -> None:
        # Still a zombie: the pid cannot have been given to another process yet.
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        seen.append((pid, returncode, state))

    sup = supervised([Program("worker-0", sleeper, on_exit=on_exit)])
    sup.start()
    pid = sup.pid("worker-0")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: sup.poll() is None and seen, timeout=10, message="the exit handler")
    assert seen == [(pid, -signal.SIGKILL, "Z")]
    assert not Path(f"/proc/{pid}").exists()  # reaped after it


def test_a_failing_exit_handler_does_not_stop_supervision(supervised):
    def on_exit(pid: int, returncode: int) -> None:
        raise RuntimeError("database down")

    sup = supervised([Program("worker-0", sleeper, on_exit=on_exit)])
    sup.start()
    pid = sup.pid("worker-0")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: sup.poll() is None and sup.pid("worker-0") not in (None, pid), timeout=10, message="a restart")


def test_the_death_of_an_essential_child_is_returned_and_nothing_restarts_it(supervised):
    sup = supervised([Program("daphne", sleeper, essential=True), Program("worker-0", sleeper)])
    sup.start()
    pid = sup.pid("daphne")
    os.kill(pid, signal.SIGKILL)
    reason = wait_for(sup.poll, timeout=10, message="the essential child's death")
    assert reason.startswith(f"daphne (pid {pid}) killed by SIGKILL after ")
    assert sup.pid("daphne") is None


def test_a_program_that_never_gets_ready_fails_the_start(supervised, monkeypatch):
    monkeypatch.setattr(supervisor, "READY_TIMEOUT_S", 0.3)
    sup = supervised([Program("redis-server", sleeper, ready=lambda: False)])
    with pytest.raises(supervisor.SupervisorError, match="redis-server was not ready after"):
        sup.start()


def test_stop_ends_the_others_before_the_stop_last_ones(supervised):
    order = []
    sup = supervised(
        [
            Program("redis-server", sleeper, stop_last=True, on_exit=lambda pid, rc: order.append("redis-server")),
            Program("worker-0", sleeper, on_exit=lambda pid, rc: order.append("worker-0")),
            Program("reconciler", sleeper, on_exit=lambda pid, rc: order.append("reconciler")),
        ]
    )
    sup.start()
    pids = [sup.pid(name) for name in ("redis-server", "worker-0", "reconciler")]
    sup.stop()
    assert sorted(order[:2]) == ["reconciler", "worker-0"]
    assert order[2] == "redis-server"
    assert not any(alive(pid) for pid in pids)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(supervised, monkeypatch):
    monkeypatch.setattr(supervisor, "KILL_AFTER_S", 0.2)
    sup = supervised([Program("stubborn", lambda _gen: IGNORES_SIGTERM)], grace_s=0.2)
    sup.start()
    pid = sup.pid("stubborn")
    wait_for(lambda: _ignores_sigterm(pid), timeout=10, message="its SIGTERM handler")
    sup.stop()
    assert not alive(pid)


def _ignores_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


# ---- real signals to a supervising process ----------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    from pipelines_ui.supervisor import Program, Supervisor
    stubborn = [sys.executable, "-c", {ignores!r}]
    sup = Supervisor([Program("stubborn", lambda g: stubborn), Program("sleeper", lambda g: ["sleep", "600"])],
                     grace_s=float(sys.argv[1]))
    sup.install_signal_handlers()
    sup.start()
    print("started", flush=True)
    sup.run()
    print("stopping", flush=True)
    sup.stop()
    print("stopped", flush=True)
    """
).format(ignores=IGNORES_SIGTERM[2])


class SupervisorProcess:
    def __init__(self, proc: subprocess.Popen, out: Path) -> None:
        self.proc = proc
        self.out = out
        children = children_of(proc.pid)
        self.stubborn = next(pid for pid in children if "SIG_IGN" in _cmdline(pid))
        self.sleeper = next(pid for pid in children if pid != self.stubborn)

    def said(self, text: str) -> bool:
        return text in self.out.read_text()


@pytest.fixture
def supervisor_process(tmp_path):
    """A process that supervises a sleeper and a child that ignores SIGTERM, as serve does."""
    started: list[SupervisorProcess] = []

    def start(grace_s: float) -> SupervisorProcess:
        out = tmp_path / f"supervisor-{len(started)}.log"
        with open(out, "wb") as handle:
            proc = subprocess.Popen(
                [sys.executable, "-c", SCRIPT, str(grace_s)], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
            )
        wait_for(lambda: "started" in out.read_text() and len(children_of(proc.pid)) == 2, timeout=20)
        started.append(SupervisorProcess(proc, out))
        wait_for(lambda: _ignores_sigterm(started[-1].stubborn), message="the stubborn child's handler")
        return started[-1]

    yield start
    for sup in started:
        for pid in (sup.stubborn, sup.sleeper, sup.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        sup.proc.wait()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def test_a_second_ctrl_c_kills_at_once(supervisor_process):
    sup = supervisor_process(grace_s=600)
    sup.proc.send_signal(signal.SIGINT)
    wait_for(lambda: sup.said("stopping"), timeout=10, message="the first Ctrl-C")
    wait_for(lambda: not alive(sup.sleeper), timeout=10, message="the sleeper to stop")
    assert alive(sup.stubborn)  # waits out its grace period
    sup.proc.send_signal(signal.SIGINT)
    assert sup.proc.wait(timeout=10) == 0
    assert sup.said("stopped")
    assert not alive(sup.stubborn)


def test_children_end_when_their_supervisor_is_killed(supervisor_process):
    sup = supervisor_process(grace_s=1)
    sup.proc.send_signal(signal.SIGKILL)
    sup.proc.wait()
    # SIGTERM from the kernel (PR_SET_PDEATHSIG): the sleeper ends; the stubborn one ignores it on purpose.
    wait_for(lambda: not alive(sup.sleeper), timeout=10, message="the orphaned sleeper to end")


def test_children_do_not_get_the_terminals_ctrl_c(supervisor_process):
    sup = supervisor_process(grace_s=1)
    for pid in (sup.stubborn, sup.sleeper):
        # Each in a process group of its own: a Ctrl-C typed in the terminal signals serve's group only.
        assert os.getpgid(pid) == pid != os.getpgid(sup.proc.pid)
