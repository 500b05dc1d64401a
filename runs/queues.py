"""Compute targets are RQ queues; this module is the one place that names queues and jobs and
enqueues step jobs (and sweep trials' jobs, on their sweep step's queue).

Several installs may share one Redis: every queue name, job id and worker name carries this
install's instance id (settings.STEPWISE_INSTANCE), so that each install's workers take only its
own jobs. A compute target's `queue` is the logical name; the Redis name is derived here.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta

import django_rq
import redis
from django.conf import settings
from django.db import connections
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

from pipelines_ui.settings import database_instance
from runs.models import ComputeTarget, StepRun, SweepTrial
from stepwise.spec.bindings import compute_target_name

log = logging.getLogger(__name__)

JOB_FUNC = "runs.jobs.execute_step"
TRIAL_JOB_FUNC = "runs.jobs.run_sweep_trial"


_queues: dict[str, Queue] = {}


def instance_id() -> str:
    """This install's id: STEPWISE_INSTANCE, else derived from the database this process uses."""
    # Derived at use, not import, where settings leave it empty: under test settings the
    # database is renamed to the test database after settings are loaded.
    return settings.STEPWISE_INSTANCE or database_instance(connections["default"].settings_dict)


def queue_name(name: str) -> str:
    """The Redis name of a compute target's queue `name`."""
    # The instance cannot hold a dot: "<instance>.<name>" never reads as another install's.
    return f"{instance_id()}.{name}"


def worker_name(name: str | None = None) -> str:
    """An RQ worker's name (a global key in Redis), within this install's names."""
    return f"{instance_id()}.{name or uuid.uuid4().hex}"


def get_queue(name: str) -> Queue:
    """This install's RQ queue of the compute target queue `name`."""
    # django_rq's configured connection, whatever the queue name: every target shares one Redis.
    # Cached: each new Queue opens a connection pool and asks Redis for INFO on first use.
    full_name = queue_name(name)
    queue = _queues.get(full_name)
    if queue is None:
        queue = _queues[full_name] = Queue(
            full_name, connection=django_rq.get_connection("default"), default_timeout=-1
        )
    return queue


def job_id(step_run: StepRun) -> str:
    # One RQ job id per attempt: enqueueing the same attempt twice (reconciler, duplicate
    # delivery) overwrites instead of duplicating, and the executor's CAS lets one win.
    return f"{instance_id()}-step-{step_run.pk}-{step_run.attempt}"


def job_args(step_run: StepRun) -> tuple[int, int, str]:
    """The arguments of `runs.jobs.execute_step` for this attempt: the instance lets a worker
    refuse a job of another install that reached its queue anyway."""
    return (step_run.pk, step_run.attempt, instance_id())


def withdraw_step(step_run: StepRun) -> None:
    """Take this attempt's job back out of its queue: a worker started the step from the database
    (orchestrator.run_advance). Best effort: a worker that dequeued the job meanwhile finds the
    step running and drops it (runs.executor), and a job left behind is dropped the same way."""
    queue = get_queue(step_run.queue)
    key = job_id(step_run)
    try:
        with queue.connection.pipeline() as pipe:
            pipe.lrem(queue.key, 1, key)
            pipe.delete(Job.key_for(key))
            pipe.execute()
    except redis.exceptions.RedisError as exc:
        log.warning("could not withdraw job %s from queue %s: %s", key, queue.name, exc)


def enqueue_step_later(step_run: StepRun, delay_s: float) -> None:
    """A retry after a backoff; the workers' RQ scheduler moves it to the queue when due."""
    get_queue(step_run.queue).enqueue_in(
        timedelta(seconds=delay_s),
        JOB_FUNC,
        args=job_args(step_run),
        job_id=job_id(step_run),
        job_timeout=-1,
        result_ttl=600,
        failure_ttl=86400,
    )


def enqueue_steps(step_runs: Iterable[StepRun]) -> None:
    by_queue: dict[str, list[StepRun]] = {}
    for step_run in step_runs:
        by_queue.setdefault(step_run.queue, []).append(step_run)
    for queue_name, items in by_queue.items():
        queue = get_queue(queue_name)
        queue.enqueue_many(
            [
                Queue.prepare_data(
                    JOB_FUNC,
                    args=job_args(s),
                    job_id=job_id(s),
                    timeout=-1,
                    result_ttl=600,
                    failure_ttl=86400,
                )
                for s in items
            ]
        )


def trial_job_id(trial: SweepTrial) -> str:
    return f"{instance_id()}-trial-{trial.pk}"


def enqueue_trial(trial: SweepTrial, queue: str) -> None:
    """Offer a queued trial to the workers of its sweep step's queue (runs.jobs.run_sweep_trial)."""
    get_queue(queue).enqueue(
        TRIAL_JOB_FUNC,
        args=(trial.pk, instance_id()),
        job_id=trial_job_id(trial),
        job_timeout=-1,
        result_ttl=600,
        failure_ttl=86400,
    )


def withdraw_trial(trial: SweepTrial) -> None:
    """Drop the job of a trial the sweep's own worker claimed: no other worker need wake for it
    (one that does finds the trial claimed and leaves it)."""
    with contextlib.suppress(NoSuchJobError):
        Job.fetch(trial_job_id(trial), connection=django_rq.get_connection("default")).delete()


def resolve_target(name: str) -> ComputeTarget | None:
    """A compute target by name or alias (`azureml:` prefix allowed; empty or `serverless`: the
    default target); an unknown name is None, or the default target under
    STEPWISE_UNKNOWN_COMPUTE=default."""
    name = compute_target_name(name)
    default = ComputeTarget.objects.filter(is_default=True).order_by("name")
    if not name:
        return default.first()
    target = ComputeTarget.objects.filter(name=name).first()
    if target is not None:
        return target
    for candidate in ComputeTarget.objects.all():
        if name in (candidate.aliases or []):
            return candidate
    if settings.STEPWISE_UNKNOWN_COMPUTE == "default":
        return default.first()
    return None
