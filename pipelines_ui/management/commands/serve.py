"""`make run`'s server: the ASGI app (daphne), the step workers, the reconciler and, when no
Redis answers, a private redis-server, kept running by pipelines_ui/supervisor.py.

A worker, the reconciler or the private Redis that dies is restarted with a backoff, and the
attempt a dead worker was running is failed as "worker lost" at once (then retried as any lost
attempt). Only Ctrl-C or SIGTERM stops everything; if the web server dies, `serve` stops the
rest and exits non-zero.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connections

from pipelines_ui.first_login import first_login_banner
from pipelines_ui.supervisor import Program, Supervisor, SupervisorError, describe_exit
from runs import queues, reconciler, sandbox
from runs.models import ComputeTarget, Isolation

LOCAL_HOSTS = {"", "localhost", "localhost.localdomain"}


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


# ---- what serve says it uses ------------------------------------------------------------------


def redis_display_url(url: str) -> str:
    """The Redis URL without its password (`redis://:***@host:6379/0`)."""
    parts = urlsplit(url)
    shown = url
    if parts.password is not None:
        shown = shown.replace(parts.netloc, f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}", 1)
    if parts.query:
        pairs = [p.partition("=") for p in parts.query.split("&")]
        query = "&".join(f"{k}{eq}{'***' if k == 'password' else v}" for k, eq, v in pairs)
        shown = shown.replace(f"?{parts.query}", f"?{query}", 1)
    return shown


def describe_database(db: dict[str, Any]) -> str:
    """`PostgreSQL database "stepwise" on 127.0.0.1:5432 as postgres`, never its password."""
    engine = db["ENGINE"].rpartition(".")[2]
    if engine == "sqlite3":
        return f"SQLite {db['NAME']}"
    names = {"postgresql": "PostgreSQL", "mysql": "MySQL", "oracle": "Oracle"}
    where = db.get("HOST") or "the local socket"
    if db.get("PORT"):
        where = f"{where}:{db['PORT']}"
    user = f" as {db['USER']}" if db.get("USER") else ""
    return f'{names.get(engine, engine)} database "{db["NAME"]}" on {where}{user}'


# ---- services a step could reach without credentials ----------------------------------------


@dataclass(frozen=True)
class OpenService:
    what: str  # e.g. "Redis at redis://127.0.0.1:6379/0"
    how: str  # e.g. "answers without a password"
    targets: tuple[str, ...]  # the compute targets whose steps can reach it


def is_local(host: str | None) -> bool:
    """On this host's loopback (or a unix socket, no host at all)?"""
    if host is None or host.lower() in LOCAL_HOSTS or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def targets_reaching(
    targets: Iterable[ComputeTarget], *, local: bool, steps_share_host_network: bool
) -> tuple[str, ...]:
    """The compute targets whose steps can open a connection to a service on this host's loopback
    (`local`) or elsewhere. A sandbox keeps its steps off the loopback only when the worker gives them
    a network namespace of their own; a target without isolation always shares the worker's network."""
    reaching = []
    for target in targets:
        if not target.network:
            continue
        if not local or steps_share_host_network or target.isolation == Isolation.NONE:
            reaching.append(target.name)
    return tuple(sorted(reaching))


def redis_requires_password(url: str) -> bool | None:
    """Whether the Redis at `url` refuses a client without credentials; None when it does not answer."""
    pool = redis.ConnectionPool.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    pool.connection_kwargs.pop("password", None)
    pool.connection_kwargs.pop("username", None)
    client = redis.Redis(connection_pool=pool)
    try:
        client.ping()
    except redis.AuthenticationError:
        return True
    except redis.ResponseError as exc:  # older servers: "NOAUTH Authentication required"
        return "NOAUTH" in str(exc) or None
    except redis.RedisError:
        return None
    finally:
        pool.disconnect()
    return False


