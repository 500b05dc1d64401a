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


def json_list_stream(key: str, rows: Iterable, item: type[Serializer], *, per_part: int) -> Iterator[bytes]:
    """`{"<key>": [item, ...]}`: each part `per_part` rows serialized by `item` and rendered by the
    API's own renderer, so number, date and escaping formats are the unstreamed response's."""
    renderer = JSONRenderer()
    yield b"{" + json.dumps(key).encode() + b":["
    rows = iter(rows)
    first = True
    while batch := list(islice(rows, per_part)):
        # The renderer writes a list as `[...]`: its brackets dropped, the parts join into one list.
        body = renderer.render(item(batch, many=True).data)[1:-1]
        yield body if first else b"," + body
        first = False
    yield b"]}"


def json_list_response(key: str, rows: Iterable, item: type[Serializer], *, per_part: int) -> StreamedResponse:
    return StreamedResponse(json_list_stream(key, rows, item, per_part=per_part), content_type="application/json")
