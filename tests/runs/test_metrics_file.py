"""The worker reads a step's metrics file, which the step writes: a bounded read each time."""

from __future__ import annotations

import os

from runs import executor
from runs.executor import Prepared, TrialAttempt
from runs.step_records import MetricRecord

GIB = 1024**3


class _SizedReads:
    """The real handle, refusing a read that is not bounded (a whole sparse file, in memory)."""

    def __init__(self, handle, sizes: list[int]):
        self.handle = handle
        self.sizes = sizes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def seek(self, offset: int) -> int:
        return self.handle.seek(offset)

    def read(self, size: int = -1) -> bytes:
        self.sizes.append(size)
        assert 0 <= size <= 64 * 1024 * 1024, f"an unbounded read of the step's metrics file ({size})"
        return self.handle.read(size)


def _attempt(tmp_path, monkeypatch, sizes: list[int]) -> TrialAttempt:
    opened = executor._open_step_file
    monkeypatch.setattr(executor, "_open_step_file", lambda path: _SizedReads(opened(path), sizes))
    prepared = Prepared(command="", cwd=tmp_path, env={}, metrics_file=tmp_path / "metrics.jsonl")
    return TrialAttempt(None, prepared, number=0, timeout_s=None, tag="t")  # type: ignore[arg-type]


def test_a_sparse_metrics_file_is_not_read_whole(tmp_path, monkeypatch):
    # `truncate -s 64G "$STEPWISE_METRICS_FILE"` costs the step no disk: read whole, it would
    # cost the worker (root, outside the sandbox) 64 GiB of memory.
    sizes: list[int] = []
    attempt = _attempt(tmp_path, monkeypatch, sizes)
    with (tmp_path / "metrics.jsonl").open("wb") as handle:
        os.truncate(handle.fileno(), 64 * GIB)

    assert attempt.new_records() == []
    assert sizes and all(0 <= size <= executor.METRICS_READ_MAX for size in sizes)


def test_a_line_too_long_for_a_record_is_skipped_and_the_next_ones_read(tmp_path, monkeypatch):
    sizes: list[int] = []
    attempt = _attempt(tmp_path, monkeypatch, sizes)
    path = tmp_path / "metrics.jsonl"
    with path.open("wb") as handle:
        handle.write(b'{"name": "before", "value": 1}\n')
        handle.write(b"x" * (executor.METRICS_READ_MAX * 2 + 10) + b"\n")
        handle.write(b'{"name": "after", "value": 2}\n')

    records = []
    for _ in range(5):
        records += attempt.new_records()
    assert records == [MetricRecord("before", 1.0, 0), MetricRecord("after", 2.0, 0)]
    assert attempt.metrics_offset == path.stat().st_size


def test_a_trial_printing_faster_than_its_lines_are_taken_keeps_the_newest_and_says_so(tmp_path):
    # A trial's lines wait for its driver (each half second, shipped as one row when it runs on
    # another worker): `yes` would otherwise fill the worker's memory and that row.
    prepared = Prepared(command="", cwd=tmp_path, env={}, metrics_file=None)
    trial = TrialAttempt(None, prepared, number=0, timeout_s=None, tag="t")  # type: ignore[arg-type]
    for chunk in range(30):
        trial.add_lines([f"line {chunk * 1000 + i}" for i in range(1000)])
    lines, _records = trial.take()
    left_out = 30_000 - executor.TRIAL_LINES_MAX
    assert lines[0] == f"[stepwise] {left_out} line(s) left out: printed faster than the log is taken"
    assert lines[1:] == [f"line {i}" for i in range(left_out, 30_000)]
    trial.add_lines(["after"])
    assert trial.take()[0] == ["after"]  # the count starts again
