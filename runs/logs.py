"""A step's log: the head and tail that the database keeps, and the whole log in the artifact store.

Lines are numbered from 0 across a step's attempts, each attempt's after its predecessor's.
Per attempt, the database keeps the first STEPWISE_LOG_HEAD_LINES lines and a rolling window of
the last STEPWISE_LOG_TAIL_LINES, with an `omitted` LogChunk standing for the lines between:
pages and the log endpoint show a marker there. Past the head, lines that come fast are stored
(and broadcast) at most once a second, only the newest window of them, so a step printing a
million lines costs a few statements a second however fast it prints; lines that come slowly
are stored at the head's pace, so a live page follows them as closely.

Every line also goes, gzipped as it comes, to a file beside the step's folder: out of the
sandbox's reach, since the step owns its folder and could rewrite the file (with a secret the
log masks, say). When the attempt ends, that file becomes its AttemptLog in the artifact store,
if the database left any of its lines out; otherwise the database holds the whole log already.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import math
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from django.db import DatabaseError, transaction

from runs import artifacts, broadcast
from runs.artifact_files import FILE_KIND, ArtifactError
from runs.models import AttemptLog, LogChunk, StepRun

log = logging.getLogger(__name__)

# Lines per row past the head: the unit in which old lines leave the rolling window.
CHUNK_LINES = 500
# Past the head, output is fast when more lines than this wait at a flush (ten a second): it is
# then stored at most once a second, so at most max(10 x FAST_LINES, tail) lines a second reach
# the database and the live page, however fast the step prints.
FAST_LINES = 100
TAIL_STORE_INTERVAL_S = 1.0
# Compression runs in the worker's read loop, at the pace of the step's output: level 1
# compresses typical logs 4 to 25 times, three to four times faster than gzip's default level.
COMPRESS_LEVEL = 1
READ_BLOCK = 1024 * 1024


def omitted_text(count: int) -> str:
    return f"… {count:,} line{'' if count == 1 else 's'} omitted: download the full log"


def full_log_path(workdir: Path) -> Path:
    """Beside the step's folder, not in it: the sandbox gives the step its folder to write."""
    return workdir.with_name(f"{workdir.name}.log.gz")


