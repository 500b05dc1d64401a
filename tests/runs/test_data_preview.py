"""The Parquet preview stays within a memory bound, whatever the file declares or holds.

The declared-size bounds are measured where the reader runs (`in_process`: pyarrow's pool records
what it allocates); the child's kernel limit with files that lie about those sizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runs import data_preview, parquet_head
from runs.data_assets import data_create_from_path
from runs.data_preview import MAX_CELL, MAX_ROWS, preview

pytestmark = pytest.mark.django_db

LIMIT = 1024 * 1024  # a small MAX_PARQUET_BYTES keeps the files small and the tests fast


@pytest.fixture(autouse=True)
def small_limit(monkeypatch):
    monkeypatch.setattr(data_preview, "MAX_PARQUET_BYTES", LIMIT, raising=False)
    # Each test reads its files itself: an earlier test's kept preview would skip the reader.
    monkeypatch.setattr(data_preview, "_parquet_heads", type(data_preview._parquet_heads)())


@pytest.fixture
def in_process(monkeypatch):
    """The reader run by the test process, as the child runs it, so that its pool can be recorded."""
    monkeypatch.setattr(
        parquet_head, "read_in_child", lambda handle, bounds, **limits: parquet_head.head(handle, bounds)
    )


@contextmanager
def recorded() -> Iterator[pa.MemoryPool]:
    """A pool that records the peak of what pyarrow allocates inside the block."""
    default = pa.default_memory_pool()
    proxy = pa.proxy_memory_pool(default)
    pa.set_memory_pool(proxy)
    try:
        yield proxy
    finally:
        pa.set_memory_pool(default)


def parquet_version(team, tmp_path: Path, table: pa.Table, **options):
    path = tmp_path / "src" / "t.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path, **options)
    return data_create_from_path(team=team, name="big", path=path.parent, type_="uri_folder")


def test_a_small_file_previews_in_full(team, tmp_path):
    table = pa.table({"name": [f"row-{i}" for i in range(MAX_ROWS + 5)], "score": range(MAX_ROWS + 5)})
    shown = preview(parquet_version(team, tmp_path, table))
    assert shown.kind == "table" and shown.header == ["name", "score"] and shown.message == ""
    assert shown.rows[0] == ["row-0", "0"] and len(shown.rows) == MAX_ROWS


def test_one_huge_compressed_cell_is_not_decompressed(team, tmp_path, in_process):
    # 8 MB of one byte: a few kilobytes on disk with zstd, one page pyarrow would decompress whole.
    table = pa.table({"blob": pa.array([b"a" * (8 * LIMIT)], pa.binary())})
    version = parquet_version(team, tmp_path, table, compression="zstd", use_dictionary=False)
    with recorded() as pool:
        shown = preview(version)
    assert shown.kind == "none"
    assert shown.message == "the first row group is 8 MB uncompressed, too large to preview here; download the file"
    assert pool.max_memory() < LIMIT


def test_columns_past_the_bound_are_left_out(team, tmp_path, in_process):
    rows = 200_000  # 1.6 MB of int64 per column, in one row group
    table = pa.table({"id": pa.array(range(rows), pa.int32()).cast(pa.int8(), safe=False), "wide": range(rows)})
    version = parquet_version(team, tmp_path, table, row_group_size=rows)
    with recorded() as pool:
        shown = preview(version)
    assert shown.kind == "table" and shown.header == ["id"] and len(shown.rows) == MAX_ROWS
    assert shown.message.startswith(
        "Only the first 1 columns are shown: the next would bring the first row group to 2 MB"
    )
    assert pool.max_memory() < LIMIT


def test_a_huge_metadata_footer_is_not_read(team, tmp_path):
    path = tmp_path / "src" / "t.parquet"
    path.parent.mkdir()
    path.write_bytes(b"PAR1" + b"\0" * (2 * LIMIT) + (2 * LIMIT).to_bytes(4, "little") + b"PAR1")
    shown = preview(data_create_from_path(team=team, name="big", path=path.parent, type_="uri_folder"))
    assert shown.kind == "none" and shown.message == "its metadata is 2 MB, too large to preview here"


def test_a_large_dictionary_entry_is_not_copied_into_every_row(team, tmp_path, in_process):
    # One 512 KB text in every row: a dictionary page of 512 KB, 10 MB if copied into 20 rows.
    table = pa.table({"id": range(MAX_ROWS), "text": ["é" * (LIMIT // 4)] * MAX_ROWS})
    version = parquet_version(team, tmp_path, table, compression="zstd")
    with recorded() as pool:
        shown = preview(version)
    assert shown.kind == "table" and shown.message == "" and len(shown.rows) == MAX_ROWS
    assert shown.rows[-1] == [str(MAX_ROWS - 1), "é" * (MAX_CELL - 1) + "…"]
    assert pool.max_memory() < 2 * LIMIT  # the decompressed page and the dictionary made of it, once


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def lying_version(team, tmp_path: Path, size: int):
    """One zstd page of `size` zero bytes (a few kilobytes on disk) whose footer declares its chunk 1 KB."""
    path = tmp_path / "src" / "t.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"blob": [bytes(size)]}), path, compression="zstd", use_dictionary=False)
    data = path.read_bytes()
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    declared = pq.read_metadata(path).row_group(0).column(0).total_uncompressed_size
    # Thrift's compact i64: a zigzag varint. 1 KB padded with continuation bytes to the same length,
    # which the decoder accepts, so that no offset in the file moves.
    honest = varint(declared * 2)
    lie = bytearray(varint(1024 * 2))
    lie[-1] |= 0x80
    lie += b"\x80" * (len(honest) - len(lie) - 1) + b"\x00"
    assert honest in data[footer:]
    path.write_bytes(data[:footer] + data[footer:].replace(honest, bytes(lie)))
    assert pq.read_metadata(path).row_group(0).column(0).total_uncompressed_size == 1024
    return data_create_from_path(team=team, name="lying", path=path.parent, type_="uri_folder")


def test_a_file_lying_about_its_sizes_is_read_by_a_child_held_to_its_memory(team, tmp_path, monkeypatch):
    # pyarrow and Python take about 330 MB of address space: 128 MB more is enough for a small file,
    # not for a page of 128 MB.
    monkeypatch.setattr(data_preview, "PARQUET_MEMORY", 448 * 1024 * 1024)
    version = lying_version(team, tmp_path, 128 * 1024 * 1024)
    with recorded() as pool:
        shown = preview(version)
    assert shown.kind == "none" and shown.rows == []
    assert shown.message == ("reading it takes more than 448 MB of memory, too much to preview here; download the file")
    assert pool.max_memory() < LIMIT
    table = pa.table({"name": [f"row-{i}" for i in range(MAX_ROWS + 5)], "score": range(MAX_ROWS + 5)})
    assert preview(parquet_version(team, tmp_path / "honest", table)).rows[0] == ["row-0", "0"]


def test_a_child_past_its_time_is_stopped(team, tmp_path, monkeypatch):
    monkeypatch.setattr(data_preview, "PARQUET_TIMEOUT", 0.01)
    shown = preview(parquet_version(team, tmp_path, pa.table({"score": range(10)})))
    assert shown.kind == "none"
    assert shown.message == "reading it takes more than 0.01 s, too long to preview here; download the file"


@pytest.mark.parametrize(
    "table",
    [
        pa.table({"name": [f"row-{i}" for i in range(MAX_ROWS + 5)], "score": range(MAX_ROWS + 5)}),
        pa.table({"id": pa.array(range(200_000), pa.int32()).cast(pa.int8(), safe=False), "wide": range(200_000)}),
        pa.table({"id": range(MAX_ROWS), "text": ["é" * (LIMIT // 4)] * MAX_ROWS}),
        pa.table({"nested": [{"a": 1, "b": [1, 2]}] * 3, "when": pa.array([0, 1, None], pa.timestamp("ms"))}),
        pa.table({"empty": pa.array([], pa.string())}),
    ],
)
def test_the_child_shows_what_the_reader_shows(team, tmp_path, monkeypatch, table):
    version = parquet_version(team, tmp_path, table, row_group_size=200_000)
    shown = preview(version)
    monkeypatch.setattr(
        parquet_head, "read_in_child", lambda handle, bounds, **limits: parquet_head.head(handle, bounds)
    )
    assert shown == preview(version) and shown.kind == "table"


def test_a_file_read_once_is_previewed_again_without_a_child(team, tmp_path, monkeypatch):
    """A stored file's content never changes: its preview is kept, failures are not."""
    version = parquet_version(team, tmp_path, pa.table({"a": [1, 2, 3]}))
    started = []
    read = parquet_head.read_in_child
    monkeypatch.setattr(parquet_head, "read_in_child", lambda *a, **k: started.append(1) or read(*a, **k))
    first = preview(version)
    assert first.kind == "table" and first.rows == [["1"], ["2"], ["3"]]
    assert preview(version) == first and len(started) == 1
    monkeypatch.setattr(data_preview, "MAX_ROWS", 2)  # other bounds, another preview
    assert preview(version).rows == [["1"], ["2"]] and len(started) == 2

    def stopped(*a, **k):
        started.append(1)
        raise parquet_head.ChildFailed("timeout")

    monkeypatch.setattr(parquet_head, "read_in_child", stopped)
    monkeypatch.setattr(data_preview, "MAX_ROWS", 1)
    assert preview(version).kind == "none" and preview(version).kind == "none" and len(started) == 4
