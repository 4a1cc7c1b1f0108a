"""HTTP details a real client meets: HTTP/1.0 keep-alive, strict chunk headers, half-close."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator

import pytest

from tests.apps.http_apps import HELLO
from tests.helpers import Server, http_get, running
from tests.helpers.wire import Client, exchange, parse_responses

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

WSGI = "tests.apps.http_apps:wsgi_app"
ASGI = "tests.apps.http_apps:asgi_app"
BOTH = pytest.mark.parametrize("app", [WSGI, ASGI], ids=["wsgi", "asgi"])
ONE = ("--workers", "1")


# -- HTTP/1.0 keep-alive -------------------------------------------------------------------


@BOTH
def test_http10_keep_alive_is_kept_alive(app: str) -> None:
    """HTTP/1.0 with Connection: keep-alive (ApacheBench -k): the answer says keep-alive,
    has a Content-Length, and the next request on the connection is served."""
    request = b"GET /hello HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        for _ in range(3):
            client.send(request)
            reply = client.expect_response()
            assert (reply.status, reply.body) == (200, HELLO)
            assert reply.header("connection") == "keep-alive", reply
            assert reply.header("content-length") == str(len(HELLO))
        # A plain HTTP/1.0 request on the same connection ends it, as it asks.
        client.send(b"GET /hello HTTP/1.0\r\n\r\n")
        last = client.expect_response()
        assert (last.status, last.body, last.closes) == (200, HELLO, True)
        client.expect_close()


@BOTH
def test_http10_keep_alive_with_unknown_length_closes(app: str) -> None:
    """A streamed answer without Content-Length cannot be chunked for HTTP/1.0: the close
    ends the body, and the response says so."""
    request = b"GET /stream?n=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        client.send(request)
        reply = client.expect_response()
        assert reply.status == 200 and reply.body == b"chunk0\nchunk1\nchunk2\n"
        assert reply.closes and reply.header("transfer-encoding") is None
        client.expect_close()


@BOTH
def test_http10_without_keep_alive_still_closes(app: str) -> None:
    """Plain HTTP/1.0, or keep-alive together with close: answered, then closed."""
    with running(app, *ONE, ready=1) as server:
        for extra in (b"", b"Connection: keep-alive, close\r\n"):
            data = exchange(server, b"GET /hello HTTP/1.0\r\n" + extra + b"\r\n")
            (reply,) = parse_responses(data, ["GET"])
            assert (reply.status, reply.body, reply.closes) == (200, HELLO, True)


# -- chunk headers -------------------------------------------------------------------------

CHUNKED_HEAD = b"POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
HELLO_DIGEST = {"len": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}


@pytest.fixture(scope="module", params=[WSGI, ASGI], ids=["wsgi", "asgi"])
def shared(request: pytest.FixtureRequest, http_driver: tuple[str, ...]) -> Iterator[Server]:
    """One server per app for the table-driven cases below."""
    with running(request.param, *ONE, ready=1) as server:
        yield server


@pytest.mark.parametrize(
    "chunk",
    [
        pytest.param(b"5 \r\n", id="space-after-size"),
        pytest.param(b"5\t\r\n", id="tab-after-size"),
        pytest.param(b"5;a\x01b\r\n", id="control-in-ext-name"),
        pytest.param(b"5;a=b\x7f\r\n", id="del-in-ext-value"),
        pytest.param(b'5;a="b\x00c"\r\n', id="nul-in-quoted-value"),
        pytest.param(b"5;a=b\rc\r\n", id="bare-cr-in-ext"),
        pytest.param(b"5;\r\n", id="ext-without-name"),
        pytest.param(b"5;a=b \r\n", id="space-after-ext"),
    ],
)
def test_malformed_chunk_header_is_400(shared: Server, chunk: bytes) -> None:
    """RFC 9112 7.1: no whitespace after a chunk size without an extension, no control
    characters in an extension (h11 lets both through; proxies may read them otherwise)."""
    data = exchange(shared, CHUNKED_HEAD + chunk + b"hello\r\n0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 "), data[:300]
    assert b"illegal chunk header" in data, data[:300]
    assert b'"len": 5' not in data  # the app did not answer it


@pytest.mark.parametrize(
    "chunk",
    [
        pytest.param(b"5\r\n", id="plain"),
        pytest.param(b"5;name=value\r\n", id="token-value"),
        pytest.param(b'5;name="quoted \\" value;x"\r\n', id="quoted-value"),
        pytest.param(b"5;a;b=c\r\n", id="two-extensions"),
        pytest.param(b"5 ;name = value\r\n", id="bws-around-ext"),
        pytest.param(b"0005\r\n", id="leading-zeros"),
    ],
)
def test_valid_chunk_extensions_are_read(shared: Server, chunk: bytes) -> None:
    """chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )."""
    with Client.connect(shared) as client:
        client.send(CHUNKED_HEAD + chunk + b"hello\r\n0;last=1\r\n\r\n")
        reply = client.expect_response("POST")
        assert reply.status == 200, reply
        assert {k: v for k, v in reply.json().items() if k in HELLO_DIGEST} == HELLO_DIGEST


# -- half-close ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "requests",
    [
        pytest.param(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", id="get"),
        pytest.param(b"GET /sleep?s=0.3 HTTP/1.1\r\nHost: x\r\n\r\n", id="slow-app"),
        pytest.param(
            b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", id="post"
        ),
        pytest.param(
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /sleep?s=0.1 HTTP/1.1\r\nHost: x\r\n\r\n",
            id="pipelined",
        ),
    ],
)
def test_half_closed_client_gets_its_responses(shared: Server, requests: bytes) -> None:
    """A client that sends whole requests and then shuts down its sending side
    (shutdown(SHUT_WR)) gets every response, then the close."""
    methods = [line.split(b" ")[0] for line in requests.split(b"\r\n") if b" HTTP/1.1" in line]
    with Client.connect(shared) as client:
        client.send(requests)
        client.sock.shutdown(socket.SHUT_WR)
        for method in methods:
            reply = client.expect_response(method)
            assert reply.status == 200, reply
        client.expect_close()


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(
            b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello", id="body"
        ),
        pytest.param(b"GET /hello HTTP/1.1\r\nHost: x\r\n", id="head"),
    ],
)
def test_half_close_mid_request_is_a_disconnect(shared: Server, partial: bytes) -> None:
    """EOF inside a body or a head: no answer (the app, if it runs, sees the client gone);
    the connection closes at once."""
    with Client.connect(shared) as client:
        client.send(partial)
        client.sock.shutdown(socket.SHUT_WR)
        assert client.response("POST") is None
        client.expect_close(within=2)
    assert http_get(shared.url, "/hello").content == HELLO


# -- blank lines and a lone CR between requests ------------------------------------------


def test_lone_cr_after_a_request_is_refused_on_both_drivers() -> None:
    """Blank lines (CRLF) before a request are skipped; a lone CR after a request is a bad
    request line: h11 answers the request, then 400 and a close. llhttp skips the CR in
    silence, so the httptools driver hands it to h11 for the same answer."""
    request = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    with running(ASGI, *ONE, ready=1) as server:
        with Client.connect(server) as client:
            client.send(b"\r\n" + request + b"\r\n")
            assert client.expect_response().status == 200
            client.send(request)
            assert client.expect_response().status == 200
        with Client.connect(server) as client:
            client.send(request + b"\r")
            assert client.expect_response().status == 200
            assert client.expect_response().status == 400
            client.expect_close()


def test_a_method_llhttp_does_not_know_after_a_chunked_request() -> None:
    """An extension method (any token is a method) pipelined after a chunked request in
    the same read is served. llhttp refuses methods it does not know, so the httptools
    driver reads the chunked body itself and hands the head after it to h11."""
    first = b"POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"3;ext=1\r\n0\r\n\r\n" + b"0\r\n" + b"X-Trailer: 1\r\n\r\n"  # data: 0 CR LF
    second = b"FROB /scope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"
    with running(ASGI, *ONE, ready=1) as server, Client.connect(server) as client:
        client.send(first + body + second)
        assert client.expect_response().status == 200
        reply = client.expect_response()
        assert reply.status == 200
        assert b'"method": "FROB"' in reply.body


def test_framing_headers_in_trailers_get_h11s_answer_across_reads() -> None:
    """A Content-Length in the trailer section is a plain trailer to h11 (it checks the
    value, not the place); llhttp refuses it. The httptools driver reads the whole trailer
    section, even when it comes in two writes, asks h11, and then serves the request
    pipelined after it. A malformed value is a 400 on both drivers."""
    head = b"POST /scope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
    second = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    with running(ASGI, *ONE, ready=1) as server:
        with Client.connect(server) as client:
            client.send(head + b"Content-Len")
            assert not client.readable(0.2), "answered before the trailer section ended"
            client.send(b"gth: 5\r\n\r\n" + second)
            assert client.expect_response().status == 200
            assert client.expect_response().status == 200
        with Client.connect(server) as client:
            client.send(head + b"Content-Length: five\r\n\r\n")
            assert client.expect_response().status == 400
            client.expect_close()
