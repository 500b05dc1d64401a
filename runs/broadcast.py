"""Every channel-layer send: live events for the run page (design.md, Live events).

Sync callers (RQ workers, views) share one persistent event loop in a daemon thread:
`async_to_sync` would build a new loop per call, several milliseconds each. Events go out from
that thread in batches, in the order they were sent, each at most BATCH_DELAY_S late.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
from typing import Any

from channels.layers import get_channel_layer

from runs import queues, rows
from runs.models import STEP_TERMINAL, Run, StepRun, SweepTrial

log = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
# Sends of this process go out one at a time, in the order `send` was called: concurrent
# group_send coroutines interleave their Redis round trips and can overtake each other.
_send_lock: asyncio.Lock | None = None
# Events wait on the loop's thread to go out together: at most this long, or until `flush`.
# A step's end and the next step's start publish three events just as the worker starts that
# step's process: sent at once, their Redis round trips held the worker's thread (the GIL)
# back by a millisecond a step, so a worker flushes once the process has started.
BATCH_DELAY_S = 0.01
_batch: list[tuple[str, dict[str, Any]]] = []
_batch_lock = threading.Lock()
# A worker's thread between a step's end and the next step's start holds what it sends (`hold`):
# waking the loop's thread in the middle of that path cost the worker's thread the GIL, about
# 1.5 ms a step in prepare and process start (`make bench`).
_held = threading.local()
_tasks: set[asyncio.Task] = set()


def group_name(run_id: int) -> str:
    # Run ids repeat across installs sharing a Redis: a page must not get another install's run.
    return f"{queues.instance_id()}.run-{run_id}"


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def step_payload(step_run: StepRun) -> dict[str, Any]:
    return {
        "type": "step",
        "run": step_run.run_id,
        "name": step_run.name,
        "state": step_run.state,
        "attempt": step_run.attempt,
        "queued_at": _iso(step_run.queued_at),
        "started_at": _iso(step_run.started_at),
        "finished_at": _iso(step_run.finished_at),
        "exit_code": step_run.exit_code,
        "reason": step_run.reason,
        # The run it was reused from, as `pipelines run --json` and the API give it.
        "reused_from": step_run.reused_from.run_id if step_run.reused_from_id and step_run.reused_from else None,
        "reused_from_step_run": step_run.reused_from_id,
    }


def run_payload(run: Run) -> dict[str, Any]:
    # Its steps' states, counted here: read through the hot path's SQL (a run starts and ends in
    # a step's transaction), where the ORM took a millisecond to build the aggregate.
    states = [state for (state,) in rows.values(StepRun, ("state",), {"run_id": run.pk})]
    counts = {"total": len(states), "finished": sum(state in STEP_TERMINAL for state in states)}
    return {
        "type": "run",
        "run": run.pk,
        "state": run.state,
        "reason": run.reason,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "total": counts["total"],
        "finished": counts["finished"],
        # The share of steps that are done (0 to 1): what the run page's progress bar shows.
        "progress": round(counts["finished"] / counts["total"], 4) if counts["total"] else 0.0,
    }


def log_payload(step_run: StepRun, *, seq: int, lines: list[str], skipped: int = 0) -> dict[str, Any]:
    """`skipped`: lines right before `seq` that the live stream leaves out (fast output past the
    head of the log, see runs/logs.py); a client that holds every line up to them shows a marker."""
    return {
        "type": "log",
        "run": step_run.run_id,
        "step": step_run.name,
        "attempt": step_run.attempt,
        "seq": seq,
        "lines": lines,
        "skipped": skipped,
    }


def metric_payload(step_run: StepRun, *, name: str, value: float, step: int) -> dict[str, Any]:
    return {
        "type": "metric",
        "run": step_run.run_id,
        "step": step_run.name,
        "name": name,
        "value": value,
        "index": step,
    }


def param_payload(step_run: StepRun, *, name: str, value: str) -> dict[str, Any]:
    return {"type": "param", "run": step_run.run_id, "step": step_run.name, "name": name, "value": value}


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop, _send_lock
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            _send_lock = None  # an asyncio.Lock belongs to the loop it was first used on
            threading.Thread(target=loop.run_forever, name="stepwise-broadcast", daemon=True).start()
            _loop = loop
        return _loop


async def _send_batch(layer) -> None:
    """Send what `send` has queued, in the order it was queued."""
    global _send_lock
    with _batch_lock:
        batch = list(_batch)
        _batch.clear()
    if not batch:
        return
    if _send_lock is None:
        _send_lock = asyncio.Lock()
    # One message a run: its page's consumer relays the events one by one (runs/consumers.py),
    # and each group_send is Redis round trips whether or not anyone is watching.
    by_group: dict[str, list[dict[str, Any]]] = {}
    for group, payload in batch:
        by_group.setdefault(group, []).append(payload)
    # Taken, then the lock asked for, with no await between: batches go out in the order taken.
    async with _send_lock:  # waiters are woken first in, first out
        for group, events in by_group.items():
            message = (
                {"type": "run.event", "event": events[0]}
                if len(events) == 1
                else {"type": "run.events", "events": events}
            )
            try:
                await layer.group_send(group, message)
            except Exception as exc:
                log.warning("broadcast to %s failed: %s", group, exc)


def _send_later(layer) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(BATCH_DELAY_S, _start_batch, layer)


def _start_batch(layer) -> None:
    task = asyncio.get_running_loop().create_task(_send_batch(layer))
    _tasks.add(task)  # the loop holds its tasks weakly
    task.add_done_callback(_tasks.discard)


def hold() -> None:
    """Until this thread's next `flush`, what it sends waits, the loop's thread left asleep.

    What other threads send meanwhile waits with it: a caller flushes within milliseconds,
    and in a `finally`.
    """
    _held.on = True


def flush() -> None:
    """Send what is queued now, without waiting for BATCH_DELAY_S to pass; ends this thread's `hold`."""
    _held.on = False
    layer = get_channel_layer() if _batch else None
    if layer is not None and _loop is not None and not _loop.is_closed():
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: sent by the next one
            _loop.call_soon_threadsafe(_start_batch, layer)


@atexit.register
def _send_queued() -> None:
    """A process ending (a command, a worker told to stop) still sends what it queued."""
    layer = get_channel_layer() if _batch else None
    if layer is not None and _loop is not None and _loop.is_running():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_send_batch(layer), _loop).result(timeout=2)


def send(run_id: int, payload: dict[str, Any], *, wait: bool = False) -> None:
    """Publish to the run's group, BATCH_DELAY_S later with what else is sent meanwhile (`wait`:
    at once, with what is queued before it, and return once sent). Never raises: the database,
    not Redis, is the record."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        loop = _event_loop()
        with _batch_lock:
            _batch.append((group_name(run_id), payload))
            first = len(_batch) == 1
        if wait:
            asyncio.run_coroutine_threadsafe(_send_batch(layer), loop).result(timeout=5)
        elif first and not getattr(_held, "on", False):
            loop.call_soon_threadsafe(_send_later, layer)
    except Exception:
        log.exception("broadcast to run %s failed", run_id)


def trial_payload(trial: SweepTrial) -> dict[str, Any]:
    """A sweep trial changed: the run page refreshes the step's trials table from the server."""
    return {
        "type": "trial",
        "run": trial.step_run.run_id,
        "step": trial.step_run.name,
        "number": trial.number,
        "state": trial.state,
    }
