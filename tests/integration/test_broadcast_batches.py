"""Live events go out in batches (runs/broadcast.py), one message a run: a process that ends
right after sending still delivers what it queued, in order."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest
from channels.layers import get_channel_layer

from runs import broadcast
from tests.conftest import database_url

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Ends at once, long before the batch's delay has passed.
SEND_AND_EXIT = """
import django
django.setup()
from runs import broadcast
for n in range(3):
    broadcast.send({run}, {{"type": "probe", "n": n}})
"""


def test_a_process_ending_right_after_it_sends_still_delivers_its_events_in_order(db):
    run_id = 987654321
    group = broadcast.group_name(run_id)
    env = {**os.environ, "DATABASE_URL": database_url()}

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", SEND_AND_EXIT.format(run=run_id), env=env, cwd=ROOT
            )
            assert await proc.wait() == 0
            return await asyncio.wait_for(layer.receive(channel), timeout=10)
        finally:
            await layer.group_discard(group, channel)

    # The run's three events in one message, which its page's consumer relays one by one.
    received = asyncio.run(scenario())
    assert received == {"type": "run.events", "events": [{"type": "probe", "n": n} for n in range(3)]}


RUN_ID = 987654322


def test_events_held_by_a_thread_wait_for_its_flush_and_then_go_out_in_order(run_events):
    run_id, receive = RUN_ID, run_events(RUN_ID)
    broadcast.hold()
    broadcast.send(run_id, {"type": "probe", "n": 0})
    broadcast.send(run_id, {"type": "probe", "n": 1})
    # Fifty times the batch's delay: nothing went out while held.
    with pytest.raises(asyncio.TimeoutError):
        receive(50 * broadcast.BATCH_DELAY_S)

    broadcast.flush()

    assert receive(10) == {"type": "run.events", "events": [{"type": "probe", "n": n} for n in range(2)]}
    # The flush ended the hold: the next event goes out by itself, a batch's delay later.
    broadcast.send(run_id, {"type": "probe", "n": 2})
    assert receive(10) == {"type": "run.event", "event": {"type": "probe", "n": 2}}


def test_a_hold_is_the_holding_threads_own(run_events):
    run_id, receive = RUN_ID, run_events(RUN_ID)
    held = threading.Thread(target=broadcast.hold)
    held.start()
    held.join()

    broadcast.send(run_id, {"type": "probe", "n": 0})

    assert receive(10) == {"type": "run.event", "event": {"type": "probe", "n": 0}}
