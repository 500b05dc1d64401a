"""Browser tests: Debian's chromium through Playwright, against daphne serving the real ASGI app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import database_url, free_port

# The sync Playwright fixtures leave an event loop in the main thread for the rest of the
# session, and Django refuses ORM calls from a thread with a running loop.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[2]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # Never `playwright install`: the system chromium is the browser.
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


@contextmanager
def serve_app(tmp_path: Path, *, worker: bool = False) -> Iterator[str]:
    """daphne with the real ASGI app on the test database (and a step worker if asked); yields its base URL."""
    env = dict(os.environ)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(
        DATABASE_URL=database_url(),
        DEBUG="true",  # whitenoise serves /static/ from the finders
        STEPWISE_ARTIFACTS=str(tmp_path / "artifacts"),
        STEPWISE_WORKDIR=str(tmp_path / "work"),
        STEPWISE_HEARTBEAT_S="1",
    )
    port = free_port()
    commands = [
        (
            "daphne",
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "pipelines_ui.asgi:application"],
        )
    ]
    if worker:
        commands.append(("worker", [sys.executable, "manage.py", "stepwise_worker"]))
    procs = []
    logs = []
    try:
        for name, cmd in commands:
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed below
            logs.append((name, tmp_path / f"{name}.log", log))
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(base + "/accounts/login/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise RuntimeError("daphne did not start:\n" + (tmp_path / "daphne.log").read_text()) from None
                time.sleep(0.1)
        yield base
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for name, path, handle in logs:
            handle.close()
            print(f"---- {name} log ----\n{path.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def web(transactional_db, tmp_path) -> Iterator[str]:
    """The app served by daphne alone (no worker): enough for the authoring pages."""
    with serve_app(tmp_path) as base:
        yield base


def sign_in(page, base: str, username: str) -> None:
    """Sign in through the login form (tests.conftest.make_user sets the password to pw-<username>)."""
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.click("button[type=submit]")
    page.wait_for_load_state()
