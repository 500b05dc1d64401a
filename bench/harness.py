"""The bench's world: its own database and var folder, worker and server processes, the machine.

`prepare_environment` runs before Django is imported: it points STEPWISE_VAR and
DATABASE_URL at a throwaway bench state, so a bench never touches the data of
`make run`, and every process the bench starts inherits the same settings.
"""

from __future__ import annotations

import fcntl
import os
import platform
import resource
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
STATE_DIR = BENCH_DIR / "state"
BENCH_PG_DB = "stepwise_bench"


# ---- environment (before Django) --------------------------------------------------------


def _force_rmtree(path: Path) -> None:
    # Artifacts are stored read-only.
    def make_writable(func, target, _exc):
        try:
            os.chmod(os.path.dirname(target), stat.S_IRWXU)
            os.chmod(target, stat.S_IRWXU)
        except OSError:
            pass
        func(target)

    if path.exists():
        shutil.rmtree(path, onerror=make_writable)


def bench_database_url() -> str:
    """BENCH_DATABASE_URL; else the server of a PostgreSQL DATABASE_URL with a bench database; else SQLite."""
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        return explicit
    base = os.environ.get("DATABASE_URL", "")
    if base.startswith(("postgres://", "postgresql://", "pgsql://")):
        return urlunparse(urlparse(base)._replace(path=f"/{BENCH_PG_DB}"))
    return f"sqlite:///{STATE_DIR / 'bench.sqlite3'}"


def _recreate_postgres(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


_lock_handle = None


def _lock() -> None:
    """One bench at a time per checkout: a second one would wipe the first one's state."""
    global _lock_handle
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    _lock_handle = open(BENCH_DIR / ".lock", "w")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(_lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another bench is running in this checkout ({BENCH_DIR / '.lock'})") from None


def prepare_environment() -> dict[str, str]:
    """A fresh bench state (var folder, database) and the environment every bench process shares."""
    _lock()
    _force_rmtree(STATE_DIR)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    (STATE_DIR / "logs").mkdir()
    url = bench_database_url()
    if url.startswith(("postgres://", "postgresql://", "pgsql://")):
        _recreate_postgres(url)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="pipelines_ui.settings",
        STEPWISE_VAR=str(STATE_DIR),
        DATABASE_URL=url,
        STEPWISE_ARTIFACTS=str(STATE_DIR / "artifacts"),
        STEPWISE_WORKDIR=str(STATE_DIR / "work"),
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"),
        # Bench users log in with a session made in the database, never a password.
        STEPWISE_FAST_PASSWORD_HASHER="1",
    )
    return {"database_url": url, "state_dir": str(STATE_DIR)}


# ---- the machine -------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, object]:
    """CPU, cores, RAM, OS, Python, database and Redis versions (call after django.setup())."""
    import redis
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("select sqlite_version()")
            db = f"SQLite {cursor.fetchone()[0]} (WAL)"
        elif connection.vendor == "postgresql":
            cursor.execute("show server_version")
            db = f"PostgreSQL {cursor.fetchone()[0]}"
        else:
            db = connection.vendor
    try:
        redis_version = redis.Redis.from_url(settings.REDIS_URL).info("server")["redis_version"]
    except Exception:  # the figures that need Redis will fail loudly on their own
        redis_version = "unreachable"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "database": db,
        "redis": redis_version,
        "git": _git_revision(),
    }


# ---- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.02, what: str = "it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class Processes:
    """Child processes (workers, reconciler, server) that stop when the bench ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], *, log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(STATE_DIR / "logs" / f"{log_name}.log", "ab")  # noqa: SIM115 - closed with the process
        env = {**os.environ, **(env or {})}
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self, procs: list[subprocess.Popen] | None = None) -> None:
        targets = list(self.procs if procs is None else procs)
        for proc in targets:
            if proc.poll() is None:
                proc.terminate()
        for proc in targets:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc in self.procs:
                self.procs.remove(proc)


class Stack:
    """The bench's compute target, its step workers and the reconciler, as `make run` starts them."""

    def __init__(self, procs: Processes, *, workers: int = 2, env: dict[str, str] | None = None):
        self.procs = procs
        self.count = workers
        self.env = env or {}
        self.workers: list[subprocess.Popen] = []
        self.reconciler: subprocess.Popen | None = None
        self.target_name = "bench"
        self.queue = f"bench-{uuid.uuid4().hex[:8]}"

    def setup_target(self) -> None:
        from runs.models import ComputeTarget

        ComputeTarget.objects.update_or_create(
            name=self.target_name, defaults={"queue": self.queue, "aliases": ["cpu-cluster"], "is_default": True}
        )
        ComputeTarget.objects.exclude(name=self.target_name).update(is_default=False)

    def start(self) -> None:
        for _ in range(self.count):
            self.start_worker()
        self.reconciler = self.procs.start(
            [sys.executable, str(ROOT / "manage.py"), "reconcile", "--loop"], log_name="reconciler", env=self.env
        )
        self.wait_ready()

    def start_worker(self) -> subprocess.Popen:
        index = len(self.workers)
        name = f"bench-{os.getpid()}-{index}-{uuid.uuid4().hex[:4]}"
        proc = self.procs.start(
            [sys.executable, str(ROOT / "manage.py"), "stepwise_worker", self.target_name, "--name", name],
            log_name=f"worker-{index}",
            env=self.env,
        )
        self.workers.append(proc)
        return proc

    def wait_ready(self) -> None:
        from redis import Redis
        from rq import Queue, Worker

        from runs.queues import get_queue, queue_name

        url = self.env.get("REDIS_URL")
        queue = Queue(queue_name(self.queue), connection=Redis.from_url(url)) if url else get_queue(self.queue)
        live = [proc for proc in self.workers if proc.returncode is None]

        def ready() -> bool:
            for proc in live:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker exited with {proc.returncode}: see {STATE_DIR / 'logs'}")
            return Worker.count(queue=queue) >= len(live)

        wait_until(ready, timeout=60, interval=0.1, what="the step workers")

    def stop(self) -> None:
        self.procs.stop(self.workers + ([self.reconciler] if self.reconciler else []))
        self.workers = []
        self.reconciler = None


class Server:
    """daphne serving `pipelines_ui.asgi:application` against the bench database."""

    def __init__(self, procs: Processes):
        self.procs = procs
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = self.procs.start(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "pipelines_ui.asgi:application"],
            log_name="daphne",
        )

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.proc.returncode}: see {STATE_DIR / 'logs'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_until(answers, timeout=30, interval=0.05, what="daphne")

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop([self.proc])
            self.proc = None


# ---- CPU -------------------------------------------------------------------------------


def process_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of a live process itself, and of the children it has reaped:
    a worker's steps, their sandboxes and whatever the worker, their subreaper, reaped of them."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(value) / os.sysconf("SC_CLK_TCK") for value in fields[11:15])
    return utime + stime, cutime + cstime


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (the floors' subprocesses)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---- numbers -----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)
