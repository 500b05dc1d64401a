"""A JSON object holding one long list, sent in pieces as its rows are read: the bytes that
`Response(serializer.data)` would render, without holding every row (a step may log a million
metric points)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice

from rest_framework.renderers import JSONRenderer
from rest_framework.serializers import Serializer

from runs.downloads import StreamedResponse

ROWS_PER_PART = 2000


def json_list_stream(
    key: str, first: list, rest: Iterator, item: type[Serializer], *, per_part: int
) -> Iterator[bytes]:
    """`{"<key>": [item, ...]}`: the rows of `first`, then of `rest`, each part `per_part` rows
    serialized by `item` and rendered by the API's own renderer, so number, date and escaping
    formats are the unstreamed response's.

    An error reading `rest` is raised as it comes, and the closing `]}` is then never sent: the
    status (200) and the parts before it are out by then, so the body must not look whole. A
    client reads it as JSON that ends short, never as a shorter list."""
    renderer = JSONRenderer()
    yield b"{" + json.dumps(key).encode() + b":["
    batch = first
    while batch:
        # The renderer writes a list as `[...]`: its brackets dropped, the parts join into one list.
        body = renderer.render(item(batch, many=True).data)[1:-1]
        yield body if batch is first else b"," + body
        batch = list(islice(rest, per_part))
    yield b"]}"


def json_list_response(key: str, rows: Iterable, item: type[Serializer], *, per_part: int) -> StreamedResponse:
    """The streamed response of json_list_stream, its first part read here, in the view, before
    the status goes out: an error in the query itself (the database refusing it, a lost
    connection) is raised through the API's exception handler as any view's error is, not sent
    as a 200 whose body ends short."""
    rows = iter(rows)
    first = list(islice(rows, per_part))
    return StreamedResponse(
        json_list_stream(key, first, rows, item, per_part=per_part), content_type="application/json"
    )
