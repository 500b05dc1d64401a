from __future__ import annotations

import asyncio
import socket

import pytest
import redis
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model

from pipelines_ui.models import Membership, Role, Team
from runs import broadcast


def pytest_collection_modifyitems(config, items):
    """Across several processes (`make test`, pytest-xdist), the long tests come first: a long
    test run last would keep one process busy long after the others ran out of work (with
    `--dist worksteal`, idle processes take the rest of a busy one's share)."""
    if config.getoption("numprocesses", default=None):
        items.sort(
            key=lambda item: not (
                item.path.parent.name in ("integration", "browser") or item.get_closest_marker("slow")
            )
        )


def database_url() -> str:
    """The test database as a DATABASE_URL, for the servers and workers a test starts."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    auth = f"{user}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def team(db) -> Team:
    return Team.objects.create(name="Data Science")


@pytest.fixture
def other_team(db) -> Team:
    return Team.objects.create(name="Elsewhere")


def built_once(django_db_blocker, build, **settings):
    """What `build()` makes, for a class-scoped fixture to yield: made once for a class of tests,
    with `settings` overridden, inside a transaction rolled back after them.

    Each test's own transaction (pytest-django's `db`) nests in it as a savepoint, so what a test
    writes is gone before the next one, as with objects of its own. The objects' files stay: use
    it for tests whose requests write no file another test reads. Tests re-apply `settings`.
    """
    from django.db import transaction
    from django.test import override_settings

    outer = transaction.atomic()
    with django_db_blocker.unblock(), override_settings(**settings):
        outer.__enter__()
        try:
            built = build()
        except BaseException:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)
            raise
    yield built
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)


def make_user(username: str, team: Team | None = None, role: str = Role.EDITOR):
    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    if team is not None:
        Membership.objects.create(team=team, user=user, role=role)
    return user


@pytest.fixture
def alice(team):
    """Owns the team's pipelines."""
    return make_user("alice", team, Role.ADMIN)


@pytest.fixture
def bob(team):
    """A member of alice's team."""
    return make_user("bob", team, Role.EDITOR)


@pytest.fixture
def charlie(other_team):
    """Outside alice's team."""
    return make_user("charlie", other_team, Role.ADMIN)


def _purge_instance_keys() -> None:
    from django_rq import get_connection

    from runs.queues import instance_id

    instance = instance_id()
    connection = get_connection("default")
    try:
        keys = list(connection.scan_iter(match=f"*{instance}*", count=1000))
        if keys:
            connection.delete(*keys)
        for registry in ("rq:queues", "rq:workers"):  # RQ's indexes of every install's names
            ours = [m for m in connection.smembers(registry) if instance.encode() in m]
            if ours:
                connection.srem(registry, *ours)
    except redis.exceptions.ConnectionError:
        pass  # no Redis, nothing left in it: the tests that need one say so themselves


@pytest.fixture(scope="session", autouse=True)
def _fresh_redis_namespace(django_db_setup, django_db_blocker):
    """Start and leave this session's install with nothing in Redis.

    The install's namespace comes from the test database's name, which repeats across sessions
    (a process id, an xdist worker, PostgreSQL's test_ prefix): the queues and jobs a killed
    earlier session left in a shared Redis would otherwise read as this session's. The database
    was created for this session, so nothing live can be under its name yet.
    """
    with django_db_blocker.unblock():
        _purge_instance_keys()
        yield
        _purge_instance_keys()


@pytest.fixture(scope="session", autouse=True)
def _flush_postgresql_by_delete():
    """Empty PostgreSQL's tables between transactional tests with DELETE, not TRUNCATE.

    pytest-django empties every table after each test that commits (the integration tests, whose
    workers are other processes). TRUNCATE gives each of the ~60 tables new files: 0.2 to 0.5 s a
    test, on the CPUs the suite is bound by. DELETE of the few rows a test wrote takes ~20 ms.
    Django's foreign keys on PostgreSQL are deferred, so the order of the DELETEs does not matter
    in the flush's one transaction.
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or allow_cascade:
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return ["SET CONSTRAINTS ALL DEFERRED;", *(f"DELETE FROM {self.quote_name(table)};" for table in tables)]

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = truncate


@pytest.fixture(scope="session", autouse=True)
def _release_test_database(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end the sessions that still hold it.

    The threads Channels runs consumers' queries in, and any worker a test left dying,
    keep connections open; PostgreSQL refuses to drop a database in use.
    """
    yield
    from django.db import connection

    # pytest-django creates no test database when no collected test asks for one: the connection
    # then names the real database, whose other sessions are not this run's to end.
    if connection.vendor != "postgresql" or not connection.settings_dict["NAME"].startswith("test_"):
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def run_events():
    """`run_events(run_id)` subscribes to a run's live events, read on a loop of the test's own:
    it returns `receive(timeout)`, the group's next message, or TimeoutError after `timeout` s."""
    layer = get_channel_layer()
    loop = asyncio.new_event_loop()
    joined: list[tuple[str, str]] = []

    def subscribe(run_id: int):
        group, channel = broadcast.group_name(run_id), loop.run_until_complete(layer.new_channel())
        loop.run_until_complete(layer.group_add(group, channel))
        joined.append((group, channel))
        return lambda timeout: loop.run_until_complete(asyncio.wait_for(layer.receive(channel), timeout=timeout))

    yield subscribe
    broadcast.flush()
    for group, channel in joined:
        loop.run_until_complete(layer.group_discard(group, channel))
    loop.close()
