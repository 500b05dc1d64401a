"""A sweep trial as its driver sees it, whichever worker runs it.

The driver queues each trial it starts (a row, and a job on the sweep step's queue); the first
worker to claim the row runs it (`sweep_trial_claim`, a compare-and-set). When no other worker
claimed it within STEPWISE_TRIAL_CLAIM_DELAY_S, the sweep's own worker claims it and runs it
itself, as a thread (executor.TrialAttempt): a single worker, or every worker busy driving a
sweep, would otherwise wait forever for trials no one takes. The trial already holds one of the
driver's `max_concurrent_trials` slots while queued, so running it here never exceeds them.

A trial another worker claimed (runs/trial_runner.py) is followed through its row: its lines
and metrics come as reports, its end as its `result`, and a heartbeat older than the
reconciler's limit means its worker is lost. Everything here runs in the driver's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from runs import queues, sweep_trials
from runs import worker as worker_
from runs.artifact_files import Manifest
from runs.models import SweepTrial, TrialState
from runs.reconciler import heartbeat_limit
from runs.step_records import MetricRecord, ParamRecord
from runs.sweep_driver import Trial, TrialSetupError

# How often the row of a trial run elsewhere is read: its reports, its result, its heartbeat.
ROW_POLL_S = 0.25


class RemoteTrialError(Exception):
    """The worker running the trial failed (not its process): its message, as that worker logged it."""


class ClaimableTrial:
    """Queued, then run here (a TrialAttempt) or followed elsewhere (its row): the driver's `Trial`."""

    def __init__(self, row: SweepTrial, *, run_here: Callable[[], Trial]):
        self.row = row
        self.number = row.number
        self.run_here = run_here
        self.queued_at = time.monotonic()
        self.polled_at = 0.0
        # Set once claimed: the trial this worker runs, or (remote) the claim of another worker.
        self.local: Trial | None = None
        self.remote = False
        self.ended = False
        self._returncode: int | None = None
        self._error: BaseException | None = None
        self._stop_reason = ""
        self._stopped_by = ""
        self.setup_error = ""
        self.stored_outputs: dict[str, tuple[Manifest, str]] = {}
        self._lines: list[str] = []
        self._records: list[MetricRecord | ParamRecord] = []

    # -- what the driver reads ------------------------------------------------------------
    @property
    def returncode(self) -> int | None:
        return self.local.returncode if self.local else self._returncode

    @property
    def error(self) -> BaseException | None:
        return self.local.error if self.local else self._error

    @property
    def stop_reason(self) -> str:
        return self.local.stop_reason if self.local else self._stop_reason

    @property
    def stopped_by(self) -> str:
        return self.local.stopped_by if self.local else self._stopped_by

    @property
    def outputs(self) -> dict[str, tuple[Path, str]]:
        return self.local.outputs if self.local else {}

    @property
    def worker(self) -> str:
        return self.row.worker

    def done(self) -> bool:
        if self.local is not None:
            return self.local.done()
        return self.ended

    def join(self, timeout: float | None = None) -> None:
        if self.local is not None:
            self.local.join(timeout)

    def take(self) -> tuple[list[str], list[MetricRecord | ParamRecord]]:
        if self.local is not None:
            return self.local.take()
        lines, self._lines = self._lines, []
        records, self._records = self._records, []
        return lines, records

    # -- what the driver does -------------------------------------------------------------
    def poll(self) -> None:
        if self.local is not None or self.ended:
            return
        now = time.monotonic()
        if now - self.polled_at < ROW_POLL_S:
            return
        self.polled_at = now
        if not self.remote:
            self.row.refresh_from_db(fields=["state", "worker", "started_at"])
            if self.row.state == TrialState.QUEUED and now - self.queued_at >= settings.STEPWISE_TRIAL_CLAIM_DELAY_S:
                self._claim_here()
            elif self.row.state != TrialState.QUEUED:
                self.remote = True
        if self.remote:
            self._follow()

    def stop(self, reason: str) -> None:
        if self.local is not None:
            self.local.stop(reason)
            return
        if self._stopped_by or self.ended:
            return
        self._stop_reason = self._stop_reason or reason
        self._stopped_by = reason
        if not self.remote:
            # Claimed here so that no worker starts it; nothing runs (see _claim_here).
            self._claim_here()
        if self.remote:
            sweep_trials.sweep_trial_request_stop(trial=self.row, reason=reason)

    # -- the two ways a trial runs ----------------------------------------------------------
    def _claim_here(self) -> None:
        if not sweep_trials.sweep_trial_claim(trial=self.row, worker=worker_.worker_name()):
            self.remote = True
            return
        queues.withdraw_trial(self.row)
        if self._stopped_by:
            self.ended = True
            return
        try:
            self.local = self.run_here()
        except TrialSetupError as exc:
            self.setup_error = str(exc)
            self.ended = True

    def _follow(self) -> None:
        # The result first: a result read means every report before it is there to take.
        self.row.refresh_from_db(fields=["state", "worker", "result", "heartbeat_at"])
        lines, metrics = sweep_trials.sweep_trial_take_reports(trial=self.row)
        self._lines.extend(lines)
        self._records.extend(metrics)
        result = self.row.result
        if result is not None:
            self._hand_in(result)
            return
        if self.row.state != TrialState.RUNNING:
            self.ended = True  # ended by this sweep already (a stop while it was queued)
            return
        limit = heartbeat_limit()
        if self.row.heartbeat_at is None or timezone.now() - self.row.heartbeat_at > limit:
            self._stop_reason = self._stop_reason or (
                f"worker lost: {self.row.worker} sent no heartbeat for {limit.total_seconds():g} s"
            )
            self.ended = True

    def _hand_in(self, result: dict) -> None:
        self.ended = True
        self._returncode = result.get("returncode")
        self._stop_reason = self._stop_reason or result.get("stop_reason", "")
        self.setup_error = result.get("setup_error", "")
        if result.get("error"):
            self._error = RemoteTrialError(result["error"])
        self.stored_outputs = sweep_trials.result_outputs(result)
