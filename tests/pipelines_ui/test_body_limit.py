"""An oversize request body is refused before it is read: the ASGI layer on its own, then
daphne serving the real application, spoken to in raw HTTP over a socket."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import select
import socket
import time
import zipfile
from collections.abc import Iterator
from io import BytesIO
from typing import Any
from urllib.parse import urlparse

import pytest
from daphne.http_protocol import HTTPFactory
from daphne.server import Server
from django.test import Client
from django.urls import reverse
from django.utils.crypto import get_random_string
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from pipelines_ui import services
from pipelines_ui.body_limit import (
    ENVELOPE_BYTES,
    BodyLimitMiddleware,
    install_daphne_limit,
    max_body_bytes,
    refusal_text,
)
from pipelines_ui.models import Pipeline
from tests.browser.conftest import ROOT, serve_app
from tests.pipelines_ui.test_uploads import IMPORT_YAML

# --- the ASGI layer, with a fake server ------------------------------------------------

LIMIT = 1000


class FakeApp:
    """Reads the body until its end or a disconnect, then answers 200 (as Django does, in that order)."""

    def __init__(self) -> None:
        self.called = False
        self.received: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        self.called = True
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


def run_async(coroutine) -> None:
    # A thread of its own: a sync Playwright test may have left an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result(timeout=60)


def http_scope(headers: list[tuple[bytes, bytes]]) -> dict:
    return {"type": "http", "method": "POST", "path": "/pipelines/import/", "headers": headers}


def serve(app, scope: dict, pieces: list[bytes]) -> tuple[list[dict], int]:
    """Run `app` on a request whose body arrives in `pieces`; returns what it sent and how many pieces were read."""
    messages = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1} for i, piece in enumerate(pieces)
    ]
    read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        if read == len(messages):
            await asyncio.Event().wait()  # a real server waits for the client here
        read += 1
        return messages[read - 1]

    async def send(message: dict) -> None:
        sent.append(message)

    run_async(asyncio.wait_for(app(scope, receive, send), timeout=5))
    return sent, read


def test_a_declared_length_over_the_limit_is_refused_without_reading_the_body(settings):
    settings.STEPWISE_UPLOAD_MAX_BYTES = 300
    inner = FakeApp()
    app = BodyLimitMiddleware(inner, limit=LIMIT)
    sent, read = serve(app, http_scope([(b"content-length", b"1001")]), [b"x" * 1001])
    assert read == 0
    assert not inner.called
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert sent[1]["body"].decode() == refusal_text(LIMIT)
    assert "over 1000 bytes: Stepwise takes uploads of up to 300 bytes (STEPWISE" in refusal_text(LIMIT)


def test_a_declared_length_at_the_limit_passes_unchanged():
    inner = FakeApp()
    sent, _ = serve(BodyLimitMiddleware(inner, limit=LIMIT), http_scope([(b"content-length", b"1000")]), [b"x" * 1000])
    assert inner.received == [{"type": "http.request", "body": b"x" * 1000, "more_body": False}]
    assert [m.get("status") for m in sent] == [200, None]


def test_a_body_without_length_passes_unchanged_up_to_the_limit():
    inner = FakeApp()
    pieces = [b"a" * 400, b"b" * 600, b""]
    sent, _ = serve(BodyLimitMiddleware(inner, limit=LIMIT), http_scope([]), pieces)
    assert inner.received == [
        {"type": "http.request", "body": b"a" * 400, "more_body": True},
        {"type": "http.request", "body": b"b" * 600, "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}


@pytest.mark.parametrize(
    "headers",
    [[], [(b"transfer-encoding", b"chunked")], [(b"content-length", b"10"), (b"content-length", b"10")]],
    ids=["no-length", "chunked", "two-lengths"],
)
def test_a_body_without_one_length_is_refused_once_past_the_limit(headers):
    inner = FakeApp()
    pieces = [b"a" * 600, b"b" * 600, b"c" * 600, b""]
    sent, read = serve(BodyLimitMiddleware(inner, limit=LIMIT), http_scope(headers), pieces)
    assert read == 2  # nothing is read past the piece that crossed the limit
    # The app got the first piece only, then a disconnect: never more than the limit.
    assert inner.received == [
        {"type": "http.request", "body": b"a" * 600, "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]  # the app's answer is dropped
    assert sent[0]["status"] == 413
    assert sent[1]["body"].decode() == refusal_text(LIMIT)


def test_a_refused_body_reaches_no_view_of_the_real_django_app():
    from django.core.asgi import get_asgi_application

    app = BodyLimitMiddleware(get_asgi_application(), limit=LIMIT)
    scope = {**http_scope([(b"transfer-encoding", b"chunked")]), "query_string": b"", "server": ("testserver", 80)}
    sent, read = serve(app, scope, [b"a" * 600, b"b" * 600, b""])
    assert read == 2
    assert [m.get("status") for m in sent] == [413, None]  # Django itself answers nothing


def test_websockets_pass_straight_through():
    seen = []

    async def inner(scope, receive, send) -> None:
        seen.append((scope, receive, send))

    async def receive() -> dict:
        return {}

    async def send(message: dict) -> None:
        pass

    scope = {"type": "websocket", "headers": [(b"content-length", b"999999")]}
    run_async(BodyLimitMiddleware(inner, limit=LIMIT)(scope, receive, send))
    assert seen == [(scope, receive, send)]


def test_the_limit_leaves_room_for_one_upload_the_other_fields_and_the_envelope(settings):
    settings.STEPWISE_UPLOAD_MAX_BYTES = 20 * 1024 * 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
    assert max_body_bytes() == 41 * 1024 * 1024
    assert refusal_text(max_body_bytes()).splitlines()[2] == (
        "Request body over 41 MiB: Stepwise takes uploads of up to 20 MiB (STEPWISE_UPLOAD_MAX_BYTES). "
        "Go back and choose a smaller file."
    )
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = None  # Django then caps no field: count one more upload's worth
    assert max_body_bytes() == 40 * 1024 * 1024 + ENVELOPE_BYTES


# --- daphne's request on its own, fed bytes ------------------------------------------


class AppQueue(list):
    def put_nowait(self, message: dict) -> None:
        self.append(message)


@pytest.fixture
def daphne_connection(settings) -> tuple[Any, StringTransport, list[AppQueue]]:
    """A connection to daphne's HTTP protocol over a fake transport; the app queues it starts."""
    settings.STEPWISE_UPLOAD_MAX_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    install_daphne_limit()
    server = Server(application=None, endpoints=["tcp:port=0"])  # never run
    server.connections = {}
    started: list[AppQueue] = []

    def create_application(protocol, scope) -> AppQueue:
        started.append(AppQueue())
        return started[-1]

    server.create_application = create_application
    factory = HTTPFactory(server)
    factory.reactor = Clock()
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, started


