"""A client that misses live log messages resyncs from the stored log and ends with exactly it; past
the head of a log that outgrows the database, it is told what the stream leaves out."""

from __future__ import annotations

from dataclasses import dataclass

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


def listen(run, user) -> list[dict]:
    """Every message of the run's socket until the run ends."""
    headers = session_headers(user)

    async def receive() -> list[dict]:
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

    return run_async(receive)


def test_dropped_log_messages_are_recovered_from_the_stored_log(workers, alice, team, tmp_path):
    workers.start(1)
    version = import_yaml(tmp_path, CHATTY, alice, team)
    run = services.run_create(version=version, user=alice)
    messages = listen(run, alice)
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


FLOOD = """
type: pipeline
jobs:
  flood:
    type: command
    command: python -c "import sys; sys.stdout.writelines(f'line {i}\\n' for i in range(50000))"
"""


@dataclass
class Omitted:
    count: int


def follow(messages: list[dict], fetch) -> list[str | Omitted]:
    """What run.js shows: live lines, a marker where the stream or the database left lines out,
    and a resync from the log endpoint (`fetch(after_seq)`) where messages went missing."""
    view: list[str | Omitted] = []
    next_seq = 0

    def append(lines: list[str], omitted: int) -> None:
        nonlocal next_seq
        if omitted:
            view.append(Omitted(omitted))
        view.extend(lines)
        next_seq += omitted + len(lines)

    def resync() -> None:
        while True:
            page = fetch(next_seq)
            append(page["lines"], page["first_seq"] - next_seq)
            if not page["lines"] or page["next_seq"] >= page["total"]:
                return

    for message in messages:
        if message["seq"] > next_seq and message["seq"] - message["skipped"] <= next_seq:
            append(message["lines"], message["seq"] - next_seq)
        elif message["seq"] > next_seq:
            resync()
        else:
            append(message["lines"][next_seq - message["seq"] :], 0)
    resync()
    return view


def test_a_live_page_gets_the_head_whole_then_fast_output_a_window_at_a_time_with_markers(
    workers, alice, team, tmp_path
):
    workers.extra_env.update(STEPWISE_LOG_HEAD_LINES="100", STEPWISE_LOG_TAIL_LINES="200")
    workers.start(1)
    run = services.run_create(version=import_yaml(tmp_path, FLOOD, alice, team), user=alice)
    messages = [m for m in listen(run, alice) if m["type"] == "log"]
    assert wait_run(run).state == RunState.SUCCEEDED
    client = Client()
    client.force_login(alice)
    url = reverse("step_log", args=[run.pk, "flood"])

    view = follow(messages, lambda after: client.get(url, {"after_seq": after, "limit": 5000}).json())
    assert view[:100] == [f"line {i}" for i in range(100)]
    # Every line the page shows is where it belongs, and the markers count the rest.
    seq = 0
    for item in view:
        if isinstance(item, Omitted):
            seq += item.count
        else:
            assert item == f"line {seq}"
            seq += 1
    assert seq == 50000 and view[-1] == "line 49999"
    assert any(isinstance(item, Omitted) for item in view)
    # The stream carried windows of the newest lines, not the flood.
    assert sum(len(m["lines"]) for m in messages) < 50000
    assert all(len(m["lines"]) <= 200 for m in messages if m["seq"] >= 100)
