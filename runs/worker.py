"""The RQ worker that runs steps.

Each step already runs in its own subprocess, so the worker need not fork per job
as RQ's default Worker does (twice the process start-up per step): a SimpleWorker
runs the job in-process. Django's database connections are reset around each job,
as django-rq's own command does.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from django.db import close_old_connections
from rq import SimpleWorker

PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """In a forked child of the worker (RQ's scheduler): get SIGTERM when the worker dies.

    RQ's scheduler process never checks on its worker: after a SIGKILL it would live on,
    holding the queue's scheduler lock and a copy of the worker's database connection.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class StepWorker(SimpleWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if sys.platform.startswith("linux"):
            # Not run for step subprocesses (subprocess forks without Python's at-fork hooks).
            os.register_at_fork(after_in_child=_end_with_parent)

    def perform_job(self, job, queue) -> bool:
        close_old_connections()
        try:
            return super().perform_job(job, queue)
        finally:
            close_old_connections()
