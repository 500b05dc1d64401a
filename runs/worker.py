"""The RQ worker that runs steps, and keeps its own status in the database.

Each step already runs in its own subprocess, so the worker need not fork per job
as RQ's default Worker does (twice the process start-up per step): a SimpleWorker
runs the job in-process. Django's database connections are reset around each job,
as django-rq's own command does.

The worker records itself in a `Worker` row (runs/worker_status.py) and honours a drain
asked from the Workers page: it finishes the step it runs, takes no further job, and then
idles, beating, until it is undrained or stopped. It does not exit: every supervisor that
runs workers (`serve`, systemd with `Restart=`, a Kubernetes Deployment) would start it again
at once, taking work; an idle worker stops at once on SIGTERM.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence

import redis
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from rq import SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job
from rq.queue import Queue
from rq.scheduler import RQScheduler
from rq.worker import WorkerStatus

from runs.worker_status import WorkerRecord

PR_SET_PDEATHSIG = 1
STEP_JOB_FUNC = "runs.jobs.execute_step"

# The step worker of this process, if it is one (see `draining`).
_current: StepWorker | None = None


def worker_name() -> str:
    """This process as a step's worker (StepRun.worker) and as its Worker row's name."""
    return f"{socket.gethostname()}:{os.getpid()}"


def draining() -> bool:
    """Whether the worker of this process takes no further step: drained from the Workers page,
    or stopping (SIGTERM: RQ's warm shutdown ends the job first). False outside a step worker."""
    worker = _current
    if worker is None:
        return False
    return worker.stopping or worker.record.drain_requested()


def _end_with_parent() -> None:
    """In a forked child of the worker (RQ's scheduler): get SIGTERM when the worker dies.

    RQ's scheduler process never checks on its worker: after a SIGKILL it would live on,
    holding the queue's scheduler lock and a copy of the worker's database connection.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class StepScheduler(RQScheduler):
    """RQ's scheduler process (it moves retries whose backoff is over onto their queue), which
    ends as soon as its worker stops it: RQ's sleeps out its interval first, up to a second of
    every worker's stop, and of every restart `serve` makes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wake: tuple[int, int] | None = None

    def work(self) -> None:
        # RQ's loop, with a wait that the stop signal's handler ends (a self-pipe).
        self._wake = os.pipe()
        self._install_signal_handlers()
        self.register_birth()
        while not self._stop_requested:
            if self.should_reacquire_locks:
                self.acquire_locks()
            self.heartbeat()
            self.enqueue_scheduled_jobs()
            select.select([self._wake[0]], [], [], self.interval)
        self.stop()

    def request_stop(self, signum=None, frame=None) -> None:
        super().request_stop(signum, frame)
        if self._wake is not None:
            os.write(self._wake[1], b"\0")


def _step_run_id(job: Job) -> int | None:
    if job.func_name != STEP_JOB_FUNC or not job.args:
        return None
    return job.args[0]


class StepWorker(SimpleWorker):
    def __init__(self, *args, targets: Sequence[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if sys.platform.startswith("linux"):
            # Not run for step subprocesses (subprocess forks without Python's at-fork hooks).
            os.register_at_fork(after_in_child=_end_with_parent)
        self.record = WorkerRecord(
            name=worker_name(), host=socket.gethostname(), pid=os.getpid(), rq_name=self.name, targets=list(targets)
        )
        # Set by a warm shutdown (the first SIGTERM or Ctrl-C).
        self.stopping = False
        self._next_beat = 0.0

    @property
    def dequeue_timeout(self) -> int:
        # Wake from waiting on the queues once per heartbeat: to beat, and to see a drain.
        return max(1, settings.STEPWISE_HEARTBEAT_S)

    def bootstrap(self, *args, **kwargs) -> None:
        global _current
        super().bootstrap(*args, **kwargs)
        self.record.register()
        self._next_beat = time.monotonic() + self.dequeue_timeout
        _current = self

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's own, with StepScheduler (RQ names its class in the method)."""
        self.scheduler = StepScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return  # another worker's scheduler serves these queues
        if not burst:
            self.scheduler.start()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()

    def handle_warm_shutdown_request(self) -> None:
        self.stopping = True
        super().handle_warm_shutdown_request()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):
        idle_since = time.monotonic()
        while True:
            if time.monotonic() >= self._next_beat:
                self._next_beat = time.monotonic() + self.dequeue_timeout
                close_old_connections()
                if self.record.beat():
                    self._wait_while_drained()
                    continue
            # Back each heartbeat (RQ alone would wait for a job as long as it takes).
            result = super().dequeue_job_and_maintain_ttl(
                timeout, max_idle_time=None if timeout is None else self.dequeue_timeout
            )
            if result is not None:
                close_old_connections()
                if self.record.claim():
                    return result
                # Asked to drain while it waited for this job: the next worker gets it.
                self._hand_back(*result)
                self._next_beat = 0.0
                continue
            if timeout is None:
                return None  # burst: the queues are empty
            if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                return None

    def _hand_back(self, job: Job, queue: Queue) -> None:
        # Dequeued but not started: its id back at the head of its queue, out of the list RQ
        # keeps of jobs being dequeued (its job hash never left the queued state).
        with self.connection.pipeline() as pipe:
            pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            pipe.lpush(queue.key, job.id)
            pipe.execute()

    def _wait_while_drained(self) -> None:
        """Idle until undrained; SIGTERM ends the wait (RQ's handler raises StopRequested)."""
        self.set_state(WorkerStatus.SUSPENDED)
        self.procline("Drained: taking no jobs")
        while True:
            with contextlib.suppress(redis.exceptions.ConnectionError):
                self.heartbeat()  # RQ's own registry, for its dashboard
            time.sleep(self.dequeue_timeout)
            close_old_connections()
            if not self.record.beat():
                break
        self._next_beat = time.monotonic() + self.dequeue_timeout

    def perform_job(self, job: Job, queue: Queue) -> bool:
        close_old_connections()
        since = timezone.now()
        try:
            return super().perform_job(job, queue)
        finally:
            close_old_connections()
            self.record.job_done(step_run_id=_step_run_id(job), since=since)
            self._next_beat = time.monotonic() + self.dequeue_timeout

    def teardown(self) -> None:
        global _current
        try:
            super().teardown()
        finally:
            close_old_connections()
            self.record.stopped()
            _current = None
