"""A table's rows grouped by `partition_keys`: Azure ML's other way of forming mini-batches.

Every row whose key columns hold the same values goes to one mini-batch, however many rows that
is; mini_batch_size plays no part. Plain data in, plain data out, so the driver's reading of the
table (pandas or the csv module) stays apart from the grouping.
"""

from __future__ import annotations

from collections.abc import Sequence


def missing_keys(columns: Sequence[str], keys: Sequence[str]) -> list[str]:
    """The partition keys that name no column of the table, in the order written."""
    present = set(columns)
    return [key for key in keys if key not in present]


def partition_rows(key_values: Sequence[tuple[object, ...]]) -> list[tuple[tuple[object, ...], list[int]]]:
    """(values, row indices) per distinct tuple of key values, given each row's tuple.

    Partitions come in the order their first row appears and keep their rows in file order,
    so the mini-batches, and the rows appended to `append_row_to`, are the same on every run.
    """
    groups: dict[tuple[object, ...], list[int]] = {}
    for index, values in enumerate(key_values):
        groups.setdefault(tuple(_blank_if_nan(v) for v in values), []).append(index)
    return list(groups.items())


def _blank_if_nan(value: object) -> object:
    # pandas reads an empty cell as NaN, and NaN != NaN would give each such row its own
    # partition; the csv module reads it as "", which groups. Both group as one blank here.
    return "" if isinstance(value, float) and value != value else value


def partition_label(keys: Sequence[str], values: tuple[object, ...]) -> str:
    """How a partition is named in the log: `store=1001, brand=tropicana`."""
    return ", ".join(f"{key}={value}" for key, value in zip(keys, values, strict=True))
