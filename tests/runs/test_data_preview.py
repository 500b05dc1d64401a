"""The Parquet preview stays within a memory bound, whatever the file declares or holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runs import data_preview
from runs.data_assets import data_create_from_path
from runs.data_preview import MAX_CELL, MAX_ROWS, preview

pytestmark = pytest.mark.django_db

LIMIT = 1024 * 1024  # a small MAX_PARQUET_BYTES keeps the files small and the tests fast


@pytest.fixture(autouse=True)
def small_limit(monkeypatch):
    monkeypatch.setattr(data_preview, "MAX_PARQUET_BYTES", LIMIT, raising=False)


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
    path.parent.mkdir()
    pq.write_table(table, path, **options)
    return data_create_from_path(team=team, name="big", path=path.parent, type_="uri_folder")


def test_a_small_file_previews_in_full(team, tmp_path):
    table = pa.table({"name": [f"row-{i}" for i in range(MAX_ROWS + 5)], "score": range(MAX_ROWS + 5)})
    shown = preview(parquet_version(team, tmp_path, table))
    assert shown.kind == "table" and shown.header == ["name", "score"] and shown.message == ""
    assert shown.rows[0] == ["row-0", "0"] and len(shown.rows) == MAX_ROWS


def test_one_huge_compressed_cell_is_not_decompressed(team, tmp_path):
    # 8 MB of one byte: a few kilobytes on disk with zstd, one page pyarrow would decompress whole.
    table = pa.table({"blob": pa.array([b"a" * (8 * LIMIT)], pa.binary())})
    version = parquet_version(team, tmp_path, table, compression="zstd", use_dictionary=False)
    with recorded() as pool:
        shown = preview(version)
    assert shown.kind == "none"
    assert shown.message == "the first row group is 8 MB uncompressed, too large to preview here; download the file"
    assert pool.max_memory() < LIMIT


def test_columns_past_the_bound_are_left_out(team, tmp_path):
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


def test_a_large_dictionary_entry_is_not_copied_into_every_row(team, tmp_path):
    # One 512 KB text in every row: a dictionary page of 512 KB, 10 MB if copied into 20 rows.
    table = pa.table({"id": range(MAX_ROWS), "text": ["é" * (LIMIT // 4)] * MAX_ROWS})
    version = parquet_version(team, tmp_path, table, compression="zstd")
    with recorded() as pool:
        shown = preview(version)
    assert shown.kind == "table" and shown.message == "" and len(shown.rows) == MAX_ROWS
    assert shown.rows[-1] == [str(MAX_ROWS - 1), "é" * (MAX_CELL - 1) + "…"]
    assert pool.max_memory() < 2 * LIMIT  # the decompressed page and the dictionary made of it, once
