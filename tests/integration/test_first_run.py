"""`make run`'s setup on an empty var/: `migrate` then `stepwise_setup`, as the Makefile runs
them, with the real settings (an SQLite file under STEPWISE_VAR, not the test database)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

EXAMPLES = sorted(p.parent.name for p in (ROOT / "examples").glob("*/pipeline.yml"))
CREATED = re.compile(r"^Created the first user: (\S+) / (\S+)  \(shown once\)$", re.M)


def make_run_env(var: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "STEPWISE_ADMIN_"))}
    env.update(DJANGO_SETTINGS_MODULE="pipelines_ui.settings", STEPWISE_VAR=str(var), **extra)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def setup(env: dict[str, str]) -> str:
    manage("migrate", "--noinput", env=env)
    return manage("stepwise_setup", env=env).stdout


def query(code: str, env: dict[str, str]) -> str:
    # Its last line: Django 5.2's shell first says how many models it imported.
    return manage("shell", "-c", code, env=env).stdout.strip().splitlines()[-1]


def test_the_first_setup_prints_the_first_user_once_and_imports_the_examples_once(tmp_path):
    var = tmp_path / "var"
    env = make_run_env(var)
    first = setup(env)
    assert (var / "stepwise.sqlite3").is_file(), "the embedded database lives under var/"
    (user, password), *more = CREATED.findall(first)
    assert user == "admin" and not more
    assert len(password) >= 12
    # Kept for `serve` to show after its address, readable by the owner alone.
    kept = var / "first-login.json"
    assert json.loads(kept.read_text()) == {"username": "admin", "password": password}
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    for name in EXAMPLES:
        assert f"imported example pipeline {name}" in first
    # The printed password signs in.
    signs_in = (
        "from django.contrib.auth.models import User; "
        f"print(User.objects.get(username='admin').check_password('{password}'))"
    )
    assert query(signs_in, env) == "True"
    assert query("from pipelines_ui.models import Pipeline; print(Pipeline.objects.count())", env) == str(len(EXAMPLES))

    second = setup(env)
    assert "Created the first user" not in second and password not in second
    assert "imported example" not in second
    assert query("from pipelines_ui.models import Pipeline; print(Pipeline.objects.count())", env) == str(len(EXAMPLES))
    assert query("from django.contrib.auth.models import User; print(User.objects.count())", env) == "1"


def test_stepwise_admin_user_and_password_are_honoured_and_the_password_never_printed(tmp_path):
    env = make_run_env(tmp_path / "var", STEPWISE_ADMIN_USER="ops", STEPWISE_ADMIN_PASSWORD="s3cret-Pass-for-ops")
    out = setup(env)
    assert "Created the first user: ops / (from STEPWISE_ADMIN_PASSWORD)  (shown once)" in out
    assert "s3cret-Pass-for-ops" not in out
    assert not (tmp_path / "var" / "first-login.json").exists(), "a password the admin chose is never stored"
    who = (
        "from django.contrib.auth.models import User; u = User.objects.get(username='ops'); "
        "print(u.check_password('s3cret-Pass-for-ops'), u.is_superuser, [m.team.name for m in u.memberships.all()])"
    )
    assert query(who, env) == "True True ['Default']"
    assert (
        query("from django.contrib.auth.models import User; print(User.objects.filter(username='admin').count())", env)
        == "0"
    )


def test_serve_on_the_fresh_install_starts_a_private_redis_shows_the_first_login_and_stops_it(tmp_path):
    from tests.conftest import free_port
    from tests.integration.conftest import wait_for
    from tests.integration.test_serve import alive, descendants, role

    var = tmp_path / "var"
    redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing answers there
    port = free_port()
    env = make_run_env(var, REDIS_URL=redis_url, PORT=str(port), WORKERS="1")
    (user, password), *_ = CREATED.findall(setup(env))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--grace", "1"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        redis = wait_for(
            lambda: next((pid for pid in descendants(proc.pid) if role(pid) == "redis-server"), None),
            timeout=60,
            message="serve's private redis-server",
            details=lambda: log.read_text(errors="replace"),
        )
        wait_for(lambda: "password:" in log.read_text(errors="replace"), timeout=60, message="the first login")
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/accounts/login/"), timeout=60, message="the sign-in page")
        output = log.read_text(errors="replace")
        assert f"Redis: {redis_url}, a redis-server started by serve for itself" in output
        assert f"Sign in at http://127.0.0.1:{port}/" in output
        assert f"user:     {user}" in output and f"password: {password}" in output
        family = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text(errors="replace")
        wait_for(lambda: not alive(redis), timeout=10, message="the private redis-server to stop with serve")
        wait_for(lambda: not [p for p in family if alive(p)], timeout=10, message="every process of serve to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200 and b"Sign in" in response.read()
    except OSError:
        return False
