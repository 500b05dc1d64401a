"""Every write of a run's or a step run's state goes through here.

Each transition is checked against the table in models.py, applied as a
compare-and-set (so a duplicate or late event changes nothing), recorded as a
Transition row, and broadcast only after the transaction commits.

Inside a caller's transaction these take no savepoint (a round trip each on
PostgreSQL, hundreds of them when a rerun reuses a whole pipeline): a lost
compare-and-set returns False and writes nothing, and an error aborts the caller's
transaction as a whole.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runs import broadcast, queues, rows, signals
from runs.models import RUN_TERMINAL, RUN_TRANSITIONS, STEP_TRANSITIONS, Run, RunState, StepRun, StepState, Transition

log = logging.getLogger(__name__)


class IllegalTransition(Exception):
    pass


def _timestamps_for_step(to: str) -> dict[str, Any]:
    now = timezone.now()
    if to == StepState.QUEUED:
        return {"queued_at": now}
    if to == StepState.RUNNING:
        return {"started_at": now, "heartbeat_at": now}
    if to in (StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELED, StepState.REUSED, StepState.SKIPPED):
        return {"finished_at": now}
    return {}


def step_run_transition(*, step_run: StepRun, to: StepState, reason: str = "", **fields: Any) -> bool:
    """Move step_run to `to`; False when another process moved it (or a newer attempt) first.

    The compare-and-set includes the attempt number: a stalled attempt that wakes up
    after a newer one started can no longer change anything (fencing).
    """
    _check_path(step_run, [to])
    return _step_run_apply(step_run, step_run.state, [to], reason, fields)


def step_run_queue_and_start(*, step_run: StepRun, reason: str = "", **fields: Any) -> bool:
    """Queue step_run and start it at once (a step its run's advance hands to the worker that
    advanced it, see orchestrator.run_advance): both edges in one compare-and-set, each audited
    (one INSERT) and broadcast, as two transitions would be."""
    _check_path(step_run, [StepState.QUEUED, StepState.RUNNING])
    return _step_run_apply(step_run, step_run.state, [StepState.QUEUED, StepState.RUNNING], reason, fields)


def _check_path(step_run: StepRun, path: list[StepState]) -> None:
    # Checked before any transaction is entered, so that a refused edge leaves the caller's intact.
    for old, new in zip([step_run.state, *path], path, strict=False):
        if new not in STEP_TRANSITIONS.get(old, frozenset()):
            log.warning("illegal transition rejected: %s (%s) %s -> %s", step_run, step_run.attempt, old, new)
            raise IllegalTransition(f"{step_run}: {old} -> {new}")


@transaction.atomic(savepoint=False)
def _step_run_apply(
    step_run: StepRun, current: str, path: list[StepState], reason: str, fields: dict[str, Any]
) -> bool:
    """Move step_run along `path` (legal edges from `current`), `reason` being the first edge's."""
    changes: dict[str, Any] = {}
    if path[0] == StepState.QUEUED and current == StepState.FAILED:
        retry = {"attempt": step_run.attempt + 1, "exit_code": None}
        changes.update(retry, started_at=None, finished_at=None, heartbeat_at=None)
    elif path[0] == StepState.QUEUED and current == StepState.PENDING:
        changes["attempt"] = 1
    for to in path:
        changes.update(_timestamps_for_step(to))
    changes.update(fields, state=path[-1])
    if reason or path[0] == StepState.QUEUED:
        changes["reason"] = reason
    moved = rows.update(StepRun, {"id": step_run.pk, "state": current, "attempt": step_run.attempt}, changes)
    if moved != 1:
        log.info("transition lost the race: %s attempt %s %s -> %s", step_run, step_run.attempt, current, path[-1])
        return False
    for key, value in changes.items():
        setattr(step_run, key, value)
    reasons = [reason] + [""] * (len(path) - 1)
    _audit(step_run.run_id, step_run.pk, step_run.attempt, list(zip([current, *path], path, reasons, strict=False)))
    final = broadcast.step_payload(step_run)
    # An edge passed on the way is published as the state it was, before the step started.
    payloads = [{**final, "state": state, "started_at": None} for state in path[:-1]] + [final]
    for payload in payloads:
        transaction.on_commit(lambda payload=payload: broadcast.send(step_run.run_id, payload))
    return True


