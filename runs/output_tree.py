"""A step output's files as rows of a folder tree: each folder once, before its files, with its total size."""

from __future__ import annotations

from dataclasses import dataclass

MAX_INDENT = 8


@dataclass(frozen=True)
class TreeRow:
    name: str
    # The file's relative path (what the preview and download take); "" for a folder.
    path: str
    depth: int
    size: int
    is_dir: bool = False

    @property
    def indent(self) -> int:
        """The CSS indent class (static/css/data.css has 0..MAX_INDENT): deeper rows align with the deepest."""
        return min(self.depth, MAX_INDENT)


def tree_rows(sizes: dict[str, int], *, limit: int) -> tuple[list[TreeRow], int]:
    """(rows for the first `limit` files in path order, how many files were left out)."""
    paths = sorted(sizes)
    shown, left_out = paths[:limit], max(0, len(paths) - limit)
    totals: dict[tuple[str, ...], int] = {}
    for path in paths:
        parts = tuple(path.split("/"))
        for depth in range(1, len(parts)):
            totals[parts[:depth]] = totals.get(parts[:depth], 0) + sizes[path]
    rows: list[TreeRow] = []
    opened: set[tuple[str, ...]] = set()
    for path in shown:
        parts = tuple(path.split("/"))
        for depth in range(1, len(parts)):
            folder = parts[:depth]
            if folder not in opened:
                opened.add(folder)
                rows.append(TreeRow(name=folder[-1], path="", depth=depth - 1, size=totals[folder], is_dir=True))
        rows.append(TreeRow(name=parts[-1], path=path, depth=len(parts) - 1, size=sizes[path]))
    return rows, left_out
