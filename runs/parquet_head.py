"""The first rows of a Parquet file, read by a short-lived child process under a memory and time limit.

Why a child: the sizes a Parquet file declares (column chunks, pages, dictionaries) are written by
whoever made it, and pyarrow allocates what a page header declares or a page decompresses to. A file
of a few kilobytes can so make the reader allocate gigabytes; a bound checked inside the page process
would come after the allocation. The child's address space is limited by the kernel (RLIMIT_AS), and
it is killed past a timeout, so the page process only ever holds the rows it gets back.

The child reads the file through its parent (ranged reads over a pipe): it needs no access to the
artifact store, and this module imports only the standard library (and pyarrow in the child), as it
runs as a script: `python -I parquet_head.py BOUNDS`.
"""

from __future__ import annotations

import io
import json
import resource
import struct
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from pyarrow.parquet import FileMetaData

# The child's exit status when it ran out of its memory.
EXIT_MEMORY = 3
STREAM_CHUNK = 1024 * 1024
# Messages from the child on its stdout: a read of (offset, length), or the result as JSON.
READ = b"R"
RESULT = b"J"
READ_REQUEST = struct.Struct(">QQ")
LENGTH = struct.Struct(">Q")


class ChildFailed(Exception):
    """The child returned no result: `reason` is "memory", "timeout" or "stopped"."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def cell(value: object, limit: int) -> str:
    """`value` as text of at most `limit` characters."""
    if isinstance(value, (str, bytes)):
        value = value[: limit + 1]  # before str(): the repr of a large bytes value is up to four times its size
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mb(size: int) -> str:
    return f"{size / 1024 / 1024:,.0f} MB"


# -- the parent's side ------------------------------------------------------------------------


def read_in_child(handle: BinaryIO, bounds: dict[str, int], *, memory: int, timeout: float) -> dict[str, Any]:
    """head(handle, bounds) as run by a child limited to `memory` bytes of address space and `timeout`
    seconds; ChildFailed where it returned nothing."""
    size = handle.seek(0, io.SEEK_END)
    # -I: no PYTHON* variables, user site or current folder; the environment carries no secret to it.
    # The system allocator: mimalloc reserves a gigabyte of address space up front.
    child = subprocess.Popen(
        [sys.executable, "-I", __file__, json.dumps({**bounds, "size": size, "memory": memory})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"ARROW_DEFAULT_MEMORY_POOL": "system"},
    )
    assert child.stdin is not None and child.stdout is not None
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        child.kill()

    timer = threading.Timer(timeout, stop)
    timer.start()
    try:
        result = _serve(handle, child.stdin, child.stdout)
    except (BrokenPipeError, ConnectionResetError, ValueError):
        result = None
    finally:
        timer.cancel()
        child.kill()  # a no-op once it has exited
        status = child.wait()
        child.stdin.close()
        child.stdout.close()
    if result is not None:
        return result
    if timed_out.is_set():
        raise ChildFailed("timeout")
    if status == EXIT_MEMORY:
        raise ChildFailed("memory")
    raise ChildFailed("stopped", f"signal {-status}" if status < 0 else f"exit status {status}")


def _serve(handle: BinaryIO, to_child: BinaryIO, from_child: BinaryIO) -> dict[str, Any] | None:
    """Answer the child's reads until it sends its result (None where it stops first)."""
    while kind := from_child.read(1):
        if kind == RESULT:
            (length,) = LENGTH.unpack(_exactly(from_child, LENGTH.size))
            return json.loads(_exactly(from_child, length))
        if kind != READ:
            return None
        offset, length = READ_REQUEST.unpack(_exactly(from_child, READ_REQUEST.size))
        handle.seek(offset)
        # In chunks, each after its length, then 0: the length asked for is the file's to declare.
        left = length
        while left and (chunk := handle.read(min(STREAM_CHUNK, left))):
            to_child.write(LENGTH.pack(len(chunk)) + chunk)
            left -= len(chunk)
        to_child.write(LENGTH.pack(0))
        to_child.flush()
    return None


def _exactly(stream: BinaryIO, length: int) -> bytes:
    data = stream.read(length)
    if len(data) != length:
        raise ValueError("the child stopped mid-message")
    return data


# -- the child's side -------------------------------------------------------------------------


