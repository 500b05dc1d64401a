"""Names in Redis: one install's queues, job ids, worker names and run groups are its own."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from pipelines_ui.settings import database_instance, env_instance
from runs import broadcast, queues
from runs.models import StepRun

POSTGRES = {"ENGINE": "django.db.backends.postgresql", "NAME": "stepwise", "HOST": "127.0.0.1", "PORT": 5432}
SQLITE = {"ENGINE": "django.db.backends.sqlite3"}


def test_the_instance_is_the_database_s_identity():
    assert database_instance(POSTGRES) == database_instance(dict(POSTGRES))
    assert database_instance(POSTGRES).startswith("stepwise-")
    for other in ({"NAME": "staging"}, {"HOST": "db.example"}, {"PORT": 5433}):
        assert database_instance(POSTGRES | other) != database_instance(POSTGRES)
    assert database_instance({**SQLITE, "NAME": "/srv/a/stepwise.sqlite3"}) != database_instance(
        {**SQLITE, "NAME": "/srv/b/stepwise.sqlite3"}
    )


def test_one_database_spelled_differently_is_one_install(tmp_path, monkeypatch):
    # What DATABASE_URL may say for the same database: the loopback either way, the default port or none.
    same = [POSTGRES | {"HOST": "localhost"}, POSTGRES | {"HOST": ""}, POSTGRES | {"PORT": ""}]
    assert {database_instance(db) for db in same} == {database_instance(POSTGRES)}
    monkeypatch.chdir(tmp_path)
    relative = database_instance({**SQLITE, "NAME": "var/stepwise.sqlite3"})
    assert relative == database_instance({**SQLITE, "NAME": str(tmp_path / "var" / "stepwise.sqlite3")})


def test_redis_names_carry_the_instance(settings):
    settings.STEPWISE_INSTANCE = "staging"
    step_run = StepRun(pk=12, attempt=3)
    assert queues.get_queue("gpu").name == "staging.gpu"
    assert queues.job_id(step_run) == "staging-step-12-3"
    assert queues.job_args(step_run) == (12, 3, "staging")
    assert queues.worker_name("w1") == "staging.w1"
    assert queues.worker_name().startswith("staging.")
    assert broadcast.group_name(7) == "staging.run-7"


def test_without_a_configured_instance_it_is_the_connected_database_s(settings):
    # Test settings leave it unset: the database is only named test_... once the session started.
    settings.STEPWISE_INSTANCE = ""
    assert queues.instance_id() == database_instance(connection.settings_dict)
    assert queues.get_queue("gpu").name == f"{queues.instance_id()}.gpu"


@pytest.mark.parametrize("value", ["a.b", "two words", "x" * 41, "semi;colon"])
def test_a_bad_stepwise_instance_fails_loudly(monkeypatch, value):
    monkeypatch.setenv("STEPWISE_INSTANCE", value)
    with pytest.raises(ImproperlyConfigured, match="STEPWISE_INSTANCE"):
        env_instance("STEPWISE_INSTANCE", "fallback")
