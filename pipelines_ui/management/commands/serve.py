"""`make run`'s server: the ASGI app, the step workers and, when needed, a local Redis.

One process group: Ctrl-C (or SIGTERM) stops every child.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from urllib.parse import urlparse

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


class Command(BaseCommand):
    help = "Serve Stepwise: web (daphne), step workers and a local redis-server if none answers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", 2)))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))

    def handle(self, *args, port: int, workers: int, host: str, **options) -> None:
        children: list[subprocess.Popen] = []
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")

        if not redis_answers(settings.REDIS_URL):
            parsed = urlparse(settings.REDIS_URL)
            if parsed.hostname not in ("127.0.0.1", "localhost") or not shutil.which("redis-server"):
                raise CommandError(f"Redis at {settings.REDIS_URL} does not answer (install redis-server)")
            data_dir = settings.VAR_DIR / "redis"
            data_dir.mkdir(parents=True, exist_ok=True)
            children.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(parsed.port or 6379),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(data_dir),
                    ]
                )
            )
            for _ in range(50):
                if redis_answers(settings.REDIS_URL):
                    break
                time.sleep(0.1)

        children.append(
            subprocess.Popen([python, "-m", "daphne", "-b", host, "-p", str(port), "pipelines_ui.asgi:application"])
        )
        for index in range(workers):
            children.append(
                subprocess.Popen([python, manage, "stepwise_worker", "--name", f"worker-{os.getpid()}-{index}"])
            )
        children.append(subprocess.Popen([python, manage, "reconcile", "--loop"]))
        self.stdout.write(self.style.SUCCESS(f"Stepwise is serving on http://{host}:{port}/ with {workers} workers"))

        stopping = False

        def stop(*_args) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.5)
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            deadline = time.monotonic() + 10
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
