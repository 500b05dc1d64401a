"""A data version's preview: CSV and Parquet head as a table, text head,
images as thumbnails. Every read is bounded (bytes, rows, columns, cell length), whatever the file
holds; the page escapes what it shows, and CSV downloads neutralise formula-looking cells.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO

from runs import artifacts, parquet_head
from runs.artifact_files import ArtifactError
from runs.models import Artifact, DataVersion
from runs.parquet_head import cell, mb

MAX_READ_BYTES = 64 * 1024
MAX_ROWS = 20
MAX_COLUMNS = 50
MAX_CELL = 200
MAX_TEXT_LINES = 200
MAX_LISTED = 200
MAX_IMAGE_BYTES = 2 * 1024 * 1024
# Raster formats a browser shows as <img> only; SVG is script-capable, so it is previewed as text.
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
TEXT_SUFFIXES = {".txt", ".md", ".json", ".yml", ".yaml", ".log", ".py", ".svg", ".xml", ".html", ".tsv", ".jsonl"}
# The csv module reads a line whole before it splits it: one line of a few gigabytes (no newline,
# or millions of small cells) would be held by the page process. Past this, a download stops.
MAX_CSV_LINE = 16 * 1024 * 1024  # characters
# pyarrow decompresses a Parquet page whole, even for 20 rows: a few kilobytes of zstd can hold one
# cell of gigabytes. The first row group's columns are previewed only while the sizes their metadata
# declare (compressed and uncompressed) stay under this.
MAX_PARQUET_BYTES = 64 * 1024 * 1024
PARQUET_READ_BUFFER = 64 * 1024
# What a file declares may lie: it is read by a child process the kernel holds to this address space
# (pyarrow and Python take about 330 MB of it) and that is killed past this time (runs/parquet_head.py).
PARQUET_MEMORY = 1024 * 1024 * 1024
PARQUET_TIMEOUT = 5.0
# Spreadsheet programs run a cell starting with these as a formula (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Preview:
    kind: str  # table | text | image | none
    file: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    text: str = ""
    truncated: bool = False
    message: str = ""


def version_files(version: DataVersion) -> list[str]:
    try:
        return artifacts.stored_files(version.artifact)
    except (ArtifactError, OSError):
        return []


def _cell(value: object) -> str:
    return cell(value, MAX_CELL)


def _head(handle: BinaryIO) -> tuple[bytes, bool]:
    data = handle.read(MAX_READ_BYTES + 1)
    return data[:MAX_READ_BYTES], len(data) > MAX_READ_BYTES


def _csv(rel: str, data: bytes, cut: bool) -> Preview:
    text = data.decode("utf-8", errors="replace")
    if cut:
        # The last line may be cut in the middle: leave it out.
        text = text.rsplit("\n", 1)[0]
    delimiter = "\t" if rel.lower().endswith(".tsv") else ","
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            rows.append([_cell(c) for c in row[:MAX_COLUMNS]])
            if len(rows) > MAX_ROWS:
                break
    except csv.Error as exc:
        return Preview(kind="none", file=rel, message=f"not readable as CSV: {exc}")
    if not rows:
        return Preview(kind="text", file=rel, text="(empty file)")
    return Preview(kind="table", file=rel, header=rows[0], rows=rows[1 : MAX_ROWS + 1], truncated=cut)


# The previews of the newest Parquet files read, by content and bounds: each read costs a child
# process (about 0.3 s, its pyarrow import), and a stored file's content never changes. At most
# PARQUET_CACHED previews of MAX_ROWS x MAX_COLUMNS cells of MAX_CELL characters (~20 MB).
PARQUET_CACHED = 100
_parquet_heads: OrderedDict[tuple, dict] = OrderedDict()
_parquet_heads_lock = threading.Lock()


def _parquet(artifact: Artifact, rel: str, handle: BinaryIO) -> Preview:
    bounds = {
        "bytes": MAX_PARQUET_BYTES,
        "buffer": PARQUET_READ_BUFFER,
        "rows": MAX_ROWS,
        "columns": MAX_COLUMNS,
        "cell": MAX_CELL,
    }
    key = (artifact.sha256, rel, *bounds.values(), PARQUET_MEMORY, PARQUET_TIMEOUT)
    with _parquet_heads_lock:
        head = _parquet_heads.get(key)
        if head is not None:
            _parquet_heads.move_to_end(key)
            return Preview(file=rel, **head)
    try:
        head = parquet_head.read_in_child(handle, bounds, memory=PARQUET_MEMORY, timeout=PARQUET_TIMEOUT)
    except parquet_head.ChildFailed as exc:
        message = {
            "memory": f"reading it takes more than {mb(PARQUET_MEMORY)} of memory, too much to preview here",
            "timeout": f"reading it takes more than {PARQUET_TIMEOUT:g} s, too long to preview here",
        }.get(exc.reason, f"too large or malformed to preview here (the reader stopped: {exc.detail})")
        return Preview(kind="none", file=rel, message=f"{message}; download the file")
    with _parquet_heads_lock:  # a failure above is not kept: a timeout may pass on a quieter server
        _parquet_heads[key] = head
        while len(_parquet_heads) > PARQUET_CACHED:
            _parquet_heads.popitem(last=False)
    return Preview(file=rel, **head)


def preview(version: DataVersion, rel: str | None = None) -> Preview:
    """The preview of one file of the version (default: the first one worth showing)."""
    return artifact_preview(version.artifact, version_files(version), rel, what="this version")


def artifact_preview(artifact: Artifact, files: list[str], rel: str | None = None, *, what: str) -> Preview:
    """The preview of one of `files` (the artifact's, as listed by the caller), or of the first worth showing."""
    if not files:
        return Preview(kind="none", message=f"the files of {what} are missing from the store")
    if rel is None:
        rel = next((f for f in files if PurePosixPath(f).suffix.lower() in (".csv", ".tsv", ".parquet")), files[0])
    elif rel not in files:
        return Preview(kind="none", message=f"no such file in {what}")
    suffix = PurePosixPath(rel).suffix.lower()
    try:
        with artifacts.open_stored_file(artifact, rel) as handle:
            if suffix in IMAGE_TYPES:
                size = handle.seek(0, io.SEEK_END)
                if size > MAX_IMAGE_BYTES:
                    return Preview(kind="none", file=rel, message="an image too large for a thumbnail: download it")
                return Preview(kind="image", file=rel)
            if suffix == ".parquet":
                return _parquet(artifact, rel, handle)
            data, cut = _head(handle)
    except (ArtifactError, OSError) as exc:
        return Preview(kind="none", file=rel, message=f"cannot read the file: {exc}")
    if suffix in (".csv", ".tsv"):
        return _csv(rel, data, cut)
    if suffix not in TEXT_SUFFIXES and b"\x00" in data[:8192]:
        return Preview(kind="none", file=rel, message="a binary file: download it to look inside")
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    return Preview(kind="text", file=rel, text="\n".join(lines[:MAX_TEXT_LINES]), truncated=cut or len(lines) > 200)


def neutralise(cell: str) -> str:
    """A cell a spreadsheet would run as a formula, made plain text by a leading apostrophe."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def safe_csv_rows(handle: BinaryIO, *, delimiter: str = ",") -> Iterator[str]:
    """The CSV re-written line by line with formula-looking cells neutralised (streamed, any size)."""
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline="")
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    for row in csv.reader(_bounded_lines(text), delimiter=delimiter):
        writer.writerow([neutralise(c) for c in row])
        yield out.getvalue()
        out.seek(0)
        out.truncate()


def _bounded_lines(text: io.TextIOBase) -> Iterator[str]:
    """The lines of `text`; csv.Error (as for a cell over csv's field limit) at one over MAX_CSV_LINE."""
    while line := text.readline(MAX_CSV_LINE):
        if len(line) == MAX_CSV_LINE and not line.endswith(("\n", "\r")):
            raise csv.Error(f"a line longer than {MAX_CSV_LINE:,} characters")
        yield line