def head(source: BinaryIO, bounds: dict[str, int]) -> dict[str, Any]:
    """The preview of a Parquet file as {kind, header, rows, message}, within the sizes it declares:
    its metadata and the first row group's columns are read only while those stay under bounds["bytes"]."""
    import pyarrow.parquet as pq  # here: the page process imports this module for its parent side only

    footer = _footer_size(source)
    if footer > bounds["bytes"]:
        return _none(f"its metadata is {mb(footer)}, too large to preview here")
    try:
        metadata = pq.read_metadata(source)
        wanted = metadata.schema.to_arrow_schema().names[: bounds["columns"]]
        names, paths, size = _columns(metadata, wanted, bounds["bytes"])
        if not names:
            return _none(
                f"the first row group is {mb(size)} uncompressed, too large to preview here; download the file"
            )
        # No pre-buffering and a small read buffer: pyarrow would otherwise load each column chunk whole.
        # Text columns stay dictionaries: decoded, one large entry would be copied into every row.
        reader = pq.ParquetFile(
            source, metadata=metadata, pre_buffer=False, buffer_size=bounds["buffer"], read_dictionary=paths
        )
        batch = next(reader.iter_batches(batch_size=bounds["rows"], columns=names, use_threads=False), None)
        # One cell at a time: only one large value is ever held as a Python object.
        rows = (
            []
            if batch is None
            else [[cell(c[i].as_py(), bounds["cell"]) for c in batch.columns] for i in range(batch.num_rows)]
        )
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a hostile file is "not readable"
        return _none(f"not a readable Parquet file: {str(exc)[:200]}")
    message = (
        ""
        if len(names) == len(wanted)
        else (
            f"Only the first {len(names)} columns are shown: the next would bring the first row group to"
            f" {mb(size)} uncompressed, too large to preview here."
        )
    )
    return {"kind": "table", "header": [cell(n, bounds["cell"]) for n in names], "rows": rows, "message": message}


def _none(message: str) -> dict[str, Any]:
    return {"kind": "none", "header": [], "rows": [], "message": message}


def _footer_size(source: BinaryIO) -> int:
    """The length its last 8 bytes declare for the metadata, which pyarrow would read and decode whole
    (0 where the file is too short to hold it: pyarrow reports that one as unreadable)."""
    length = source.seek(0, io.SEEK_END)
    if length < 8:
        return 0
    source.seek(-8, io.SEEK_END)
    size = int.from_bytes(source.read(4), "little")
    source.seek(0)
    return size if size <= length - 8 else 0


def _columns(metadata: FileMetaData, names: list[str], limit: int) -> tuple[list[str], list[str], int]:
    """(the leading `names` whose chunks in the first row group fit `limit`, the paths of their text
    chunks, the size with the first column that does not fit or 0)."""
    if metadata.num_row_groups == 0:
        return names, [], 0
    group = metadata.row_group(0)
    chunks = [group.column(i) for i in range(group.num_columns)]
    kept: list[str] = []
    paths: list[str] = []
    total = 0
    for name in names:
        # A nested column has several chunks, "name.child..."; a dotted top-level name may count a
        # neighbour's chunks too, which errs on the safe side.
        mine = [c for c in chunks if c.path_in_schema == name or c.path_in_schema.startswith(name + ".")]
        total += sum(max(c.total_uncompressed_size, c.total_compressed_size) for c in mine)
        if total > limit:
            return kept, paths, total
        kept.append(name)
        paths += [c.path_in_schema for c in mine if c.physical_type == "BYTE_ARRAY"]
    return kept, paths, 0


class _ParentFile(io.RawIOBase):
    """The file being previewed, read through the parent over stdin/stdout."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        length = min(len(view), max(0, self.size - self.position))
        if not length:
            return 0
        sys.stdout.buffer.write(READ + READ_REQUEST.pack(self.position, length))
        sys.stdout.buffer.flush()
        got = 0
        while chunk_length := LENGTH.unpack(_exactly(sys.stdin.buffer, LENGTH.size))[0]:
            view[got : got + chunk_length] = _exactly(sys.stdin.buffer, chunk_length)
            got += chunk_length
        self.position += got
        return got


def _main(bounds: dict[str, int]) -> int:
    # First, before pyarrow is imported: every allocation past this fails (MemoryError in Python).
    resource.setrlimit(resource.RLIMIT_AS, (bounds["memory"], bounds["memory"]))
    try:
        result = json.dumps(head(_ParentFile(bounds["size"]), bounds)).encode()
    except MemoryError:
        return EXIT_MEMORY
    sys.stdout.buffer.write(RESULT + LENGTH.pack(len(result)) + result)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(json.loads(sys.argv[1])))
