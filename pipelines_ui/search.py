"""The search box of the list pages, read the same way by each."""

from __future__ import annotations

from django.http import QueryDict


def search_text(params: QueryDict, name: str = "q", *, limit: int = 200) -> str:
    """`?q=` as a filter takes it: stripped, at most `limit` characters (a longer one is no name and
    SQLite refuses a LIKE pattern that long), without NUL (PostgreSQL refuses it in a query)."""
    return params.get(name, "").replace("\x00", "").strip()[:limit]
