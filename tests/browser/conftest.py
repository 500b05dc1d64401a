"""Browser tests: Debian's chromium through Playwright, against daphne serving the real ASGI app."""

from __future__ import annotations

import os

import pytest

# The sync Playwright fixtures leave an event loop in the main thread for the rest of the
# session, and Django refuses ORM calls from a thread with a running loop.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

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
