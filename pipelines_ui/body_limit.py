"""Refuse an oversize request body before it is read.

Django's ASGIHandler spools the whole body to a temporary file before any view runs, and
daphne (Twisted underneath) reads the whole body into its own temporary file before it even
starts the ASGI application. So a 10 GB POST would fill the disk before the views' upload
checks said no. Two guards, both answering 413 with the same text:

- `BodyLimitMiddleware`, an ASGI layer around Django: refuses on Content-Length without
  reading the body, and counts a body without one (chunked) as it arrives, passing Django
  at most the limit. This is what refuses early under a server that streams the body to
  the application (uvicorn, hypercorn).
- `install_daphne_limit()`: the same two checks inside daphne's request, as the headers
  and each piece of the body arrive, since under daphne the ASGI layer runs too late.

The limit is a ceiling on what any view could accept, not the upload limit itself: the
views' checks stay the authority for exact limits and their messages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from daphne import http_protocol
from django.conf import settings

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The multipart envelope: a boundary line and part headers (a few hundred bytes with a long
# file name) for each of at most DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) parts.
ENVELOPE_BYTES = 1024 * 1024


def max_body_bytes() -> int:
    """The largest request body a view could accept.

    One uploaded file (the views refuse one over STEPWISE_UPLOAD_MAX_BYTES), the other
    fields (Django refuses more than DATA_UPLOAD_MAX_MEMORY_SIZE of them: a step page posts
    its code files as text beside a code zip) and the envelope. Anything smaller would turn
    requests the views accept today into a bare 413.
    """
    upload = int(settings.STEPWISE_UPLOAD_MAX_BYTES)
    fields = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return upload + (upload if fields is None else int(fields)) + ENVELOPE_BYTES


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def refusal_text(limit: int) -> str:
    upload = int(settings.STEPWISE_UPLOAD_MAX_BYTES)
    return (
        f"413 Content Too Large\n\n"
        f"Request body over {_size(limit)}: Stepwise takes uploads of up to {_size(upload)} "
        f"(STEPWISE_UPLOAD_MAX_BYTES). Go back and choose a smaller file.\n"
    )


def _refusal_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        # The rest of the body is never read, so the connection cannot carry another request.
        (b"connection", b"close"),
    ]


async def _send_refusal(send: Send, limit: int) -> None:
    body = refusal_text(limit).encode()
    await send({"type": "http.response.start", "status": 413, "headers": _refusal_headers(body)})
    await send({"type": "http.response.body", "body": body})


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The declared length, or None when there is none or it is not one plain number."""
    values = [value for name, value in headers if name.lower() == b"content-length"]
    if len(values) != 1 or not (values[0].strip().isascii() and values[0].strip().isdigit()):
        return None
    return int(values[0])


class BodyLimitMiddleware:
    """ASGI: 413 for an HTTP request body over `limit` bytes (default `max_body_bytes()`)."""

    def __init__(self, app: ASGIApp, *, limit: int | None = None) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = max_body_bytes() if self.limit is None else self.limit
        length = _content_length(scope["headers"])
        if length is not None:
            if length > limit:
                logger.warning(
                    "413 for %s %s: Content-Length %d over %d", scope["method"], scope["path"], length, limit
                )
                await _send_refusal(send, limit)
                return
            # The server delivers no more than the declared length: nothing to count.
            await self.app(scope, receive, send)
            return
        counted = _CountedRequest(scope, receive, send, limit)
        await self.app(scope, counted.receive, counted.send)


class _CountedRequest:
    """One request without a Content-Length: its body counted on its way to the app."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        self.scope = scope
        self.server_receive = receive
        self.server_send = send
        self.limit = limit
        self.received = 0
        self.response_started = False
        self.refused = False
        self.answered = False  # the 413 is ours: the app's own response, if any, is dropped

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.server_receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received <= self.limit:
            return message
        # The app never sees this piece: to it the client went away (Django then answers nothing).
        self.refused = True
        scope = self.scope
        logger.warning("413 for %s %s: body over %d bytes", scope["method"], scope["path"], self.limit)
        if not self.response_started:
            self.answered = True
            await _send_refusal(self.server_send, self.limit)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self.server_send(message)


class LimitedDaphneRequest(http_protocol.WebRequest):
    """daphne's request, refusing an oversize body as its headers and pieces arrive."""

    _refused = False
    _body_limit = 0
    _body_received = 0

    def gotLength(self, length: int | None) -> None:
        self._body_limit = max_body_bytes()
        if length is not None and length > self._body_limit:
            self._refuse(f"Content-Length {length}")
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        # Only a body without Content-Length can get here past the limit (Twisted stops at the length).
        self._body_received += len(data)
        if self._body_received > self._body_limit:
            self._refuse("body")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # The end of a refused body can come in the same read as the piece that crossed the limit.
        if not self._refused:
            super().requestReceived(command, path, version)

    def _refuse(self, what: str) -> None:
        self._refused = True
        channel = self.channel
        client = self.getClientAddress()
        logger.warning(
            "413 for a request from %s: %s over %d bytes", getattr(client, "host", client), what, self._body_limit
        )
        # Twisted answers "Expect: 100-continue" just after gotLength: the client gets the 413 instead.
        self.requestHeaders.removeHeader(b"Expect")
        # Whatever else arrives is dropped unparsed until the connection closes.
        channel.rawDataReceived = lambda data: None
        body = refusal_text(self._body_limit).encode()
        head = b"HTTP/1.1 413 Content Too Large\r\n"
        head += b"".join(name + b": " + value + b"\r\n" for name, value in _refusal_headers(body))
        channel.transport.write(head + b"\r\n" + body)
        channel.loseConnection()


def install_daphne_limit() -> None:
    """Make daphne build its requests as `LimitedDaphneRequest` (daphne has no setting for it).

    daphne's HTTPFactory names the module's `WebRequest` each time it builds a connection's
    protocol, so replacing that name is enough; daphne is pinned in requirements.txt and
    tests/pipelines_ui/test_body_limit.py checks the result against a real daphne.
    """
    http_protocol.WebRequest = LimitedDaphneRequest