def postgres_requires_password(db: dict[str, Any]) -> bool | None:
    """Whether the PostgreSQL server refuses a client that does not know the password (trust
    authentication lets anyone in, whatever password it gives); None when it does not answer.
    A server that asks for passwords logs this probe as one failed authentication."""
    import psycopg

    try:
        with psycopg.connect(
            host=db.get("HOST") or None,
            port=db.get("PORT") or None,
            dbname=db["NAME"],
            user=db.get("USER") or None,
            password=f"not-the-password-{secrets.token_hex(8)}",
            connect_timeout=2,
        ):
            return False
    except psycopg.OperationalError as exc:
        text = str(exc)
        if "password" in text or "authentication" in text:
            return True
        return None


def open_services(
    *, redis_url: str, database: dict[str, Any], targets: Iterable[ComputeTarget], steps_share_host_network: bool
) -> list[OpenService]:
    """The Redis and database of this install that a step could connect to without credentials.

    Redis matters most: a worker unpickles and runs whatever job it finds there, outside any
    sandbox. `steps_share_host_network`: whether sandboxed steps with network see this host's
    loopback (they do unless their worker gives them a network namespace, see runs/sandbox.py).
    """
    targets = list(targets)
    found = []
    redis_host = urlsplit(redis_url).hostname
    reach = targets_reaching(targets, local=is_local(redis_host), steps_share_host_network=steps_share_host_network)
    if reach and redis_requires_password(redis_url) is False:
        found.append(OpenService(f"Redis at {redis_display_url(redis_url)}", "answers without a password", reach))
    if database["ENGINE"].endswith("postgresql"):
        local = is_local(database.get("HOST"))
        reach = targets_reaching(targets, local=local, steps_share_host_network=steps_share_host_network)
        if reach and postgres_requires_password(database) is False:
            how = "accepts connections without a password (trust authentication)"
            found.append(OpenService(describe_database(database), how, reach))
    return found


def open_services_warning(services: list[OpenService]) -> str:
    lines = ["", "!" * 100, "WARNING: steps can reach services that do not ask them for credentials:"]
    for service in services:
        lines.append(f"  - {service.what} {service.how} (steps of: {', '.join(service.targets)})")
    lines += [
        "A step could push a job into Redis that a worker runs outside any sandbox, or read and change",
        "every team's data in the database. The sandbox keeps steps off this host's loopback when the",
        "worker can give them a network namespace (a worker running as root, with pasta installed);",
        "otherwise these services must require credentials: Redis `requirepass` (and the password in",
        "REDIS_URL, redis://:PASSWORD@host:port/0), PostgreSQL password authentication (scram-sha-256",
        "in pg_hba.conf, and the password in DATABASE_URL); or turn `network` off on those compute targets.",
        "!" * 100,
        "",
    ]
    return "\n".join(lines)


# ---- the command ------------------------------------------------------------------------------