_together = threading.local()


@contextlib.contextmanager
def audited_together() -> Iterator[None]:
    """The Transition rows of the transitions made inside, written in one INSERT as it ends (in
    their order): a step's end and the next step's start write one, not two (a round trip each on
    PostgreSQL). Inside the caller's transaction: the rows commit with the changes they record,
    or neither; nothing is written if the block raises."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audited_together() must run inside a transaction")
    if getattr(_together, "rows", None) is not None:
        yield  # inside another: that one writes them
        return
    _together.rows = []
    try:
        yield
        pending = _together.rows
    finally:
        _together.rows = None
    if pending:
        rows.insert(Transition, *pending)


def _audit(run_id: int, step_run_id: int | None, attempt: int, edges: list[tuple[str, str, str]]) -> None:
    """Transition rows for (old, new, reason) edges, in one INSERT (or with the others of
    `audited_together`)."""
    now = timezone.now()
    new_rows = [
        {
            "run": run_id,
            "step_run": step_run_id,
            "old": old,
            "new": new,
            "attempt": attempt,
            "reason": reason,
            "created_at": now,
        }
        for old, new, reason in edges
    ]
    together = getattr(_together, "rows", None)
    if together is not None:
        together.extend(new_rows)
    else:
        rows.insert(Transition, *new_rows)


def step_run_try_transition(*, step_run: StepRun, to: StepState, reason: str = "", **fields: Any) -> bool:
    """Like step_run_transition, but an illegal edge (a late event) is logged and ignored."""
    try:
        return step_run_transition(step_run=step_run, to=to, reason=reason, **fields)
    except IllegalTransition:
        return False


def run_transition(*, run: Run, to: RunState, reason: str = "") -> bool:
    current = run.state
    if to not in RUN_TRANSITIONS.get(current, frozenset()):
        log.warning("illegal transition rejected: %s %s -> %s", run, current, to)
        raise IllegalTransition(f"{run}: {current} -> {to}")
    return _run_apply(run, current, to, reason)


@transaction.atomic(savepoint=False)
def _run_apply(run: Run, current: str, to: RunState, reason: str) -> bool:
    now = timezone.now()
    changes: dict[str, Any] = {"state": to}
    if to == RunState.RUNNING or (current == RunState.QUEUED and run.started_at is None):
        changes["started_at"] = now
    if to in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED):
        changes["finished_at"] = now
    if reason:
        changes["reason"] = reason
    moved = rows.update(Run, {"id": run.pk, "state": current}, changes)
    if moved != 1:
        return False
    for key, value in changes.items():
        setattr(run, key, value)
    _audit(run.pk, None, 0, [(current, to, reason)])
    if to in RUN_TERMINAL:
        # In this transaction: the notification outbox's rows commit with the run's end, or neither.
        signals.run_ended.send(sender=Run, run=run, state=to)
    payload = broadcast.run_payload(run)
    transaction.on_commit(lambda: broadcast.send(run.pk, payload))
    return True


@transaction.atomic(savepoint=False)
def step_run_fail(*, step_run: StepRun, reason: str, exit_code: int | None = None) -> bool:
    """Fail this attempt; with retries left (and the run not canceled) queue the next attempt.

    Both in one transaction: no one advancing the run may see the failure of an attempt
    that is about to be retried (it would skip everything downstream).
    """
    if not step_run_try_transition(step_run=step_run, to=StepState.FAILED, reason=reason, exit_code=exit_code):
        return False
    if step_run.attempt <= step_run.max_retries:
        run = Run.objects.only("cancel_requested", "timed_out").get(pk=step_run.run_id)
        if not (run.cancel_requested or run.timed_out) and step_run_try_transition(
            step_run=step_run, to=StepState.QUEUED, reason=f"retry after: {reason}"
        ):
            delay = min(settings.STEPWISE_RETRY_BACKOFF_S * 2 ** (step_run.attempt - 2), 300)
            if delay > 0:
                transaction.on_commit(lambda: queues.enqueue_step_later(step_run, delay))
            else:
                transaction.on_commit(lambda: queues.enqueue_steps([step_run]))
    return True
