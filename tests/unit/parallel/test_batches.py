from __future__ import annotations

import pytest

from stepwise.parallel.batches import BatchSize, folder_files, parse_mini_batch_size, row_size, split


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (10, BatchSize(count=10)),
        ("10", BatchSize(count=10)),
        (" 3 ", BatchSize(count=3)),
        ("10kb", BatchSize(bytes=10 * 1024)),
        ("1MB", BatchSize(bytes=1024**2)),
        ("2 gb", BatchSize(bytes=2 * 1024**3)),
        ("512b", BatchSize(bytes=512)),
    ],
)
def test_mini_batch_size_is_a_count_or_a_size(text, expected):
    assert parse_mini_batch_size(text) == expected


@pytest.mark.parametrize("text", [0, "0", "0kb", -1, "ten", "1.5mb", "10tb", "", True, 2.5, None, ["1"]])
def test_a_bad_mini_batch_size_says_what_it_should_be(text):
    with pytest.raises(ValueError, match="mini_batch_size must"):
        parse_mini_batch_size(text)


def test_split_by_count_keeps_order_and_a_short_last_batch():
    assert split([1] * 7, BatchSize(count=3)) == [range(0, 3), range(3, 6), range(6, 7)]
    assert split([1] * 20, BatchSize(count=1)) == [range(i, i + 1) for i in range(20)]
    assert split([], BatchSize(count=5)) == []


def test_split_by_size_fills_up_to_the_limit():
    assert split([4, 4, 4, 4, 4], BatchSize(bytes=10)) == [range(0, 2), range(2, 4), range(4, 5)]
    assert split([10, 10], BatchSize(bytes=10)) == [range(0, 1), range(1, 2)]


def test_an_item_larger_than_the_limit_gets_a_batch_of_its_own():
    assert split([1, 50, 1, 1], BatchSize(bytes=10)) == [range(0, 1), range(1, 2), range(2, 4)]


def test_folder_files_are_every_file_in_a_stable_order(tmp_path):
    (tmp_path / "b").mkdir()
    for rel in ("b/2.txt", "a.txt", "b/1.txt", ".hidden"):
        (tmp_path / rel).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in folder_files(tmp_path)] == [
        ".hidden",
        "a.txt",
        "b/1.txt",
        "b/2.txt",
    ]


def test_row_size_counts_values_separators_and_line_break():
    assert row_size(["ab", 1, "xyz"]) == 2 + 1 + 3 + 3
