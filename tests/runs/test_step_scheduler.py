"""RQ's scheduler as the step worker runs it (runs/worker.py, StepScheduler): a real forked
process against the test Redis, as StepWorker starts and stops it."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rq.scheduler import RQScheduler

from runs import queues
from runs.worker import StepScheduler
from tests.integration.conftest import wait_for

# Far longer than any wait below: a scheduler that slept out its interval would fail the test.
INTERVAL_S = 120


def test_the_scheduler_moves_a_due_retry_onto_its_queue_and_ends_as_soon_as_it_is_stopped():
    queue = queues.get_queue("scheduler-test")
    job = queue.enqueue_at(timezone.now() - timedelta(seconds=1), "builtins.print", "due")
    scheduler = StepScheduler([queue], connection=queue.connection, interval=INTERVAL_S)
    scheduler.acquire_locks()
    assert scheduler.acquired_locks == {queue.name}
    process = scheduler.start()
    try:
        wait_for(lambda: job.id in queue.get_job_ids(), timeout=30, message="the due job on its queue")
        process.terminate()  # SIGTERM, as RQ's stop_scheduler sends it
        process.join(timeout=30)
        assert process.exitcode == 0, "ended by its own loop, not by the signal"
        assert queue.connection.get(RQScheduler.get_locking_key(queue.name)) is None, "its lock released"
    finally:
        if process.is_alive():
            process.kill()
            process.join()
