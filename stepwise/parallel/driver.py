"""The command of a `type: parallel` step: `python -m stepwise.parallel.driver ... -- PROGRAM_ARGUMENTS`.

It splits the input data into mini-batches and hands them to `instance_count *
max_concurrency_per_instance` worker processes. Each worker imports the entry script, calls its
`init()` once, then its `run(mini_batch)` per mini-batch: a list of file paths for a folder, a
pandas DataFrame (a list of dict rows where pandas is not installed) for a tabular file. The rows
run() returns are appended to the `append_row_to` output in mini-batch order. A mini-batch whose
run() raises, times out or kills its worker is retried up to max_retries times; what still fails
counts against the thresholds (tally.py), and the step fails with a summary once they are passed.

Progress goes to the step's log ("mini-batch 7/20 done") and to its metrics
(`minibatches_done`, `minibatches_failed`), so the run page shows it while the step runs.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import multiprocessing
import os
import sys
import time
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from stepwise.parallel.batches import (
    DEFAULT_FILES,
    DEFAULT_ROWS,
    folder_files,
    parse_mini_batch_size,
    row_size,
    split,
)
from stepwise.parallel.mltable import Delimited, is_mltable, read_mltable, single_csv
from stepwise.parallel.tables import missing_keys, partition_label, partition_rows
from stepwise.parallel.tally import Failure, Tally
from stepwise.tracking import log_metric

# Azure ML's name for the file the rows go to when append_row_to names a folder.
APPEND_ROW_FILE = "parallel_run_step.txt"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# How often a busy worker is checked for its mini-batch's timeout.
POLL_S = 0.5

log = logging.getLogger("stepwise.parallel")


class DriverError(Exception):
    """The job cannot run at all (no such entry script, an unreadable input): the step fails with this."""


@dataclass
class Batch:
    index: int
    label: str
    items: int
    payload: object


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The driver's options and, after `--`, the program arguments the entry script sees as sys.argv."""
    program: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, program = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog="stepwise.parallel.driver")
    parser.add_argument("--input-data", required=True)
    parser.add_argument("--entry-script", required=True)
    # input_data is a uri_folder: its files are the items, an MLTable file among them too. Without
    # it (an mltable, a uri_file, a version saved before the flag), an MLTable file makes a table.
    parser.add_argument("--files", action="store_true")
    parser.add_argument("--mini-batch-size", default="")
    parser.add_argument("--partition-key", dest="partition_keys", action="append", default=[])
    parser.add_argument("--append-row-to", default="")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--max-concurrency-per-instance", type=int, default=1)
    parser.add_argument("--error-threshold", type=int, default=-1)
    parser.add_argument("--mini-batch-error-threshold", type=int, default=-1)
    parser.add_argument("--max-retries", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=60)
    parser.add_argument("--logging-level", default="INFO", choices=LEVELS)
    return parser.parse_args(argv), program


# -- mini-batches ---------------------------------------------------------------------------


def make_batches(
    data: Path, mini_batch_size: str, partition_keys: Sequence[str] = (), *, files: bool = False
) -> list[Batch]:
    """A folder's files by count (or bytes), or a table's rows (a CSV file, or a folder with an
    MLTable file, unless `files`: a uri_folder's): by size, or by partition keys."""
    if partition_keys:
        return _partitions(data, partition_keys)
    if data.is_dir() and (files or not is_mltable(data)):
        files = folder_files(data)
        ranges = split([p.stat().st_size for p in files], parse_mini_batch_size(mini_batch_size or DEFAULT_FILES))
        batches = []
        for i, r in enumerate(ranges):
            chunk = [str(p) for p in files[r.start : r.stop]]
            names = [Path(p).relative_to(data).as_posix() for p in chunk]
            label = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
            batches.append(Batch(i, label, len(chunk), chunk))
        return batches
    size = parse_mini_batch_size(mini_batch_size or DEFAULT_ROWS)
    table, rows = _read_table(_table_source(data))
    ranges = split([row_size(values) for values in rows], size)
    return [Batch(i, f"rows {r.start + 1}-{r.stop}", len(r), _rows_of(table, r)) for i, r in enumerate(ranges)]