class AttemptLogRecorder:
    """One attempt's log as its worker records it: every line to a gzip file, the head and the
    newest lines to the database (through `store`, inside the caller's fencing transaction)."""

    def __init__(self, step_run: StepRun, path: Path, *, head: int, tail: int):
        self.step_run = step_run
        self.first_seq = step_run.log_lines
        self.head_end = self.first_seq + head
        self.tail = tail
        # The number the next line gets; everything before `stored_seq` is stored or omitted.
        self.next_seq = self.first_seq
        self.stored_seq = self.first_seq
        # Not stored yet: head lines, then the newest lines past the head (older ones are dropped).
        self.pending: list[str] = []
        # (seq, count) of the rows past the head that the database holds now, oldest first.
        self.tail_rows: deque[tuple[int, int]] = deque()
        self.tail_stored = 0
        self.omitted = 0  # what this attempt's `omitted` row says, once it has one
        self.stored_at = -math.inf
        self.path = path
        self.size = 0
        # The file is made at the first line, which most steps print once their process runs:
        # making it (a fifth of a millisecond on the bench machine's disk) is then off the path
        # from one step to the next, and a step that prints nothing makes none.
        self._raw: BinaryIO | None = None
        self._gzip: gzip.GzipFile | None = None
        self._lost = False

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._raw = self.path.open("wb")
        except OSError as exc:
            self._lose_file(exc)
        else:
            # No name and no time in the header: equal logs are equal files (one artifact).
            self._gzip = gzip.GzipFile(filename="", mode="wb", compresslevel=COMPRESS_LEVEL, fileobj=self._raw, mtime=0)

    def _lose_file(self, exc: OSError) -> None:
        # A full disk costs the whole log, never the step: the database keeps its head and tail.
        log.warning("the whole log of attempt %s of %s is lost: %s", self.step_run.attempt, self.step_run, exc)
        with contextlib.suppress(OSError):
            if self._gzip is not None:
                self._gzip.close()
            if self._raw is not None:
                self._raw.close()
            self.path.unlink(missing_ok=True)
        self._gzip = self._raw = None
        self._lost = True

    # -- lines in ------------------------------------------------------------------------------
    def add(self, lines: list[str]) -> None:
        if not lines:
            return
        if self._gzip is None and not self._lost:
            self._open()
        if self._gzip is not None:
            data = ("\n".join(lines) + "\n").encode()
            try:
                self._gzip.write(data)
            except OSError as exc:
                self._lose_file(exc)
            self.size += len(data)
        self.pending.extend(lines)
        self.next_seq += len(lines)
        # Only the newest `tail` lines past the head can still be stored: memory stays bounded.
        head = self.head_pending()
        excess = len(self.pending) - head - self.tail
        if excess > max(self.tail, CHUNK_LINES):
            del self.pending[head : head + excess]

    def head_pending(self) -> int:
        return max(0, min(len(self.pending), self.head_end - self.stored_seq))

    def due(self, now: float) -> bool:
        """Whether `store` should run now: fast output past the head waits for its interval."""
        head = self.head_pending()
        if head or not self.pending:
            return True
        waiting = self.next_seq - self.stored_seq
        return waiting <= FAST_LINES or now - self.stored_at >= TAIL_STORE_INTERVAL_S

    # -- to the database -----------------------------------------------------------------------
    def store(self, now: float) -> list[dict[str, Any]]:
        """Write what is pending; returns the live messages to send once the transaction commits."""
        sr = self.step_run
        head_count = self.head_pending()
        head, tail = self.pending[:head_count], self.pending[head_count:]
        self.pending = []
        rows: list[LogChunk] = []
        messages: list[dict[str, Any]] = []
        if head:
            rows.append(self._row(self.stored_seq, head))
            messages.append(broadcast.log_payload(sr, seq=self.stored_seq, lines=head))
            self.stored_seq += len(head)
        if self.next_seq > self.stored_seq:
            tail = tail[-self.tail :] if self.tail else []
            tail_seq = self.next_seq - len(tail)
            for start in range(0, len(tail), CHUNK_LINES):
                part = tail[start : start + CHUNK_LINES]
                rows.append(self._row(tail_seq + start, part))
                self.tail_rows.append((tail_seq + start, len(part)))
                self.tail_stored += len(part)
            if tail:
                skipped = tail_seq - self.stored_seq
                messages.append(broadcast.log_payload(sr, seq=tail_seq, lines=tail, skipped=skipped))
            self.stored_seq = self.next_seq
            self.stored_at = now
            self._compact()
        LogChunk.objects.bulk_create(rows)
        return messages

    def _row(self, seq: int, lines: list[str]) -> LogChunk:
        sr = self.step_run
        return LogChunk(step_run=sr, attempt=sr.attempt, seq=seq, line_count=len(lines), text="\n".join(lines))

    def _compact(self) -> None:
        """Drop the rows that fell out of the window (once a row's worth did), and say how many
        lines the `omitted` row stands for. Runs before the new rows are inserted: the `omitted`
        row takes the seq of the head's end, which a dropped row may have had."""
        sr = self.step_run
        dropped_until = None
        if self.tail_stored > self.tail + CHUNK_LINES:
            while self.tail_rows and self.tail_stored - self.tail_rows[0][1] >= self.tail:
                seq, count = self.tail_rows.popleft()
                self.tail_stored -= count
                dropped_until = seq + count
        if dropped_until is not None:
            LogChunk.objects.filter(step_run=sr, omitted=False, seq__gte=self.head_end, seq__lt=dropped_until).delete()
        first_kept = self.tail_rows[0][0] if self.tail_rows else self.next_seq
        omitted = first_kept - self.head_end
        if omitted > 0 and omitted != self.omitted:
            if self.omitted:
                LogChunk.objects.filter(step_run=sr, seq=self.head_end, omitted=True).update(line_count=omitted)
            else:
                LogChunk.objects.create(
                    step_run=sr, attempt=sr.attempt, seq=self.head_end, line_count=omitted, text="", omitted=True
                )
            self.omitted = omitted

    # -- the whole log -------------------------------------------------------------------------
    @property
    def line_count(self) -> int:
        return self.next_seq - self.first_seq

    def archive(self) -> AttemptLog | None:
        """Close the file; store it as the attempt's AttemptLog if the database lacks any of its
        lines (left out, or never stored because the attempt was fenced off). Never raises: the
        head and tail stay in the database whatever happens to the whole log."""
        sr = self.step_run
        if self._gzip is None or self._raw is None:
            return None
        try:
            self._gzip.close()
            self._raw.close()
            kept = min(self.stored_seq, self.head_end) - self.first_seq + self.tail_stored
            if self.line_count <= kept:
                return None
            manifest = artifacts.store_files(self.path, FILE_KIND)
            with transaction.atomic():
                return AttemptLog.objects.create(
                    step_run=sr,
                    attempt=sr.attempt,
                    first_seq=self.first_seq,
                    line_count=self.line_count,
                    size=self.size,
                    artifact=artifacts.register(manifest, FILE_KIND),
                )
        except (ArtifactError, OSError, DatabaseError):
            log.exception("the whole log of attempt %s of %s could not be stored", sr.attempt, sr)
            return None
        finally:
            self.path.unlink(missing_ok=True)


