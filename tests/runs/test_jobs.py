"""The RQ entry point refuses a job of another install before it touches the database."""

from __future__ import annotations

import logging

import pytest

from runs import jobs, queues


def test_a_job_of_another_install_is_refused_without_touching_the_database(caplog):
    # No `db` fixture: pytest-django fails any query this test would make.
    with caplog.at_level(logging.WARNING, logger="runs.jobs"):
        outcome = jobs.execute_step(1, 1, "another-install")

    assert outcome.startswith("refused")
    assert "another-install" in caplog.text and queues.instance_id() in caplog.text


@pytest.mark.django_db
def test_a_job_of_this_install_for_a_missing_step_run_does_nothing():
    assert jobs.execute_step(999_999, 1, queues.instance_id()).startswith("no such step run")