def _table_source(data: Path) -> Delimited:
    if is_mltable(data):
        try:
            return read_mltable(data)
        except ValueError as exc:
            raise DriverError(f"input_data {data.name}: {exc}") from None
    if data.is_file():
        return single_csv(data)
    raise DriverError(f"input_data {data} is neither a folder nor a file")


def _partitions(data: Path, keys: Sequence[str]) -> list[Batch]:
    if data.is_dir() and not is_mltable(data):
        raise DriverError(
            f"partition_keys group a table's rows: input_data {data} must be a CSV file or an MLTable folder, "
            "not a folder of files"
        )
    source = _table_source(data)
    table, _rows = _read_table(source)
    columns = _columns(table)
    missing = missing_keys(columns, keys)
    if missing:
        raise DriverError(
            f"partition_keys {', '.join(missing)} not among the columns of {data.name} ({', '.join(columns)})"
        )
    if isinstance(table, list):
        key_values = [tuple(row[k] for k in keys) for row in table]
    else:
        key_values = list(table[list(keys)].itertuples(index=False, name=None))  # type: ignore[index]
    return [
        Batch(i, partition_label(keys, values), len(rows), _pick_rows(table, rows))
        for i, (values, rows) in enumerate(partition_rows(key_values))
    ]


def _columns(table: object) -> list[str]:
    if isinstance(table, list):
        return list(table[0]) if table else []
    return [str(c) for c in table.columns]  # type: ignore[attr-defined]


def _pick_rows(table: object, rows: list[int]) -> object:
    if isinstance(table, list):
        return [table[i] for i in rows]
    return table.iloc[rows]  # type: ignore[attr-defined]


def _read_table(source: Delimited) -> tuple[object, list[list[object]]]:
    """(the table, its rows as value lists for sizing): a DataFrame where pandas is importable.
    Several files are one table, their rows in file order."""
    try:
        import pandas  # noqa: PLC0415 - optional: only in environments that have it
    except ImportError:
        records = _csv_records(source)
        return records, [list(r.values()) for r in records]
    frames = []
    for index, path in enumerate(source.files):
        has_header = _has_header(source.header, index)
        frame = pandas.read_csv(path, sep=source.delimiter, encoding=source.encoding, header=0 if has_header else None)
        if not has_header:
            names = frames[0].columns if frames else [f"Column{n + 1}" for n in range(len(frame.columns))]
            frame.columns = list(names)[: len(frame.columns)]
        frames.append(frame)
    table = pandas.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return table, [list(row) for row in table.itertuples(index=False)]


def _has_header(header: str, index: int) -> bool:
    """Whether the file at `index` starts with a header line: `from_first_file` has only the first
    file's, `no_header` none (columns are then Column1, Column2, ... as Azure ML names them)."""
    if header == "no_header":
        return False
    return header != "from_first_file" or index == 0


def _csv_records(source: Delimited) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    columns: list[str] | None = None
    for index, path in enumerate(source.files):
        with path.open(newline="", encoding=source.encoding) as handle:
            rows = [row for row in csv.reader(handle, delimiter=source.delimiter) if row]
        if _has_header(source.header, index) and rows:
            header, rows = rows[0], rows[1:]
            columns = header if columns is None or source.header != "all_files_same_headers" else columns
            names = header
        else:
            names = columns or [f"Column{n + 1}" for n in range(len(rows[0]) if rows else 0)]
            columns = columns or names
        records += [dict(zip(names, row, strict=False)) for row in rows]
    return records


def _rows_of(table: object, r: range) -> object:
    if isinstance(table, list):
        return table[r.start : r.stop]
    return table.iloc[r.start : r.stop]  # type: ignore[attr-defined]


# -- worker processes -----------------------------------------------------------------------


def result_lines(result: object) -> list[str]:
    """run()'s rows as lines of the append_row_to file: a DataFrame's rows space-separated as
    Azure ML writes them, a list's items one a line (dicts as JSON)."""
    if result is None:
        raise TypeError("run() returned None: return a list or a pandas DataFrame")
    if hasattr(result, "itertuples"):
        return [" ".join(str(v) for v in row) for row in result.itertuples(index=False)]  # type: ignore[attr-defined]
    if isinstance(result, str | bytes) or not hasattr(result, "__iter__"):
        raise TypeError(f"run() returned a {type(result).__name__}: return a list or a pandas DataFrame")
    lines = []
    for item in result:  # type: ignore[attr-defined]
        text = json.dumps(item, default=str) if isinstance(item, dict) else str(item)
        lines.append(text.replace("\n", " "))
    return lines