# ---- reading the whole log ---------------------------------------------------------------------


def full_log(step_run: StepRun, *, compressed: bool = False) -> Iterator[bytes]:
    """Every line of every attempt, in order, as text or as gzip (one member per attempt, which
    gzip readers concatenate); streamed from the artifact store and the database, never whole.

    An attempt without an AttemptLog (a worker that died, an older log) comes from the
    database, with a marker where lines were left out."""
    archives = {a.attempt: a for a in AttemptLog.objects.filter(step_run=step_run).select_related("artifact")}
    attempts = set(LogChunk.objects.filter(step_run=step_run).values_list("attempt", flat=True).distinct())
    for attempt in sorted(attempts | set(archives)):
        archive = archives.get(attempt)
        source = _archived(archive, compressed=compressed) if archive else None
        if source is None:
            text = _stored_lines(step_run, attempt)
            source = _gzipped(text) if compressed else text
        yield from source


def _archived(archive: AttemptLog, *, compressed: bool) -> Iterator[bytes] | None:
    """The archive's bytes, or None when it is gone from the store (the database's lines stand in)."""
    try:
        files = artifacts.stored_files(archive.artifact)
        handle = artifacts.open_stored_file(archive.artifact, files[0])
    except (ArtifactError, OSError, IndexError):
        log.warning("the whole log of attempt %s of %s is missing from the store", archive.attempt, archive.step_run)
        return None

    def blocks() -> Iterator[bytes]:
        with handle:
            source = handle if compressed else gzip.GzipFile(fileobj=handle, mode="rb")
            try:
                while block := source.read(READ_BLOCK):
                    yield block
            except (OSError, EOFError, zlib.error):
                # Headers are sent by now: the download ends short, and the server's log says why.
                log.exception("the whole log of attempt %s of %s is damaged", archive.attempt, archive.step_run)

    return blocks()


def _stored_lines(step_run: StepRun, attempt: int) -> Iterator[bytes]:
    rows = (
        LogChunk.objects.filter(step_run=step_run, attempt=attempt)
        .order_by("seq")
        .values_list("text", "line_count", "omitted")
        .iterator(chunk_size=200)
    )
    for text, count, omitted in rows:
        # Only the database's lines are left of this attempt: the marker cannot offer more.
        yield (
            (f"… {count:,} lines omitted: the whole log of attempt {attempt} was not stored" if omitted else text)
            + "\n"
        ).encode()


def _gzipped(blocks: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for block in blocks:
        if out := compressor.compress(block):
            yield out
    yield compressor.flush()
