"""The RQ worker that runs steps.

Each step already runs in its own subprocess, so the worker need not fork per job
as RQ's default Worker does (twice the process start-up per step): a SimpleWorker
runs the job in-process. Django's database connections are reset around each job,
as django-rq's own command does.
"""

from __future__ import annotations

from django.db import close_old_connections
from rq import SimpleWorker


class StepWorker(SimpleWorker):
    def perform_job(self, job, queue) -> bool:
        close_old_connections()
        try:
            return super().perform_job(job, queue)
        finally:
            close_old_connections()
