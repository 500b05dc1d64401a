"""Counting a parallel job's failures against its thresholds, as Azure ML counts them.

`error_threshold` counts failed items (files or rows): all of a mini-batch whose run() failed on
its last try, and the items a run() returned no result for. `mini_batch_error_threshold` counts
failed mini-batches: both of those. -1 ignores every failure of its kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Failure:
    index: int
    total: int
    label: str
    reason: str

    def __str__(self) -> str:
        return f"mini-batch {self.index + 1}/{self.total} ({self.label}): {self.reason}"


@dataclass
class Tally:
    total: int
    error_threshold: int = -1
    mini_batch_error_threshold: int = -1
    done: int = 0
    failed_items: int = 0
    results: int = 0
    failures: list[Failure] = field(default_factory=list)

    def succeeded(self, index: int, label: str, *, items: int, results: int) -> Failure | None:
        """run() returned; fewer results than items fail the mini-batch (its rows are kept)."""
        self.done += 1
        self.results += min(results, items)
        if results >= items:
            return None
        return self._fail(index, label, items - results, f"run() returned {results} results for {items} items")

    def failed(self, index: int, label: str, *, items: int, reason: str) -> Failure:
        """run() failed on the mini-batch's last try: all its items failed."""
        self.done += 1
        return self._fail(index, label, items, reason)

    def _fail(self, index: int, label: str, items: int, reason: str) -> Failure:
        failure = Failure(index, self.total, label, reason)
        self.failures.append(failure)
        self.failed_items += items
        return failure

    def exceeded(self) -> str | None:
        """Why the job must stop now, or None while its failures are within its thresholds."""
        batches = len(self.failures)
        if self.mini_batch_error_threshold >= 0 and batches > self.mini_batch_error_threshold:
            return (
                f"{batches} failed mini-batch{'es' if batches != 1 else ''}, "
                f"more than mini_batch_error_threshold {self.mini_batch_error_threshold}"
            )
        if self.error_threshold >= 0 and self.failed_items > self.error_threshold:
            return (
                f"{self.failed_items} failed item{'s' if self.failed_items != 1 else ''}, "
                f"more than error_threshold {self.error_threshold}"
            )
        return None
