"""Splitting a parallel job's data into mini-batches, as `mini_batch_size` says."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Azure ML's defaults: 10 files of a folder, about 1 MB of a table's rows.
DEFAULT_FILES = "10"
DEFAULT_ROWS = "1mb"

_SIZE = re.compile(r"\s*(\d+)\s*(b|kb|mb|gb)?\s*", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


@dataclass(frozen=True)
class BatchSize:
    """A count of items (files or rows), or a number of bytes of them."""

    count: int = 0
    bytes: int = 0


def parse_mini_batch_size(text: object) -> BatchSize:
    """`10` or `"10"`: ten items; `"10kb"`, `"1mb"`: that many bytes. Raises ValueError saying why not."""
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"mini_batch_size must be a count like 10 or a size like '1mb', got {text!r}")
    match = _SIZE.fullmatch(str(text))
    if match is None:
        raise ValueError(f"mini_batch_size must be a count like 10 or a size like '1mb', got {text!r}")
    number, unit = int(match.group(1)), match.group(2)
    if number < 1:
        raise ValueError(f"mini_batch_size must be at least 1, got {text!r}")
    if unit is None:
        return BatchSize(count=number)
    return BatchSize(bytes=number * _UNITS[unit.lower()])


def split(sizes: Sequence[int], size: BatchSize) -> list[range]:
    """Consecutive index ranges over items of the given byte sizes; each holds at least one item,
    so an item larger than a byte limit gets a mini-batch of its own."""
    total = len(sizes)
    if size.count:
        return [range(start, min(start + size.count, total)) for start in range(0, total, size.count)]
    batches: list[range] = []
    start, filled = 0, 0
    for index, item in enumerate(sizes):
        if index > start and filled + item > size.bytes:
            batches.append(range(start, index))
            start, filled = index, 0
        filled += item
    if start < total:
        batches.append(range(start, total))
    return batches


def folder_files(root: Path) -> list[Path]:
    """Every file under `root`, in a stable order (sorted relative paths), hidden files included
    as Azure ML includes them."""
    return sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())


def row_size(values: Sequence[object]) -> int:
    """About what the row takes in its CSV file: its values, the commas and the line break."""
    return sum(len(str(v)) for v in values) + len(values)
