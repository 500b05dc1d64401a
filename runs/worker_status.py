"""Live worker status: every write of a `Worker` row, and what the Workers page reads.

A step worker writes its own row: at start, a heartbeat every STEPWISE_HEARTBEAT_S while it
waits for work, busy and idle around each job, stopped when it ends cleanly. While a step runs,
its liveness is the step's own heartbeat (the executor beats the StepRun), the one the
reconciler goes by: a worker shows as lost exactly when its step would be failed as "worker
lost". The only write from the web is the drain flag, which the worker reads between jobs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.db.models import Count, F, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from pipelines_ui.models import Membership, Role
from runs import rows
from runs.models import ComputeTarget, Run, StepRun, StepState, Worker, WorkerState
from runs.reconciler import heartbeat_limit

log = logging.getLogger(__name__)

# Stopped and lost workers stay listed this long; a worker that starts deletes older ones.
KEEP = timedelta(days=7)
# The Workers page lists at most this many of them, the latest first.
PAST_SHOWN = 50


# ---- written by the worker process ---------------------------------------------------------


@dataclass
class WorkerRecord:
    """A worker process's handle on its own row (called between jobs, outside any transaction).

    A database error is logged and the worker carries on as if nothing was asked of it: the
    status is for people, and the steps' own records decide what runs. A row that vanished
    (deleted in the admin) is written again, as the worker is alive after all.
    """

    name: str
    host: str
    pid: int
    rq_name: str
    targets: list[str]
    pk: int | None = field(default=None, init=False)

    def register(self) -> None:
        now = timezone.now()
        worker_prune(now=now)
        worker, _ = Worker.objects.update_or_create(
            # A row of this name is an earlier process whose pid this one has now: it is gone.
            name=self.name,
            defaults={
                "host": self.host,
                "pid": self.pid,
                "rq_name": self.rq_name,
                "targets": self.targets,
                "state": WorkerState.IDLE,
                "drain": False,
                "drain_requested_at": None,
                "drain_requested_by": None,
                "steps_done": 0,
                "started_at": now,
                "heartbeat_at": now,
                "stopped_at": None,
            },
        )
        self.pk = worker.pk

    def _rows(self):
        return Worker.objects.filter(pk=self.pk)

    def beat(self) -> bool:
        """Refresh the heartbeat of an idle worker; True when it is asked to drain."""
        try:
            if self._rows().filter(drain=False).update(heartbeat_at=timezone.now(), state=WorkerState.IDLE):
                return False
            # Draining, or the row is gone.
            if self._rows().update(heartbeat_at=timezone.now(), state=WorkerState.IDLE):
                return True
            self.register()
        except DatabaseError as exc:
            log.warning("worker %s: cannot record its heartbeat: %s", self.name, exc)
        return False

    def claim(self) -> bool:
        """Mark the worker busy with a job it dequeued; False when it must hand the job back (draining)."""
        try:
            if self._rows().filter(drain=False).update(heartbeat_at=timezone.now(), state=WorkerState.BUSY):
                return True
            if self._rows().exists():
                return False
            self.register()
            self._rows().update(state=WorkerState.BUSY)
        except DatabaseError as exc:
            log.warning("worker %s: cannot record that it is busy: %s", self.name, exc)
        return True

    def drain_requested(self) -> bool:
        try:
            # Asked before each step a worker keeps for itself: on the hot path (runs/rows.py).
            return any(drain for (drain,) in rows.values(Worker, ("drain",), {"id": self.pk}))
        except DatabaseError as exc:
            log.warning("worker %s: cannot read its drain flag: %s", self.name, exc)
            return False

    def job_done(self, *, step_run_id: int | None, since: datetime) -> None:
        """Back to idle, counting the steps the job ran (a job runs a step, then the chain it made ready)."""
        changes: dict = {"heartbeat_at": timezone.now(), "state": WorkerState.IDLE}
        if step_run_id is not None:
            # The chain stays in the first step's run: counted there, by the run's index.
            ran = StepRun.objects.filter(
                run_id=Subquery(StepRun.objects.filter(pk=step_run_id).values("run_id")[:1]),
                worker=self.name,
                started_at__gte=since,
            )
            count = ran.order_by().values("worker").annotate(n=Count("pk")).values("n")[:1]
            changes["steps_done"] = F("steps_done") + Coalesce(Subquery(count), 0)
        try:
            if not self._rows().update(**changes):
                self.register()
        except DatabaseError as exc:
            log.warning("worker %s: cannot record the end of a job: %s", self.name, exc)

    def stopped(self) -> None:
        now = timezone.now()
        try:
            self._rows().update(state=WorkerState.STOPPED, stopped_at=now, heartbeat_at=now)
        except DatabaseError as exc:
            log.warning("worker %s: cannot record that it stopped: %s", self.name, exc)


def worker_prune(*, now: datetime) -> int:
    """Delete workers stopped or lost longer than KEEP ago; returns how many."""
    # A worker whose own heartbeat is that old may still run one very long step.
    busy = StepRun.objects.filter(state=StepState.RUNNING).values("worker")
    deleted, _ = Worker.objects.filter(heartbeat_at__lt=now - KEEP).exclude(name__in=busy).delete()
    return deleted


# ---- written from the Workers page ---------------------------------------------------------


def worker_drain(*, worker: Worker, user) -> bool:
    """Ask a worker to finish its current step and take no more; False when stopped or already draining."""
    return bool(
        Worker.objects.filter(pk=worker.pk, drain=False)
        .exclude(state=WorkerState.STOPPED)
        .update(drain=True, drain_requested_at=timezone.now(), drain_requested_by=user)
    )


def worker_undrain(*, worker: Worker) -> bool:
    """Let a draining worker take steps again; False when stopped or not draining."""
    return bool(
        Worker.objects.filter(pk=worker.pk, drain=True)
        .exclude(state=WorkerState.STOPPED)
        .update(drain=False, drain_requested_at=None, drain_requested_by=None)
    )


def user_manages_workers(user) -> bool:
    """Staff alone drain and undrain: a worker takes every team's steps, and anyone may create a
    team and be its admin."""
    return bool(user.is_authenticated and user.is_active and user.is_staff)


# ---- read by the Workers page --------------------------------------------------------------


def user_sees_workers(user) -> bool:
    """Staff and the admins of any team: workers serve every team, so they see them all."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_staff:
        return True
    # Asked by every page (the nav link): once per request's user.
    cached = getattr(user, "_stepwise_sees_workers", None)
    if cached is None:
        cached = Membership.objects.filter(user=user, role=Role.ADMIN).exists()
        user._stepwise_sees_workers = cached
    return cached


