"""The first user's credentials, shown where `make run` ends rather than among its install output.

`stepwise_setup` creates the first user with a random password and keeps it in a file that only
the owner can read, under the install's var/ folder; `serve` shows it last, after the address it
serves on, until that user has signed in once; then the file is removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model


def _path() -> Path:
    return Path(settings.VAR_DIR) / "first-login.json"


def first_login_remember(*, username: str, password: str) -> None:
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"username": username, "password": password}, handle)


def first_login_banner(*, url: str) -> str | None:
    """The lines to show after the server's address, or None once the first user has signed in."""
    path = _path()
    try:
        saved = json.loads(path.read_text())
        username, password = saved["username"], saved["password"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    user = get_user_model().objects.filter(username=username).first()
    if user is None or user.last_login is not None:
        path.unlink(missing_ok=True)
        return None
    lines = [
        f"Sign in at {url}",
        f"  user:     {username}",
        f"  password: {password}",
        "(shown until this user first signs in; change the password on the admin site)",
    ]
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])
