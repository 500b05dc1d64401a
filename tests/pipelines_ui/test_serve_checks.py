"""What `serve` says at start: the database and Redis it uses (never a password), and the loud
warning when steps could reach a Redis or PostgreSQL that asks them for no credentials."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from pipelines_ui.management.commands.serve import (
    describe_database,
    is_local,
    open_services,
    open_services_warning,
    postgres_requires_password,
    redis_answers,
    redis_display_url,
    redis_requires_password,
    targets_reaching,
)
from runs.models import ComputeTarget, Isolation
from tests.conftest import free_port
from tests.integration.conftest import wait_for

SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/stepwise/var/stepwise.sqlite3"}
# The development PostgreSQL of design.md: trust authentication on the loopback.
LOCAL_POSTGRES = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": "postgres",
    "USER": "postgres",
    "PASSWORD": "s3cret-pw",
    "HOST": "127.0.0.1",
    "PORT": 5432,
}


def target(name: str, *, isolation: str = Isolation.SANDBOX, network: bool = True) -> ComputeTarget:
    return ComputeTarget(name=name, queue=name, isolation=isolation, network=network)


@pytest.fixture
def private_redis(tmp_path) -> Iterator:
    """Start redis-servers on free ports (with extra arguments, e.g. --requirepass); yields a starter."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    servers: list[subprocess.Popen] = []

    def start(*args: str, url_auth: str = "") -> str:
        port = free_port()
        servers.append(
            subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", *args],
                stdout=subprocess.DEVNULL,
            )
        )
        url = f"redis://{url_auth}127.0.0.1:{port}/0"
        wait_for(lambda: redis_requires_password(url) is not None, timeout=10, message="the private redis-server")
        return url

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=10)


# ---- what serve prints ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter22@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://stepwise:hunter22@redis.example.com:6380/2", "rediss://stepwise:***@redis.example.com:6380/2"),
        ("unix:///run/redis.sock?db=1&password=hunter22", "unix:///run/redis.sock?db=1&password=***"),
    ],
)
def test_the_redis_url_is_shown_without_its_password(url, shown):
    assert redis_display_url(url) == shown
    assert "hunter22" not in redis_display_url(url)


def test_the_database_is_named_by_engine_name_and_host_never_its_password():
    assert describe_database(SQLITE) == "SQLite /srv/stepwise/var/stepwise.sqlite3"
    assert describe_database(LOCAL_POSTGRES) == 'PostgreSQL database "postgres" on 127.0.0.1:5432 as postgres'
    socket_db = {**LOCAL_POSTGRES, "HOST": "", "PORT": "", "USER": ""}
    assert describe_database(socket_db) == 'PostgreSQL database "postgres" on the local socket'


# ---- who can reach what ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "local"),
    [
        (None, True),
        ("", True),
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("::1", True),
        ("/var/run/postgresql", True),
        ("10.0.0.5", False),
        ("db.example.com", False),
    ],
)
def test_services_on_the_loopback_or_a_socket_are_local(host, local):
    assert is_local(host) is local


def test_steps_reach_the_loopback_unless_a_network_namespace_keeps_them_off():
    targets = [
        target("sandboxed"),
        target("offline", network=False),
        target("bare", isolation=Isolation.NONE),
        target("bare-offline", isolation=Isolation.NONE, network=False),
    ]
    assert targets_reaching(targets, local=True, steps_share_host_network=True) == ("bare", "sandboxed")
    # With a namespace of their own, sandboxed steps leave the host through it: not to its loopback.
    assert targets_reaching(targets, local=True, steps_share_host_network=False) == ("bare",)
    # A service elsewhere is reached through any network.
    assert targets_reaching(targets, local=False, steps_share_host_network=False) == ("bare", "sandboxed")


# ---- real Redis, real PostgreSQL ---------------------------------------------------------------------


def test_a_redis_without_a_password_is_reported_open(private_redis):
    url = private_redis()
    assert redis_requires_password(url) is False
    found = open_services(redis_url=url, database=SQLITE, targets=[target("cpu")], steps_share_host_network=True)
    assert [(s.what, s.how, s.targets) for s in found] == [(f"Redis at {url}", "answers without a password", ("cpu",))]
    warning = open_services_warning(found)
    assert f"Redis at {url} answers without a password (steps of: cpu)" in warning
    assert "network namespace" in warning and "requirepass" in warning


def test_a_redis_with_requirepass_is_not_reported_even_when_the_url_holds_the_password(private_redis):
    url = private_redis("--requirepass", "hunter22", url_auth=":hunter22@")
    assert redis_answers(url)  # serve itself gets in
    assert redis_requires_password(url) is True  # a step without the password does not
    assert open_services(redis_url=url, database=SQLITE, targets=[target("cpu")], steps_share_host_network=True) == []


def test_nothing_is_reported_when_no_step_can_reach_the_services(private_redis):
    url = private_redis()
    for targets, shared in (([target("offline", network=False)], True), ([target("sandboxed")], False), ([], True)):
        assert open_services(redis_url=url, database=SQLITE, targets=targets, steps_share_host_network=shared) == []


def test_a_redis_that_does_not_answer_is_not_reported():
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert redis_requires_password(url) is None
    assert open_services(redis_url=url, database=SQLITE, targets=[target("cpu")], steps_share_host_network=True) == []


def test_a_postgresql_with_trust_authentication_is_reported_whatever_password_the_url_holds():
    if postgres_requires_password(LOCAL_POSTGRES) is None:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    if postgres_requires_password(LOCAL_POSTGRES):
        pytest.skip("this PostgreSQL asks for passwords: nothing to report")
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    found = open_services(
        redis_url=nowhere, database=LOCAL_POSTGRES, targets=[target("cpu")], steps_share_host_network=True
    )
    assert [(s.what, s.how) for s in found] == [
        (
            'PostgreSQL database "postgres" on 127.0.0.1:5432 as postgres',
            "accepts connections without a password (trust authentication)",
        )
    ]
    assert "s3cret-pw" not in open_services_warning(found)


def test_a_postgresql_that_does_not_answer_is_not_reported():
    assert postgres_requires_password({**LOCAL_POSTGRES, "PORT": free_port()}) is None
