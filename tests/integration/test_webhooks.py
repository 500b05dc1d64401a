"""A real run on a real RQ worker ends; `manage.py stepwise_dispatcher`, a real process, POSTs the
signed event to a receiver on 127.0.0.1, which verifies it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from pipelines_ui.api import notifications
from pipelines_ui.api.models import Delivery
from runs import services
from runs.models import RunState
from tests.api.test_dispatcher import Receiver
from tests.conftest import database_url
from tests.integration.conftest import ROOT, wait_for
from tests.integration.test_execution import import_yaml, wait_run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ONE_STEP = """
type: pipeline
display_name: hello
jobs:
  hello:
    type: command
    command: python -c "print('hello')"
"""


def test_a_finished_run_is_delivered_to_a_receiver_by_the_dispatcher_process(workers, alice, team, tmp_path):
    receiver = Receiver(lambda n, h, b: (500, "not yet") if n == 1 else (200, "thanks"))
    log = open(tmp_path / "dispatcher.log", "wb")  # noqa: SIM115 - closed after the process ends
    dispatcher = None
    try:
        workers.start(1)
        version = import_yaml(tmp_path, ONE_STEP, alice, team)
        created = notifications.notification_create(
            pipeline=version.pipeline,
            user=alice,
            kind="webhook",
            url=receiver.url,
            events=["run.succeeded"],
            allow_private=True,
        )
        run = wait_run(services.run_create(version=version, user=alice))
        assert run.state == RunState.SUCCEEDED, workers.logs()
        delivery = Delivery.objects.get()
        assert (delivery.run_id, delivery.event) == (run.pk, "run.succeeded")

        # Retries after 1 s here, so that the first answer's 500 is followed by a second attempt.
        env = {**os.environ, "DATABASE_URL": database_url(), "STEPWISE_WEBHOOK_BACKOFF_S": "1"}
        dispatcher = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "stepwise_dispatcher", "--interval", "0.2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        output = lambda: (tmp_path / "dispatcher.log").read_text(errors="replace")  # noqa: E731
        wait_for(
            lambda: Delivery.objects.get().state == "delivered", timeout=60, message="the delivery", details=output
        )
    finally:
        if dispatcher is not None:
            dispatcher.send_signal(signal.SIGTERM)
            assert dispatcher.wait(timeout=30) == 0
        log.close()
        receiver.close()
    assert len(receiver.requests) == 2
    headers, body = receiver.requests[-1]
    assert notifications.verify_signature(created.secret, headers["x-stepwise-signature"], body)
    assert json.loads(body)["run"]["id"] == run.pk
    delivery = Delivery.objects.get()
    assert (delivery.attempts, delivery.last_status) == (2, 200)
    assert list(delivery.attempt_log.values_list("status", flat=True)) == [500, 200]
