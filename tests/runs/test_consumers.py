"""The run page's websocket over the real ASGI application and the real Redis channel layer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from unittest import mock

import pytest
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from pipelines_ui.asgi import application
from runs.models import Run, RunState, StepRun, StepState
from runs.transitions import run_transition, step_run_transition
from tests.runs.conftest import make_pipeline, make_run

# The consumer reads the database from other threads: the test data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")


def run_async(coroutine_fn, *args):
    # In a thread of its own: a sync Playwright test may have left an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine_fn(*args)).result(timeout=60)


def session_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value
    return [ORIGIN, (b"cookie", f"sessionid={cookie}".encode())]


def communicator(run_id: int, headers) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/runs/{run_id}/", headers=headers)


async def receive_all(comm: WebsocketCommunicator, count: int) -> list[dict]:
    return [await comm.receive_json_from(timeout=5) for _ in range(count)]


@pytest.fixture
def live_run(team, alice) -> Run:
    # Committed for real here: keep the orchestrator from starting it (and enqueueing to Redis).
    with mock.patch("runs.orchestrator.run_advance"):
        return make_run(make_pipeline(team, alice), alice)


def test_anonymous_sockets_are_rejected(live_run):
    async def scenario():
        comm = communicator(live_run.pk, [ORIGIN])
        connected, code = await comm.connect(timeout=5)
        await comm.disconnect()
        return connected, code

    connected, code = run_async(scenario)
    assert not connected
    assert code == 4403


def test_outsiders_are_rejected(live_run, charlie):
    async def scenario(headers):
        comm = communicator(live_run.pk, headers)
        connected, code = await comm.connect(timeout=5)
        await comm.disconnect()
        return connected, code

    assert run_async(scenario, session_headers(charlie)) == (False, 4403)


def test_unknown_runs_are_rejected(live_run, alice):
    async def scenario(headers):
        comm = communicator(live_run.pk + 999, headers)
        connected, _code = await comm.connect(timeout=5)
        await comm.disconnect()
        return connected

    assert run_async(scenario, session_headers(alice)) is False


def test_sockets_without_an_allowed_origin_are_rejected(live_run, alice):
    async def scenario(headers):
        comm = communicator(live_run.pk, headers)
        connected, _code = await comm.connect(timeout=5)
        await comm.disconnect()
        return connected

    headers = [h for h in session_headers(alice) if h[0] != b"origin"] + [(b"origin", b"http://evil.example")]
    assert run_async(scenario, headers) is False


@pytest.mark.parametrize(
    "origin",
    [
        None,  # no Origin header at all: not a browser on our page
        b"http://evil.example",
        b"https://evil.example",
        b"http://testserver.evil.example",
        b"http://evil.example/http://testserver",
        b"null",  # a sandboxed frame or a file:// page
        b"",
    ],
)
def test_a_members_socket_from_a_foreign_or_missing_origin_is_refused(live_run, alice, origin):
    async def scenario(headers):
        comm = communicator(live_run.pk, headers)
        connected, _code = await comm.connect(timeout=5)
        await comm.disconnect()
        return connected

    headers = [h for h in session_headers(alice) if h[0] != b"origin"]
    if origin is not None:
        headers.append((b"origin", origin))
    assert run_async(scenario, headers) is False


@pytest.mark.parametrize("origin", [b"http://testserver", b"https://testserver", b"http://localhost:8000"])
def test_a_members_socket_from_our_own_origin_is_accepted(live_run, alice, origin):
    # The same session and run as the refusals above: only the Origin header differs.
    async def scenario(headers):
        comm = communicator(live_run.pk, headers)
        connected, _code = await comm.connect(timeout=5)
        first = await comm.receive_json_from(timeout=5) if connected else None
        await comm.disconnect()
        return connected, first

    headers = [h for h in session_headers(alice) if h[0] != b"origin"] + [(b"origin", origin)]
    connected, first = run_async(scenario, headers)
    assert connected is True
    assert first["type"] == "run" and first["run"] == live_run.pk


def test_members_get_the_current_state_first(live_run, alice, bob):
    StepRun.objects.filter(run=live_run, name="prep").update(state=StepState.SUCCEEDED, attempt=1)

    async def scenario(headers):
        comm = communicator(live_run.pk, headers)
        connected, _ = await comm.connect(timeout=5)
        assert connected
        messages = await receive_all(comm, 4)
        assert await comm.receive_nothing(timeout=0.2)
        await comm.disconnect()
        return messages

    for user in (alice, bob):
        messages = run_async(scenario, session_headers(user))
        assert [m["type"] for m in messages] == ["run", "step", "step", "step"]
        assert messages[0]["run"] == live_run.pk and messages[0]["state"] == RunState.QUEUED
        assert messages[0]["total"] == 3 and messages[0]["finished"] == 1
        assert messages[0]["progress"] == pytest.approx(1 / 3, abs=1e-4)
        assert [(m["name"], m["state"]) for m in messages[1:]] == [
            ("prep", "succeeded"),
            ("train", "pending"),
            ("report", "pending"),
        ]


def test_junk_from_the_client_is_answered_not_fatal(live_run, alice):
    async def scenario(headers):
        comm = communicator(live_run.pk, headers)
        await comm.connect(timeout=5)
        await receive_all(comm, 4)
        replies = []
        # The last: nested too deeply for Python's decoder (RecursionError, which the consumer crashed on).
        deep = "[" * 100_000 + "]" * 100_000
        for junk in ("not json", "[1, 2]", json.dumps({"type": "run.event", "event": {"x": 1}}), "{}", deep):
            await comm.send_to(text_data=junk)
            replies.append(await comm.receive_json_from(timeout=5))
        await comm.send_to(bytes_data=b"\x00\xff")
        replies.append(await comm.receive_json_from(timeout=5))
        await comm.send_json_to({"type": "ping"})
        replies.append(await comm.receive_json_from(timeout=5))
        await comm.disconnect()
        return replies

    replies = run_async(scenario, session_headers(alice))
    assert [r["type"] for r in replies] == ["error"] * 6 + ["pong"]


def test_transitions_arrive_at_the_socket_in_order(live_run, alice):
    def publish() -> None:
        # Each transition commits on its own and broadcasts after its commit.
        run = Run.objects.get(pk=live_run.pk)
        prep = StepRun.objects.get(run=run, name="prep")
        with transaction.atomic():
            run_transition(run=run, to=RunState.RUNNING)
        for to in (StepState.QUEUED, StepState.RUNNING, StepState.SUCCEEDED):
            with transaction.atomic():
                step_run_transition(step_run=prep, to=to)
        train = StepRun.objects.get(run=run, name="train")
        for to in (StepState.QUEUED, StepState.RUNNING, StepState.FAILED):
            with transaction.atomic():
                step_run_transition(step_run=train, to=to, reason="exit code 1" if to == StepState.FAILED else "")
        with transaction.atomic():
            run_transition(run=run, to=RunState.FAILED, reason="step failed: train")

    async def scenario(headers):
        comm = communicator(live_run.pk, headers)
        connected, _ = await comm.connect(timeout=5)
        assert connected
        snapshot = await receive_all(comm, 4)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, publish)
        deltas = await receive_all(comm, 8)
        await comm.disconnect()
        return snapshot, deltas

    snapshot, deltas = run_async(scenario, session_headers(alice))
    assert snapshot[0]["type"] == "run"
    assert [(m["type"], m.get("name"), m["state"]) for m in deltas] == [
        ("run", None, "running"),
        ("step", "prep", "queued"),
        ("step", "prep", "running"),
        ("step", "prep", "succeeded"),
        ("step", "train", "queued"),
        ("step", "train", "running"),
        ("step", "train", "failed"),
        ("run", None, "failed"),
    ]
    assert deltas[3]["finished_at"] is not None and deltas[1]["attempt"] == 1
    assert deltas[6]["reason"] == "exit code 1"
    assert deltas[7]["finished"] == 2 and deltas[7]["total"] == 3


def test_events_sent_together_reach_the_client_one_by_one_in_order(live_run, alice):
    from channels.layers import get_channel_layer

    from runs import broadcast

    events = [{"type": "step", "run": live_run.pk, "name": "prep", "state": state} for state in ("queued", "running")]

    async def scenario(headers):
        comm = communicator(live_run.pk, headers)
        connected, _ = await comm.connect(timeout=5)
        assert connected
        await receive_all(comm, 4)  # the snapshot
        together = {"type": "run.events", "events": [events[0], "not an event", events[1]]}
        await get_channel_layer().group_send(broadcast.group_name(live_run.pk), together)
        received = await receive_all(comm, 2)
        assert await comm.receive_nothing(timeout=0.2)
        await comm.disconnect()
        return received

    assert run_async(scenario, session_headers(alice)) == events
