"""A client that misses live log messages resyncs from the stored log and ends with exactly it."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse

from pipelines_ui.asgi import application
from runs import services
from runs.models import RunState
from tests.integration.test_execution import import_yaml, steps_of, wait_run
from tests.runs.test_consumers import run_async, session_headers

pytestmark = pytest.mark.integration

CHATTY = """
type: pipeline
jobs:
  chatty:
    type: command
    command: >-
      python -c "import time;
      [print(f'line {i}', flush=True) or (i % 50 == 0 and time.sleep(0.05)) for i in range(1500)]"
"""


def test_dropped_log_messages_are_recovered_from_the_stored_log(workers, alice, team, tmp_path):
    workers.start(1)
    version = import_yaml(tmp_path, CHATTY, alice, team)
    run = services.run_create(version=version, user=alice)
    headers = session_headers(alice)

    async def listen() -> list[dict]:
        comm = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=headers)
        connected, _ = await comm.connect(timeout=5)
        assert connected
        messages = []
        while True:
            try:
                message = await comm.receive_json_from(timeout=20)
            except TimeoutError:
                break
            messages.append(message)
            if message["type"] == "run" and message["state"] in ("succeeded", "failed", "canceled"):
                break
        await comm.disconnect()
        return messages

    messages = run_async(listen)
    assert wait_run(run).state == RunState.SUCCEEDED
    logs = [m for m in messages if m["type"] == "log"]
    assert len(logs) >= 4, "log lines arrived live, in several messages (so that dropping some leaves gaps)"

    # The client the channel layer dropped every other message for: it keeps what arrived,
    # spots each gap by its sequence number and fills it from the log endpoint.
    client = Client()
    client.force_login(alice)
    url = reverse("step_log", args=[run.pk, "chatty"])
    transcript: list[str] = []
    for message in logs[::2]:
        if message["seq"] > len(transcript):
            gap = client.get(url, {"after_seq": len(transcript), "limit": message["seq"] - len(transcript)}).json()
            transcript.extend(gap["lines"])
        if message["seq"] == len(transcript):
            transcript.extend(message["lines"])
    tail = client.get(url, {"after_seq": len(transcript), "limit": 5000}).json()
    transcript.extend(tail["lines"])

    stored = b"".join(client.get(url, {"download": 1}).streaming_content).decode().splitlines()
    assert transcript == stored == [f"line {i}" for i in range(1500)]
    assert steps_of(run)["chatty"].log_lines == 1500
