"""Azure ML's `distribution` on one host: the step's command started once per process (rank),
each with the variables its framework reads, as Azure ML's launchers set them.

The executor starts this file as the step's one process (`python -I distribution.py CONFIG`),
inside the step's sandbox when it has one, so every rank shares the step's namespaces (their
loopback, for the rendezvous), its cancel, its timeout and its log. Standard library only:
a sandboxed step sees this file, not the server's packages.

Each rank's lines come out prefixed `[rank N] `. The step fails when any rank fails: the
others are then stopped, as torchrun does, since a rank waiting in a collective for a dead
peer would wait forever.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

LOCALHOST = "127.0.0.1"
STOP_GRACE_S = 3.0
POLL_S = 0.05
# The config file the executor writes in the step's folder.
CONFIG_NAME = "distribution.json"


def ports_needed(kind: str, processes: int) -> int:
    return {"pytorch": 1, "tensorflow": processes}.get(kind, 0)


def rank_environments(kind: str, processes: int, ports: list[int]) -> list[dict[str, str]]:
    """The variables of each rank, in rank order (one host: local rank = rank, node rank 0)."""
    envs = []
    for rank in range(processes):
        if kind == "pytorch":
            env = {
                "RANK": rank,
                "WORLD_SIZE": processes,
                "LOCAL_RANK": rank,
                "LOCAL_WORLD_SIZE": processes,
                "NODE_RANK": 0,
                "GROUP_RANK": 0,
                "MASTER_ADDR": LOCALHOST,
                "MASTER_PORT": ports[0],
            }
        elif kind == "tensorflow":
            config = {
                "cluster": {"worker": [f"{LOCALHOST}:{port}" for port in ports[:processes]]},
                "task": {"type": "worker", "index": rank},
                "environment": "cloud",
            }
            env = {"TF_CONFIG": json.dumps(config)}
        elif kind == "mpi":
            env = {
                "OMPI_COMM_WORLD_RANK": rank,
                "OMPI_COMM_WORLD_SIZE": processes,
                "OMPI_COMM_WORLD_LOCAL_RANK": rank,
                "OMPI_COMM_WORLD_LOCAL_SIZE": processes,
                "OMPI_COMM_WORLD_NODE_RANK": 0,
                "PMI_RANK": rank,
                "PMI_SIZE": processes,
            }
        else:
            raise ValueError(f"unknown distribution type {kind!r}")
        envs.append({key: str(value) for key, value in env.items()})
    return envs


def free_ports(count: int) -> list[int]:
    """Ports free on this (the sandbox's) loopback: all held open at once, so they differ."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOCALHOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def write_config(workdir: Path, *, kind: str, processes: int, command: str) -> Path:
    path = workdir / CONFIG_NAME
    path.write_text(json.dumps({"type": kind, "processes": processes, "command": command}))
    return path


class Launcher:
    def __init__(self, kind: str, processes: int, command: str):
        self.kind = kind
        self.command = command
        self.envs = rank_environments(kind, processes, free_ports(ports_needed(kind, processes)))
        self.procs: list[subprocess.Popen] = []
        self.readers: list[threading.Thread] = []
        self.out_lock = threading.Lock()
        self.stopping = False

    def say(self, text: str) -> None:
        with self.out_lock:
            sys.stdout.buffer.write(f"[stepwise] {text}\n".encode())
            sys.stdout.buffer.flush()

    def _copy(self, rank: int, stream) -> None:
        prefix = f"[rank {rank}] ".encode()
        for line in iter(stream.readline, b""):
            with self.out_lock:
                sys.stdout.buffer.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
                sys.stdout.buffer.flush()
        stream.close()

    def start(self) -> None:
        self.say(f"{self.kind} distribution: starting {len(self.envs)} processes")
        for rank, extra in enumerate(self.envs):
            proc = subprocess.Popen(
                ["/bin/bash", "-c", self.command],
                env={**os.environ, **extra},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # A group per rank: stopping a rank stops what its shell started.
                process_group=0,
            )
            self.procs.append(proc)
            reader = threading.Thread(target=self._copy, args=(rank, proc.stdout), daemon=True)
            reader.start()
            self.readers.append(reader)

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def wait(self) -> int:
        """The first failing rank's exit code (the others are stopped then), else 0."""
        failed: tuple[int, int] | None = None
        stopped_at = 0.0
        while any(proc.poll() is None for proc in self.procs):
            if failed is None:
                for rank, proc in enumerate(self.procs):
                    code = proc.poll()
                    if code is not None and code != 0:
                        failed = (rank, code)
                        self.say(f"rank {rank} exited with code {code}: stopping the other ranks")
                        self.stop_all()
                        stopped_at = time.monotonic()
                        break
            elif time.monotonic() - stopped_at > STOP_GRACE_S:
                self.stop_all(signal.SIGKILL)
            time.sleep(POLL_S)
        for reader in self.readers:
            reader.join(timeout=1.0)
        if failed is None:
            failed = next(((r, p.returncode) for r, p in enumerate(self.procs) if p.returncode != 0), None)
        if failed is not None:
            return failed[1] if failed[1] > 0 else 128 - failed[1]
        self.say(f"all {len(self.procs)} processes succeeded")
        return 0


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    launcher = Launcher(config["type"], int(config["processes"]), config["command"])

    def forward(signum, _frame):
        # The worker stops the step (cancel, timeout) by signalling this process's group.
        launcher.stop_all(signum)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    launcher.start()
    return launcher.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