def _load_entry_script(path: Path) -> object:
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise AttributeError(f"{path.name} has no run(mini_batch) function")
    return module


def _serve(conn: Connection, entry_script: str, program: list[str], level: str) -> None:
    """One worker process: init() once, then run() for each mini-batch it is sent."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    sys.argv = [entry_script, *program]
    try:
        module = _load_entry_script(Path(entry_script).resolve())
        init = getattr(module, "init", None)
        if callable(init):
            init()
    except BaseException:
        conn.send(("init_failed", -1, traceback.format_exc()))
        return
    while True:
        message = conn.recv()
        if message is None:
            break
        index, payload = message
        try:
            lines = result_lines(module.run(payload))  # type: ignore[attr-defined]
        except BaseException as exc:
            conn.send(("failed", index, (f"{type(exc).__name__}: {exc}", traceback.format_exc())))
        else:
            conn.send(("done", index, lines))
        sys.stdout.flush()
    shutdown = getattr(module, "shutdown", None)
    if callable(shutdown):
        shutdown()


class Worker:
    def __init__(self, ctx: multiprocessing.context.BaseContext, entry_script: str, program: list[str], level: str):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, entry_script, program, level), daemon=True)  # type: ignore[attr-defined]
        self.proc.start()
        child.close()
        self.batch: Batch | None = None
        self.attempt = 0
        self.started = 0.0

    def give(self, batch: Batch, attempt: int) -> bool:
        """Send it a mini-batch; False if it has already exited (its failed init() may be why)."""
        try:
            self.conn.send((batch.index, batch.payload))
        except OSError:
            return False
        self.batch, self.attempt, self.started = batch, attempt, time.monotonic()
        return True

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.kill()


# -- the job ---------------------------------------------------------------------------------


class Job:
    def __init__(self, args: argparse.Namespace, program: list[str], batches: list[Batch]):
        self.args = args
        self.program = program
        self.batches = batches
        self.processes = max(1, args.instance_count) * max(1, args.max_concurrency_per_instance)
        self.tally = Tally(len(batches), args.error_threshold, args.mini_batch_error_threshold)
        self.lines: dict[int, list[str]] = {}
        self.stop_reason = ""

    def run(self) -> None:
        ctx = multiprocessing.get_context("fork")
        pending = deque((batch, 0) for batch in self.batches)
        count = min(self.processes, len(self.batches))
        workers = [Worker(ctx, self.args.entry_script, self.program, self.args.logging_level) for _ in range(count)]
        try:
            while (pending or any(w.batch for w in workers)) and not self.stop_reason:
                for worker in workers:
                    # A worker that has already exited is not given it, so that is not an attempt;
                    # what ended it (a failed init(), say) is read below.
                    if worker.batch is None and pending and worker.give(*pending[0]):
                        pending.popleft()
                wait([w.conn for w in workers] + [w.proc.sentinel for w in workers], timeout=POLL_S)
                for i, worker in enumerate(workers):
                    retry = self._check(worker)
                    if retry is not None:
                        pending.append(retry)
                    if worker.batch is None and not worker.proc.is_alive() and not self.stop_reason:
                        # A worker killed for a timeout, or one that died: a fresh one runs init() again.
                        worker.kill()
                        workers[i] = Worker(ctx, self.args.entry_script, self.program, self.args.logging_level)
        finally:
            for worker in workers:
                if self.stop_reason or not worker.proc.is_alive():
                    worker.kill()
                else:
                    worker.stop()

    def _check(self, worker: Worker) -> tuple[Batch, int] | None:
        """Handle what the worker reported, or its death or timeout; a mini-batch to retry, if any."""
        batch = worker.batch
        message = None
        if not worker.conn.closed and worker.conn.poll():
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                pass  # it died: seen below once it has exited
        if message is not None:
            kind, index, body = message
            if kind == "init_failed":
                print(body, end="", flush=True)
                last = body.strip().splitlines()[-1] if body.strip() else "failed"
                self.stop_reason = f"init() of {self.args.entry_script} failed: {last}"
                return None
            assert batch is not None and batch.index == index
            worker.batch = None
            if kind == "done":
                self._succeeded(batch, body)
                return None
            short, trace = body
            print(trace, end="", flush=True)
            return self._attempt_failed(batch, worker.attempt, short)
        if batch is None:
            return None
        if not worker.proc.is_alive():
            worker.batch = None
            return self._attempt_failed(batch, worker.attempt, f"its worker process exited ({worker.proc.exitcode})")
        if time.monotonic() - worker.started > self.args.timeout:
            worker.batch = None
            worker.kill()
            return self._attempt_failed(batch, worker.attempt, f"timed out after {self.args.timeout}s")
        return None

    def _succeeded(self, batch: Batch, lines: list[str]) -> None:
        self.lines[batch.index] = lines
        failure = self.tally.succeeded(batch.index, batch.label, items=batch.items, results=len(lines))
        if failure is None:
            print(f"mini-batch {batch.index + 1}/{len(self.batches)} done ({batch.label}): {len(lines)} results")
        self._progress(failure)

    def _attempt_failed(self, batch: Batch, attempt: int, reason: str) -> tuple[Batch, int] | None:
        total = len(self.batches)
        if attempt < self.args.max_retries:
            print(
                f"mini-batch {batch.index + 1}/{total} ({batch.label}) failed on try {attempt + 1} "
                f"of {self.args.max_retries + 1}: {reason}; retrying",
                flush=True,
            )
            return batch, attempt + 1
        failure = self.tally.failed(batch.index, batch.label, items=batch.items, reason=reason)
        self._progress(failure)
        return None

    def _progress(self, failure: Failure | None) -> None:
        if failure is not None:
            print(f"{failure}: mini-batch failed", flush=True)
            log_metric("minibatches_failed", len(self.tally.failures), step=self.tally.done)
        log_metric("minibatches_done", self.tally.done, step=self.tally.done)
        sys.stdout.flush()
        exceeded = self.tally.exceeded()
        if exceeded and not self.stop_reason:
            named = "; ".join(str(f) for f in self.tally.failures[:3])
            more = len(self.tally.failures) - 3
            self.stop_reason = f"{exceeded}: {named}" + (f" and {more} more" if more > 0 else "")

    def write_rows(self) -> Path | None:
        if not self.args.append_row_to:
            return None
        target = Path(self.args.append_row_to)
        if target.is_dir():
            target = target / APPEND_ROW_FILE
        with target.open("w", encoding="utf-8") as handle:
            for index in sorted(self.lines):
                for line in self.lines[index]:
                    handle.write(line + "\n")
        return target

    def summary(self) -> str:
        t = self.tally
        ok = t.done - len(t.failures)
        text = f"parallel job: {ok} of {t.total} mini-batches succeeded, {len(t.failures)} failed"
        if t.done < t.total:
            text += f", {t.total - t.done} not run"
        text += f"; {t.results} results, {t.failed_items} failed items"
        for failure in t.failures:
            text += f"\n  failed: {failure}"
        return text


def main(argv: list[str] | None = None) -> int:
    args, program = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.logging_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        entry = Path(args.entry_script)
        if entry.is_absolute() or not entry.resolve().is_relative_to(Path.cwd().resolve()):
            raise DriverError(f"entry_script {args.entry_script} is outside the code folder")
        if not entry.is_file():
            raise DriverError(f"entry_script {args.entry_script} is not in the code folder")
        batches = make_batches(Path(args.input_data), args.mini_batch_size, args.partition_keys, files=args.files)
    except (DriverError, ValueError, OSError, csv.Error) as exc:
        print(f"parallel job cannot start: {exc}", file=sys.stderr)
        return 2
    job = Job(args, program, batches)
    print(
        f"parallel job: {len(batches)} mini-batches, {min(job.processes, len(batches))} worker processes, "
        f"entry script {args.entry_script}",
        flush=True,
    )
    log.debug("mini-batches: %s", [b.label for b in batches])
    job.run()
    written = job.write_rows()
    print(job.summary())
    if written is not None:
        print(f"{job.tally.results} rows appended to {written.name}")
    if job.stop_reason:
        print(f"parallel job failed: {job.stop_reason}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