class Status:
    """What the page says a worker is doing: its state, its drain flag and its heartbeat together."""

    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"  # finishing its step; takes no more
    DRAINED = "drained"  # idle, taking nothing until undrained or stopped
    STOPPED = "stopped"
    LOST = "lost"  # never said it stopped, and its heartbeat is too old


@dataclass
class WorkerRow:
    worker: Worker
    status: str
    # The later of its own heartbeat and its running step's.
    heartbeat_at: datetime
    step: StepRun | None = None
    # Whether the user may see the step's run (its name and a link to it).
    step_visible: bool = False

    @property
    def alive(self) -> bool:
        return self.status not in (Status.STOPPED, Status.LOST)

    @property
    def heartbeat_age_s(self) -> float:
        return max(0.0, (timezone.now() - self.heartbeat_at).total_seconds())


@dataclass
class WorkersPage:
    live: list[WorkerRow]
    past: list[WorkerRow]
    # Compute targets that no live worker takes steps of (one that drains does not count).
    unserved: list[str]
    targets: list[str]
    # Whether the page offers Drain and Undrain (user_manages_workers).
    manages: bool = False


def _row(worker: Worker, step: StepRun | None, cutoff: datetime) -> WorkerRow:
    heartbeat_at = worker.heartbeat_at
    if step is not None and step.heartbeat_at is not None:
        heartbeat_at = max(heartbeat_at, step.heartbeat_at)
    if worker.state == WorkerState.STOPPED:
        status = Status.STOPPED
    elif heartbeat_at < cutoff:
        status = Status.LOST
    elif worker.drain:
        status = Status.DRAINING if worker.state == WorkerState.BUSY or step is not None else Status.DRAINED
    elif worker.state == WorkerState.BUSY or step is not None:
        status = Status.BUSY
    else:
        status = Status.IDLE
    return WorkerRow(worker=worker, status=status, heartbeat_at=heartbeat_at, step=step)


def workers_page(*, user) -> WorkersPage:
    """Live workers, then the stopped and lost ones; a step's run shows only to whom may see it."""
    now = timezone.now()
    cutoff = now - heartbeat_limit()
    running = {
        s.worker: s
        for s in StepRun.objects.filter(state=StepState.RUNNING)
        .exclude(worker="")
        .only("id", "run_id", "name", "display_name", "attempt", "heartbeat_at", "worker")
    }
    workers = Worker.objects.select_related("drain_requested_by")
    candidates = workers.exclude(state=WorkerState.STOPPED).filter(
        Q(heartbeat_at__gte=cutoff) | Q(name__in=list(running))
    )
    rows = [_row(w, running.get(w.name), cutoff) for w in candidates]
    live = [r for r in rows if r.alive]
    past = [
        _row(w, running.get(w.name), cutoff)
        for w in workers.exclude(pk__in=[r.worker.pk for r in live]).order_by("-heartbeat_at")[:PAST_SHOWN]
    ]
    steps = [r.step for r in live + past if r.step is not None]
    if steps:
        visible = set(Run.objects.for_user(user).filter(pk__in={s.run_id for s in steps}).values_list("pk", flat=True))
        for row in live + past:
            row.step_visible = row.step is not None and row.step.run_id in visible
    targets = list(ComputeTarget.objects.values_list("name", flat=True))
    served = {t for r in live if not r.worker.drain for t in r.worker.targets}
    return WorkersPage(
        live=live,
        past=past,
        unserved=[t for t in targets if t not in served],
        targets=targets,
        manages=user_manages_workers(user),
    )
