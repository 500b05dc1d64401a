"""An `mltable` folder as a parallel job's table: the MLTable file's paths and read_delimited,
what is refused, and the driver's batches over it with and without pandas."""

from __future__ import annotations

import builtins
import textwrap
from pathlib import Path

import pytest

from stepwise.parallel import driver
from stepwise.parallel.driver import DriverError, make_batches
from stepwise.parallel.mltable import Delimited, is_mltable, read_mltable

MLTABLE = """\
    type: mltable
    paths:
      - file: ./b.csv
      - pattern: ./part_*.csv
    transformations:
      - read_delimited:
          delimiter: ";"
          header: all_files_same_headers
          encoding: utf8
          infer_column_types: true
"""


def table(tmp_path: Path, mltable: str = MLTABLE) -> Path:
    folder = tmp_path / "sales"
    folder.mkdir()
    (folder / "MLTable").write_text(textwrap.dedent(mltable))
    (folder / "b.csv").write_text("store;qty\nb;1\nb;2\n")
    (folder / "part_1.csv").write_text("store;qty\na;3\n")
    (folder / "part_2.csv").write_text("store;qty\na;4\nb;5\n")
    return folder


def test_the_paths_are_read_in_order_with_the_read_delimited_options(tmp_path):
    folder = table(tmp_path)
    assert is_mltable(folder) and not is_mltable(tmp_path)
    assert read_mltable(folder) == Delimited(
        files=(folder / "b.csv", folder / "part_1.csv", folder / "part_2.csv"), delimiter=";", encoding="utf-8"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("- file: ./b.csv", "- file: ../b.csv", "must be a relative path inside the MLTable's folder"),
        ("- file: ./b.csv", "- file: azureml://datastores/x/paths/b.csv", "is remote"),
        ("- file: ./b.csv", "- file: ./missing.csv", "file './missing.csv' is not in the MLTable's folder"),
        ("- pattern: ./part_*.csv", "- pattern: ./*.parquet", "pattern './*.parquet' matches no file"),
        ("- read_delimited:", "- read_parquet:", "transformation 'read_parquet' is not supported"),
        ("header: all_files_same_headers", "header: some", "header must be one of"),
        ("encoding: utf8", "encoding: ebcdic", "encoding must be one of"),
        ('delimiter: ";"', "delimiter: ab", "delimiter must be one character"),
        ("infer_column_types: true", "skip_rows: 2", "option 'skip_rows' is not supported"),
    ],
)
def test_what_cannot_be_read_is_named(tmp_path, old, new, message):
    text = MLTABLE.replace(old, new)
    assert text != MLTABLE
    with pytest.raises(ValueError, match=message.replace("*", r"\*").replace(".", r"\.")):
        read_mltable(table(tmp_path, text))


def test_rows_of_every_file_are_one_table_split_by_size_and_by_keys(tmp_path):
    folder = table(tmp_path)
    batches = make_batches(folder, "2")
    assert [b.label for b in batches] == ["rows 1-2", "rows 3-4", "rows 5-5"]
    assert list(batches[1].payload["qty"]) == [3, 4]
    by_store = make_batches(folder, "", ["store"])
    assert [(b.label, b.items) for b in by_store] == [("store=b", 3), ("store=a", 2)]


def test_a_uri_folders_mltable_file_is_one_of_its_files_not_a_table(tmp_path):
    folder = table(tmp_path)
    batches = make_batches(folder, "2", files=True)
    assert [[Path(p).name for p in b.payload] for b in batches] == [["MLTable", "b.csv"], ["part_1.csv", "part_2.csv"]]


@pytest.fixture
def no_pandas(monkeypatch):
    """The step's environment without pandas: the driver falls back to the csv module."""
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)


def test_without_pandas_the_rows_are_dicts(tmp_path, no_pandas):
    batches = make_batches(table(tmp_path), "", ["store"])
    assert [(b.label, b.items) for b in batches] == [("store=b", 3), ("store=a", 2)]
    assert batches[1].payload == [{"store": "a", "qty": "3"}, {"store": "a", "qty": "4"}]


def records_of(table_: object) -> list[dict]:
    return table_ if isinstance(table_, list) else table_.to_dict("records")  # type: ignore[attr-defined]


def check_headers(folder: Path) -> None:
    (folder / "1.csv").write_text("k,v\nx,1\n")
    (folder / "2.csv").write_text("y,2\n")
    first, _ = driver._read_table(Delimited(files=(folder / "1.csv", folder / "2.csv"), header="from_first_file"))
    assert [str(r["k"]) for r in records_of(first)] == ["x", "y"]
    bare, _ = driver._read_table(Delimited(files=(folder / "2.csv",), header="no_header"))
    assert [str(r["Column1"]) for r in records_of(bare)] == ["y"]


def test_from_first_file_and_no_header_with_pandas(tmp_path):
    check_headers(tmp_path)


def test_from_first_file_and_no_header_without_pandas(tmp_path, no_pandas):
    check_headers(tmp_path)


def test_partition_keys_on_a_plain_folder_say_what_they_need(tmp_path):
    (tmp_path / "a.txt").write_text("1")
    with pytest.raises(DriverError, match="must be a CSV file or an MLTable folder"):
        make_batches(tmp_path, "", ["store"])