def chunked_request(body: bytes) -> bytes:
    head = b"POST /pipelines/import/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def test_daphne_refuses_a_declared_length_over_the_limit_at_the_headers(daphne_connection):
    protocol, transport, started = daphne_connection
    limit = 2000 + ENVELOPE_BYTES
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (limit + 1))
    assert transport.value().startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert transport.value().endswith(refusal_text(limit).encode())
    assert transport.disconnecting
    assert started == []


def test_daphne_starts_no_app_for_a_refused_body_whose_end_came_with_it(daphne_connection):
    protocol, transport, started = daphne_connection
    protocol.dataReceived(chunked_request(b"y" * (2000 + ENVELOPE_BYTES + 1)))  # one read, final chunk included
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert transport.disconnecting
    assert started == []


def test_daphne_hands_a_body_at_the_limit_to_the_app_unchanged(daphne_connection):
    protocol, transport, started = daphne_connection
    body = os.urandom(2000 + ENVELOPE_BYTES)
    protocol.dataReceived(chunked_request(body))
    assert transport.value() == b""
    [queue] = started
    assert b"".join(message["body"] for message in queue) == body


# --- daphne serving pipelines_ui.asgi:application -------------------------------------

UPLOAD = 300_000
BODY_LIMIT = 2 * UPLOAD + ENVELOPE_BYTES  # DATA_UPLOAD_MAX_MEMORY_SIZE follows the upload limit
REFUSAL = b"Request body over 1.6 MiB: Stepwise takes uploads of up to 293 KiB (STEPWISE_UPLOAD_MAX_BYTES)."


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory) -> Iterator[tuple[str, int]]:
    """daphne with STEPWISE_UPLOAD_MAX_BYTES=300000; yields its address."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STEPWISE_UPLOAD_MAX_BYTES", str(UPLOAD))
        with serve_app(tmp_path_factory.mktemp("daphne")) as base:
            url = urlparse(base)
            yield url.hostname, url.port


def read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection; fails if it leaves it open."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass  # closing with part of the body unread resets the connection, after the answer
    return data


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_daphne_refuses_a_declared_length_over_the_limit_before_the_body(web):
    with socket.create_connection(web) as sock:
        head = request_head(
            "POST",
            "/pipelines/import/",
            {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(10 * 1024**3)},
        )
        sock.sendall(head + b"--x\r\n")  # of 10 GiB, a few bytes: the rest is never sent
        # Answered and closed with the body still owed: a server waiting for it would never close.
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 413 ")
    assert REFUSAL in response


def test_daphne_refuses_at_once_a_request_that_expects_100_continue(web):
    with socket.create_connection(web) as sock:
        sock.sendall(request_head("POST", "/", {"Content-Length": str(BODY_LIMIT + 1), "Expect": "100-continue"}))
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 413 ")  # not "100 Continue": the client sends nothing more
    assert b"100 Continue" not in response
    assert REFUSAL in response


def test_daphne_refuses_a_chunked_body_once_past_the_limit(web):
    piece = b"%x\r\n" % 65536 + b"y" * 65536 + b"\r\n"
    sent = 0
    deadline = time.monotonic() + 10
    with socket.create_connection(web) as sock:
        sock.sendall(request_head("POST", "/pipelines/import/", {"Transfer-Encoding": "chunked"}))
        # Like a browser: keep sending until the server answers, but never the final chunk.
        while not select.select([sock], [], [], 0.005)[0]:
            assert time.monotonic() < deadline, f"no answer after {sent} bytes of body"
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 65536
        response = read_response(sock)
    assert sent > BODY_LIMIT
    assert response.startswith(b"HTTP/1.1 413 ")
    assert REFUSAL in response


def signed_in_headers(user) -> tuple[dict[str, str], str]:
    """Headers of `user`'s session with a CSRF secret of our own, and that secret for the form."""
    client = Client()
    client.force_login(user)
    token = get_random_string(32)
    return {"Cookie": f"sessionid={client.cookies['sessionid'].value}; csrftoken={token}"}, token


def multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[str, bytes]:
    boundary = "stepwise-" + get_random_string(16)
    body = b""
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def post_import(web, alice, team, data: bytes) -> bytes:
    headers, token = signed_in_headers(alice)
    content_type, body = multipart({"csrfmiddlewaretoken": token, "team": str(team.pk)}, "proj.zip", data)
    headers.update({"Content-Type": content_type, "Content-Length": str(len(body)), "Connection": "close"})
    with socket.create_connection(web) as sock:
        sock.sendall(request_head("POST", reverse("pipeline_import"), headers) + body)
        return read_response(sock, timeout=30)


def project_zip(code: bytes) -> bytes:
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pipeline.yml", IMPORT_YAML)
        zf.writestr("src/a.py", code)
    return buf.getvalue()


@pytest.mark.django_db(transaction=True)
def test_an_upload_under_the_limit_is_imported_through_daphne(web, alice, team, compute):
    code = ("# " + get_random_string(200_000) + "\n").encode()  # over Twisted's 100 kB in memory
    data = project_zip(code)
    assert 100_000 < len(data) < UPLOAD
    response = post_import(web, alice, team, data)
    assert response.startswith(b"HTTP/1.1 302 "), response[:2000]
    pipeline = Pipeline.objects.get()
    assert re.search(rb"\r\nLocation: %s\r\n" % pipeline.get_absolute_url().encode(), response)
    assert services.version_spec_with_files(pipeline.latest_version).step_files("hello") == {"a.py": code}


@pytest.mark.django_db(transaction=True)
def test_the_import_view_still_words_a_refusal_under_the_body_limit(web, alice, team, compute):
    # Over STEPWISE_UPLOAD_MAX_BYTES but under the body limit: the view's own message, in its form.
    data = project_zip(os.urandom(UPLOAD))
    assert UPLOAD < len(data) < BODY_LIMIT
    response = post_import(web, alice, team, data)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"proj.zip: larger than 300000 bytes" in response
    assert not Pipeline.objects.exists()


def test_a_chunked_post_under_the_limit_gets_djangos_own_answer(web):
    # Django reads no form from a body without Content-Length, so its answer is the CSRF failure.
    piece = b"%x\r\n" % 50_000 + b"z" * 50_000 + b"\r\n"
    with socket.create_connection(web) as sock:
        sock.sendall(request_head("POST", "/accounts/login/", {"Transfer-Encoding": "chunked", "Connection": "close"}))
        sock.sendall(piece * 20 + b"0\r\n\r\n")  # 1 MB: over Twisted's 100 kB in memory, under the limit
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 403 ")
    assert b"CSRF verification failed" in response


def test_a_get_is_untouched(web):
    with socket.create_connection(web) as sock:
        sock.sendall(request_head("GET", "/static/vendor/jquery/jquery.min.js", {"Connection": "close"}))
        response = read_response(sock)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == (ROOT / "static/vendor/jquery/jquery.min.js").read_bytes()
    with socket.create_connection(web) as sock:
        sock.sendall(request_head("GET", "/accounts/login/", {"Connection": "close"}))
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b'name="password"' in response
