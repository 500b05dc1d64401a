"""The periodic check that no run is stuck, whatever happened to a worker or to Redis.

RQ alone does not promise this: a SIGKILLed worker's job is swept only by another
worker's maintenance, minutes later, and a flushed Redis forgets queued jobs. The
database is the record, so this loop compares it with what is alive.
"""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from runs import orchestrator, processes, queues, services, sweep_trials
from runs.models import Run, RunState, StepRun, StepState
from runs.transitions import step_run_fail

log = logging.getLogger(__name__)


# Canceled attempts looked at once each, by this reconciler process, within this window.
REAP_WINDOW = timedelta(hours=1)
# How late a scheduled retry may be before the reconciler enqueues it itself.
SCHEDULER_SLACK = timedelta(seconds=10)
_reaped: set[tuple[int, int]] = set()


def heartbeat_limit() -> timedelta:
    return timedelta(seconds=max(3 * settings.STEPWISE_HEARTBEAT_S, 15))


def _job_alive(connection, step_run: StepRun, now) -> bool:
    try:
        job = Job.fetch(queues.job_id(step_run), connection=connection)
    except NoSuchJobError:
        return False
    if job.origin != queues.queue_name(step_run.queue):
        # Not this step's job: its compute target moved to another queue.
        return False
    try:
        status = job.get_status(refresh=True)
    except InvalidJobOperation:
        # Gone since the fetch (its worker ended it, or Redis dropped it): as if never found. A
        # step enqueued again that already ran is fenced by its state, and runs once.
        return False
    if status == "scheduled":
        # A retry waiting out its backoff. RQ's scheduler runs in one worker per queue, elected by
        # a lock: when that worker was SIGKILLed, no other takes over for minutes. Overdue is lost.
        registry = ScheduledJobRegistry(queue=queues.get_queue(step_run.queue))
        try:
            due = registry.get_scheduled_time(job)
        except NoSuchJobError:
            return False
        return due > now - SCHEDULER_SLACK
    return status in ("queued", "started", "deferred")


def _lose(step_run: StepRun, reason: str) -> bool:
    """Fail an attempt whose worker is gone (a retry is queued if it has retries left)."""
    lost_attempt, host = step_run.attempt, step_run.worker.rpartition(":")[0]
    if not step_run_fail(step_run=step_run, reason=reason):
        return False
    # The lost attempt's processes outlive a SIGKILLed worker and keep running under a
    # frozen one; they can be reached from this host only (see runs/processes.py).
    if host == socket.gethostname():
        processes.kill_attempt_processes(step_run.pk, lost_attempt)
    orchestrator.run_advance(step_run.run_id)
    return True


def worker_exited(*, pid: int, why: str) -> list[int]:
    """Fail at once the attempts of a worker of this host that its supervisor saw exit (`serve`),
    instead of after heartbeat_limit(); returns the step runs failed.

    Only while the supervisor has not reaped the dead worker: until then no other process can
    have its pid, so every attempt running under its name (`host:pid`, as the executor names
    it) is the dead worker's, never a live one's.
    """
    name = f"{socket.gethostname()}:{pid}"
    lost = [
        s.pk for s in StepRun.objects.filter(state=StepState.RUNNING, worker=name) if _lose(s, f"worker lost: {why}")
    ]
    if lost:
        log.warning("reconciler worker_lost (%s): %s", why, lost)
    return lost


def tick() -> dict[str, list[int]]:
    """One pass; returns the ids it acted on, by what it did."""
    now = timezone.now()
    done: dict[str, list[int]] = {
        "worker_lost": [],
        "requeued": [],
        "settled": [],
        "timed_out": [],
        "reaped": [],
        "orphan_trials": [],
    }

    stale = StepRun.objects.filter(state=StepState.RUNNING, heartbeat_at__lt=now - heartbeat_limit())
    for step_run in stale:
        if _lose(step_run, "worker lost: no heartbeat"):
            done["worker_lost"].append(step_run.pk)

    # A step canceled (or stopped by a run timeout) while its worker was dead was never
    # killed by that worker: once its heartbeat is stale, kill what it left on this host.
    ended = StepRun.objects.filter(
        state=StepState.CANCELED,
        heartbeat_at__lt=now - heartbeat_limit(),
        finished_at__gt=now - REAP_WINDOW,
    ).only("id", "attempt", "worker")
    for step_run in ended:
        key = (step_run.pk, step_run.attempt)
        if key in _reaped or step_run.worker.rpartition(":")[0] != socket.gethostname():
            continue
        _reaped.add(key)
        if processes.kill_attempt_processes(step_run.pk, step_run.attempt):
            done["reaped"].append(step_run.pk)

    connection = queues.get_queue("default").connection
    grace = now - timedelta(seconds=5)
    lost = [
        s
        for s in StepRun.objects.filter(state=StepState.QUEUED, queued_at__lt=grace)
        if not _job_alive(connection, s, now)
    ]
    if lost:
        queues.enqueue_steps(lost)
        done["requeued"] = [s.pk for s in lost]

    # Only a run with nothing queued or running can be stuck: otherwise the worker that
    # ends the step in flight advances it, and advancing here would only contend for its lock.
    active = Run.objects.filter(state__in=[RunState.QUEUED, RunState.RUNNING], created_at__lt=grace)
    in_flight = StepRun.objects.filter(run__in=active, state__in=[StepState.QUEUED, StepState.RUNNING])
    for run_id, before in active.exclude(pk__in=in_flight.values("run_id")).values_list("pk", "state"):
        try:
            orchestrator.run_advance(run_id)
        except Exception:
            # One run that cannot advance must not stop the pass: the others' timeouts come after.
            log.exception("reconciler: run %s cannot advance", run_id)
            continue
        if Run.objects.values_list("state", flat=True).get(pk=run_id) != before:
            done["settled"].append(run_id)

    running = Run.objects.filter(state=RunState.RUNNING, timeout_s__isnull=False, timed_out=False)
    for run in running.exclude(started_at=None):
        if run.started_at + timedelta(seconds=run.timeout_s) < now and services.run_time_out(run=run):
            done["timed_out"].append(run.pk)

    done["orphan_trials"] = sweep_trials.sweep_trials_end_orphans(stale_before=now - heartbeat_limit())

    for key, ids in done.items():
        if ids:
            log.warning("reconciler %s: %s", key, ids)
    return done
