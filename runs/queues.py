"""Compute targets are RQ queues; this module is the one place that enqueues step jobs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import django_rq
from rq import Queue

from runs.models import ComputeTarget, StepRun

JOB_FUNC = "runs.jobs.execute_step"


_queues: dict[str, Queue] = {}


def get_queue(name: str) -> Queue:
    # django_rq's configured connection, whatever the queue name: every target shares one Redis.
    # Cached: each new Queue opens a connection pool and asks Redis for INFO on first use.
    queue = _queues.get(name)
    if queue is None:
        queue = _queues[name] = Queue(name, connection=django_rq.get_connection("default"), default_timeout=-1)
    return queue


def job_id(step_run: StepRun) -> str:
    # One RQ job id per attempt: enqueueing the same attempt twice (reconciler, duplicate
    # delivery) overwrites instead of duplicating, and the executor's CAS lets one win.
    return f"step-{step_run.pk}-{step_run.attempt}"


def enqueue_step_later(step_run: StepRun, delay_s: float) -> None:
    """A retry after a backoff; the workers' RQ scheduler moves it to the queue when due."""
    get_queue(step_run.queue).enqueue_in(
        timedelta(seconds=delay_s),
        JOB_FUNC,
        args=(step_run.pk, step_run.attempt),
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
                    args=(s.pk, s.attempt),
                    job_id=job_id(s),
                    timeout=-1,
                    result_ttl=600,
                    failure_ttl=86400,
                )
                for s in items
            ]
        )


def resolve_target(name: str) -> ComputeTarget | None:
    """A compute target by name or alias (`azureml:` prefix allowed); None when unknown."""
    if name.startswith("azureml:"):
        name = name[len("azureml:") :]
    if not name:
        return ComputeTarget.objects.filter(is_default=True).first()
    target = ComputeTarget.objects.filter(name=name).first()
    if target is not None:
        return target
    for candidate in ComputeTarget.objects.all():
        if name in (candidate.aliases or []):
            return candidate
    return None