class Command(BaseCommand):
    help = (
        "Serve Stepwise: web (daphne), step workers, the reconciler, the scheduler, the notification "
        "dispatcher, the deployments' scorers and a local redis-server."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", 2)))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument(
            "--grace",
            type=float,
            default=10.0,
            help="seconds a stopping worker may finish its step before it is stopped (default 10)",
        )

    def handle(self, *args, port: int, workers: int, host: str, grace: float, **options) -> None:
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        serve_pid = os.getpid()
        programs: list[Program] = []

        own_redis = not redis_answers(settings.REDIS_URL)
        if own_redis:
            programs.append(self._redis_program())
        programs.append(
            Program(
                "daphne",
                lambda _gen: [python, "-m", "daphne", "-b", host, "-p", str(port), "pipelines_ui.asgi:application"],
                essential=True,
            )
        )
        for index in range(workers):
            name = f"worker-{index}"
            programs.append(
                Program(
                    name,
                    # RQ refuses a name a worker killed a moment ago still holds in Redis.
                    partial(_worker_command, python, manage, f"worker-{serve_pid}-{index}"),
                    on_exit=partial(self._worker_exited, name),
                )
            )
        programs.append(Program("reconciler", lambda _gen: [python, manage, "reconcile", "--loop"]))
        programs.append(Program("scheduler", lambda _gen: [python, manage, "stepwise_scheduler"]))
        programs.append(Program("dispatcher", lambda _gen: [python, manage, "stepwise_dispatcher"]))
        # Scorer processes for deployed models, each a child of this one (runs/registry/deployer.py).
        programs.append(Program("deployments", lambda _gen: [python, manage, "stepwise_deployments"]))

        database = describe_database(connections["default"].settings_dict)
        redis_text = redis_display_url(settings.REDIS_URL)
        self.stdout.write(f"Database: {database} (install {queues.instance_id()}: its queues and jobs in Redis)")
        if own_redis:
            self.stdout.write(
                f"Redis: {redis_text}, a redis-server started by serve for itself"
                " (nothing answered there; restarted if it dies)"
            )
        else:
            self.stdout.write(f"Redis: {redis_text}, already running (not started by serve)")

        supervisor = self.supervisor = Supervisor(programs, grace_s=grace)
        supervisor.install_signal_handlers()
        reason = None
        try:
            try:
                supervisor.start()
            except (SupervisorError, OSError) as exc:
                raise CommandError(f"could not start: {exc}") from None
            if not supervisor.stopping:  # a Ctrl-C while the children started
                self._warn_about_open_services()
                self.stdout.write(
                    self.style.SUCCESS(f"Stepwise is serving on http://{host}:{port}/ with {workers} workers")
                )
                self.stdout.write("A worker, the reconciler or Redis that dies is restarted; Ctrl-C stops everything.")
                # Last, so that the first user's credentials are not lost among the install's output.
                if banner := first_login_banner(url=f"http://{host}:{port}/"):
                    self.stdout.write(self.style.SUCCESS(banner))
                reason = supervisor.run()
        finally:
            if reason is not None:
                self.stderr.write(f"serve: the web server stopped ({reason}): stopping everything")
            else:
                self.stdout.write("serve: stopping (Ctrl-C again to kill everything at once)")
            supervisor.stop()
        if reason is not None:
            raise CommandError(f"the web server stopped: {reason}")

    def _redis_program(self) -> Program:
        parsed = urlsplit(settings.REDIS_URL)
        if not is_local(parsed.hostname) or parsed.scheme != "redis" or not shutil.which("redis-server"):
            raise CommandError(
                f"Redis at {redis_display_url(settings.REDIS_URL)} does not answer"
                " (serve starts one only for a redis:// URL on this host, with redis-server installed)"
            )
        data_dir = settings.VAR_DIR / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(parsed.port or 6379), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(data_dir), "--loglevel", "warning"]
        if parsed.password:
            argv += ["--requirepass", parsed.password]
        return Program(
            "redis-server",
            lambda _gen: argv,
            stop_last=True,
            ready=partial(redis_answers, settings.REDIS_URL),
        )

    def _worker_exited(self, name: str, pid: int, returncode: int) -> None:
        why = f"{name} (pid {pid}) {describe_exit(returncode)}"
        if self.supervisor.stopping:
            why += " as serve stopped"
        close_old_connections()
        try:
            reconciler.worker_exited(pid=pid, why=why)
        finally:
            connections.close_all()

    def _warn_about_open_services(self) -> None:
        found = open_services(
            redis_url=settings.REDIS_URL,
            database=connections["default"].settings_dict,
            targets=ComputeTarget.objects.all(),
            # The workers serve starts run on this host, as this user: what holds here holds for them.
            steps_share_host_network=sandbox.steps_share_host_network(),
        )
        connections.close_all()
        if found:
            self.stderr.write(self.style.WARNING(open_services_warning(found)))


def _worker_command(python: str, manage: str, name: str, generation: int) -> list[str]:
    if generation:
        name = f"{name}.{generation}"
    return [python, manage, "stepwise_worker", "--name", name]
