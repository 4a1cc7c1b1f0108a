"""HTTP/1.1 behaviour of a real gunrunner server, seen through real clients.

Most cases run against the WSGI and the ASGI app of tests/apps/http_apps.py (they answer
the same paths alike). Clients: httpx, raw sockets, and the h11-framed client of
tests/helpers/wire.py for exact framing.
"""

from __future__ import annotations

import email.utils
import hashlib
import socket
import time
from datetime import datetime, timezone
from typing import Any

import h11
import httpx
import pytest

from tests.apps.http_apps import HELLO
from tests.helpers import Server, running, wait_until
from tests.helpers.wire import (
    Client,
    Reply,
    exchange,
    parse_responses,
    read_head,
)

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

WSGI = "tests.apps.http_apps:wsgi_app"
ASGI = "tests.apps.http_apps:asgi_app"
BOTH = pytest.mark.parametrize("app", [WSGI, ASGI], ids=["wsgi", "asgi"])
# The path that echoes the request as the app saw it: environ or scope, as JSON.
ECHO = {WSGI: "/environ", ASGI: "/scope"}
ONE = ("--workers", "1")
TWO = ("--workers", "2")


def seen(app: str, reply: Reply) -> dict[str, Any]:
    """The request as the echo route saw it, in one shape for WSGI and ASGI."""
    data = reply.json()
    if app == WSGI:
        return {
            "method": data["REQUEST_METHOD"],
            "query": data["QUERY_STRING"],
            "protocol": data["SERVER_PROTOCOL"],
            "client_port": int(data["REMOTE_PORT"]),
            "body": data["body"],
        }
    return {
        "method": data["method"],
        "query": data["query_string"],
        "protocol": "HTTP/" + data["http_version"],
        "client_port": data["client"][1],
        "body": data["body"],
    }


def digest(data: bytes) -> dict[str, Any]:
    return {"len": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def line_body(size: int) -> bytes:
    """About `size` bytes of numbered lines of varied length, a few longer than 1000 bytes."""
    lines = []
    total = 0
    number = 0
    while total < size:
        filler = b"x" * (3000 if number % 997 == 0 else number % 120)
        line = b"%07d %s\n" % (number, filler)
        lines.append(line)
        total += len(line)
        number += 1
    return b"".join(lines)


FIVE_MB = line_body(5 * 1024 * 1024)


def state_of(server: Server) -> dict[str, Any]:
    """GET /state: what the apps recorded (one worker)."""
    response = httpx.get(server.url + "/state", timeout=10)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def assert_serves(server: Server) -> None:
    """A new connection still gets a normal answer."""
    response = httpx.get(server.url + "/hello", timeout=10)
    assert response.status_code == 200
    assert response.content == HELLO


# -- basics --------------------------------------------------------------------------------


@BOTH
def test_get_has_status_line_date_server_and_length(app: str) -> None:
    """GET: `200 OK`, Date and Server headers, Content-Length added to a one-piece body."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        reply = client.request("GET", "/hello")
        assert (reply.status, reply.reason, reply.http_version) == (200, b"OK", b"1.1")
        assert reply.body == HELLO
        assert reply.header("server") == "gunrunner"
        assert reply.header("content-length") == str(len(HELLO))
        assert reply.header("transfer-encoding") is None
        date = reply.header("date")
        assert date is not None and date.endswith(" GMT")
        when = email.utils.parsedate_to_datetime(date)
        assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 5


@BOTH
def test_post_body_reaches_app(app: str) -> None:
    """POST: the app reads exactly the bytes sent."""
    with running(app, *ONE, ready=1) as server:
        response = httpx.post(server.url + "/read", content=b"abc\x00\xff", timeout=10)
        assert response.status_code == 200
        assert response.json()["sha256"] == digest(b"abc\x00\xff")["sha256"]


@BOTH
def test_streamed_response_is_chunked(app: str) -> None:
    """A body the app sends in several pieces goes out chunked on HTTP/1.1, whole."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        reply = client.request("GET", "/stream?n=4")
        assert reply.status == 200
        assert reply.header("transfer-encoding") == "chunked"
        assert reply.header("content-length") is None
        assert reply.body == b"chunk0\nchunk1\nchunk2\nchunk3\n"
        assert client.request("GET", "/hello").body == HELLO  # still usable


def test_wsgi_single_chunk_generator_is_streamed() -> None:
    """A WSGI generator's chunk goes out as it is yielded (PEP 3333), so chunked."""
    with running(WSGI, *ONE, ready=1) as server, Client.connect(server) as client:
        reply = client.request("GET", "/stream?n=1")
        assert reply.body == b"chunk0\n"
        assert reply.header("transfer-encoding") == "chunked"
        assert client.request("GET", "/stream?n=1").body == b"chunk0\n"


@BOTH
def test_app_server_header_is_not_doubled(app: str) -> None:
    """An app's own Server header replaces ours."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        reply = client.request("GET", "/server-header")
        assert reply.all("server") == ["custom"]


@BOTH
def test_204_has_no_body_and_connection_stays_usable(app: str) -> None:
    """204: no Content-Length, no body; the next request on the connection works."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        reply = client.request("GET", "/status204")
        assert reply.status == 204
        assert reply.body == b""
        assert reply.header("content-length") is None
        assert reply.header("transfer-encoding") is None
        assert client.request("GET", "/hello").body == HELLO


@BOTH
def test_get_and_post_with_two_workers(app: str) -> None:
    """Two workers: GET and POST answered, by the worker processes."""
    with running(app, *TWO, ready=2) as server:
        workers = set(server.workers())
        assert len(workers) == 2
        for _ in range(10):
            response = httpx.get(server.url + "/pid", timeout=10)
            assert response.status_code == 200
            assert int(response.text) in workers
        response = httpx.post(server.url + "/read", content=b"x" * 100_000, timeout=10)
        assert response.json()["len"] == 100_000


# -- keep-alive and pipelining -------------------------------------------------------------


@BOTH
def test_keepalive_100_requests_on_one_connection(app: str) -> None:
    """100 requests on one connection, each answered in order."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        for number in range(100):
            reply = client.request("GET", f"{ECHO[app]}?i={number}")
            assert reply.status == 200
            request = seen(app, reply)
            assert request["query"] == f"i={number}"
            assert request["client_port"] == client.local_port


@BOTH
def test_keepalive_with_two_workers(app: str) -> None:
    """Two workers: one connection stays with one worker for all its requests."""
    with running(app, *TWO, ready=2) as server, Client.connect(server) as client:
        pids = {client.request("GET", "/pid").body for _ in range(20)}
        assert len(pids) == 1
        assert int(pids.pop()) in server.workers()


@BOTH
def test_pipelined_requests_answered_in_order(app: str) -> None:
    """Three requests in one send (one with a body) get three responses in order."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        host = client.host.encode()
        path = ECHO[app].encode()
        data = (
            b"GET %s?i=0 HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)
            + b"POST %s?i=1 HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nhello" % (path, host)
            + b"GET %s?i=2 HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)
        )
        client.send(data)
        replies = [client.expect_response("GET") for _ in range(3)]
        requests = [seen(app, reply) for reply in replies]
        assert [r["query"] for r in requests] == ["i=0", "i=1", "i=2"]
        assert [r["method"] for r in requests] == ["GET", "POST", "GET"]
        assert [r["body"]["len"] for r in requests] == [0, 5, 0]


@BOTH
def test_connection_close_from_client(app: str) -> None:
    """A request with Connection: close is answered, then the server closes."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        reply = client.request("GET", "/hello", [("Connection", "close")])
        assert reply.body == HELLO
        assert reply.header("connection") == "close"
        assert client.closed_within(5)


@BOTH
def test_early_response_to_unfinished_upload_closes(app: str) -> None:
    """An answer before the body is all sent carries Connection: close, and the server closes."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        client.send_head("POST", "/noread", [("Content-Length", str(5 * 1024 * 1024))])
        client.send(b"x" * 100_000)
        reply = client.expect_response()
        assert (reply.status, reply.body) == (200, b"did not read\n")
        assert reply.header("connection") == "close"
        assert client.closed_within(5)
        assert_serves(server)


@BOTH
def test_large_streamed_response_to_slow_reader(app: str) -> None:
    """About 20 MB streamed to a client that waits before reading arrives whole and in order."""
    count, size = 300, 65536
    with running(app, *ONE, ready=1) as server, Client.connect(server, timeout=30) as client:
        client.send_head("GET", f"/stream?n={count}&size={size}")
        client.send_body(b"")
        time.sleep(0.5)  # let the socket buffers fill: the server must wait, not drop
        reply = client.expect_response()
        assert len(reply.body) == count * size
        expected = b"".join(bytes([65 + i % 26]) * size for i in range(count))
        assert reply.body == expected
        assert client.request("GET", "/hello").body == HELLO


@BOTH
def test_slow_request_outlives_keepalive_timeout(app: str) -> None:
    """--keepalive-timeout 1 limits idle time only: a 1.5 s request is answered."""
    with (
        running(app, *ONE, "--keepalive-timeout", "1", ready=1) as server,
        Client.connect(server) as client,
    ):
        assert client.request("GET", "/sleep?s=1.5").body == b"slept\n"
        assert client.request("GET", "/hello").body == HELLO


# -- HTTP/1.0 ------------------------------------------------------------------------------


@BOTH
def test_http10_answered_then_closed(app: str) -> None:
    """An HTTP/1.0 request gets its response, then the server closes the connection."""
    with running(app, *ONE, ready=1) as server:
        data = exchange(server, b"GET /hello HTTP/1.0\r\n\r\n")
        (reply,) = parse_responses(data, ["GET"])
        assert reply.status == 200
        assert reply.body == HELLO
        data = exchange(server, b"GET %s HTTP/1.0\r\n\r\n" % ECHO[app].encode())
        assert seen(app, parse_responses(data, ["GET"])[0])["protocol"] == "HTTP/1.0"


@BOTH
def test_http10_streamed_response_is_not_chunked(app: str) -> None:
    """HTTP/1.0 cannot take chunked: a streamed body ends with the connection."""
    with running(app, *ONE, ready=1) as server:
        data = exchange(server, b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"transfer-encoding" not in head.lower()
        assert body == b"chunk0\nchunk1\nchunk2\n"


@BOTH
def test_http10_keepalive_request_is_consistent(app: str) -> None:
    """HTTP/1.0 with keep-alive: either kept open and reusable, or announced closed and closed."""
    request = b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        client.send(request)
        reply = client.expect_response()
        assert (reply.http_version, reply.status, reply.reason) == (b"1.1", 200, b"OK")
        assert reply.header("content-length") is not None  # framed by length, not the close
        assert reply.body == HELLO
        if reply.closes:
            assert client.closed_within(5)
        else:
            client.send(request)
            again = client.expect_response()
            assert (again.http_version, again.status, again.reason) == (b"1.1", 200, b"OK")
            assert again.body == HELLO


# -- HEAD ----------------------------------------------------------------------------------


@BOTH
def test_head_has_no_body_and_get_headers(app: str) -> None:
    """HEAD: GET's Content-Length (or chunked framing) and no body bytes."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        get = client.request("GET", "/hello")
        head = client.request("HEAD", "/hello")
        assert head.status == 200
        assert head.body == b""
        assert head.header("content-length") == get.header("content-length") == str(len(HELLO))
        streamed = client.request("HEAD", "/stream")
        assert streamed.body == b""
        assert streamed.header("transfer-encoding") == "chunked"
        # No stray body bytes were sent: the connection is still in step.
        assert client.request("GET", "/hello").body == HELLO


# -- request bodies ------------------------------------------------------------------------


BODY_READERS = [
    pytest.param(WSGI, "/read", id="wsgi-read"),
    pytest.param(WSGI, "/read-sized", id="wsgi-read-64k"),
    pytest.param(WSGI, "/readline", id="wsgi-readline"),
    pytest.param(WSGI, "/readline-limit", id="wsgi-readline-1000"),
    pytest.param(WSGI, "/iter", id="wsgi-iter"),
    pytest.param(ASGI, "/read", id="asgi-receive"),
]


def expected_lines(body: bytes, path: str) -> int:
    lines = body.splitlines(keepends=True)
    if path == "/readline-limit":
        return sum((len(line) + 999) // 1000 for line in lines)
    return len(lines)


@pytest.mark.parametrize(("app", "path"), BODY_READERS)
def test_post_5mb_body(app: str, path: str) -> None:
    """A 5 MB body reaches the app whole, however it reads it."""
    with running(app, *ONE, ready=1) as server:
        response = httpx.post(server.url + path, content=FIVE_MB, timeout=30)
        assert response.status_code == 200
        result = response.json()
        assert {"len": result["len"], "sha256": result["sha256"]} == digest(FIVE_MB)
        if "lines" in result:
            assert result["lines"] == expected_lines(FIVE_MB, path)
        if app == ASGI:
            assert result["messages"] > 1  # streamed in pieces, not buffered whole


@pytest.mark.parametrize(("app", "path"), BODY_READERS)
def test_chunked_request_body(app: str, path: str) -> None:
    """A Transfer-Encoding: chunked body reaches the app whole, however it reads it."""
    body = FIVE_MB[:1_000_000]
    sizes = [1, 2, 3, 70_000, 5, 300_000, 17]
    pieces = []
    offset = 0
    for size in sizes:
        pieces.append(body[offset : offset + size])
        offset += size
    pieces.append(body[offset:])
    with running(app, *ONE, ready=1) as server:
        response = httpx.post(server.url + path, content=iter(pieces), timeout=30)
        assert response.status_code == 200
        assert response.request.headers["transfer-encoding"] == "chunked"
        result = response.json()
        assert {"len": result["len"], "sha256": result["sha256"]} == digest(body)
        if "lines" in result:
            assert result["lines"] == expected_lines(body, path)


def test_wsgi_chunked_body_environ() -> None:
    """WSGI, chunked body: no CONTENT_LENGTH, wsgi.input_terminated, body readable to EOF."""
    with running(WSGI, *ONE, ready=1) as server:
        response = httpx.post(server.url + "/environ", content=iter([b"abc", b"defg"]), timeout=10)
        environ = response.json()
        assert "CONTENT_LENGTH" not in environ
        assert environ["HTTP_TRANSFER_ENCODING"] == "chunked"
        assert environ["wsgi.input_terminated"] is True
        assert environ["body"] == digest(b"abcdefg")


# -- Expect: 100-continue ------------------------------------------------------------------


@BOTH
def test_100_continue_sent_when_app_reads_body(app: str) -> None:
    """Expect: 100-continue: `100 Continue` comes once the app reads; then the response."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        client.send_head(
            "POST", "/read", [("Expect", "100-continue"), ("Content-Length", "5")], b"hello"
        )
        interim = client.next_event()
        assert isinstance(interim, h11.InformationalResponse), interim
        assert interim.status_code == 100
        client.send_body(b"hello")
        reply = client.expect_response()
        assert reply.status == 200
        assert reply.json()["len"] == 5


def test_100_continue_status_line() -> None:
    """The interim response's status line is `HTTP/1.1 100 Continue`, as for other statuses."""
    with running(WSGI, *ONE, ready=1) as server:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /read HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                b"Content-Length: 5\r\n\r\n"
            )
            interim = read_head(sock, timeout=10)
            sock.sendall(b"hello")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"


@BOTH
def test_no_100_continue_when_app_answers_without_reading(app: str) -> None:
    """Expect: 100-continue and an app that does not read: no 100, the response, a close."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        client.send_head(
            "POST", "/noread", [("Expect", "100-continue"), ("Content-Length", "5")], b"hello"
        )
        first = client.next_event()
        assert isinstance(first, h11.Response), f"expected the final response, got {first!r}"
        assert first.status_code == 200
        # The body never came: the rest of the connection cannot be parsed, so it closes.
        assert (b"connection", b"close") in list(first.headers)
        while not isinstance(client.next_event(), h11.EndOfMessage):
            pass
        assert client.closed_within(5)


# -- WSGI environ --------------------------------------------------------------------------


def test_wsgi_environ() -> None:
    """WSGI environ: CGI keys, decoded PATH_INFO, raw QUERY_STRING, merged and dropped headers."""
    with running(WSGI, *ONE, ready=1) as server, Client.connect(server) as client:
        headers = [
            ("Content-Type", "text/plain; charset=latin-1"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("X_Under", "spoofed"),
            ("X-Under", "real"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
        ]
        # An unknown path: the app answers 404 with its environ.
        reply = client.request("POST", "/caf%C3%A9/a%20b%2Fc?x=%20y&z=1", headers, b"abc")
        assert reply.status == 404
        env = reply.json()
        assert env["REQUEST_METHOD"] == "POST"
        assert env["PATH_INFO"] == "/caf\xc3\xa9/a b/c"
        assert env["QUERY_STRING"] == "x=%20y&z=1"
        assert env["SCRIPT_NAME"] == ""
        assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert env["SERVER_NAME"] == "127.0.0.1"
        assert env["SERVER_PORT"] == str(server.port)
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert env["REMOTE_PORT"] == str(client.local_port)
        assert env["CONTENT_TYPE"] == "text/plain; charset=latin-1"
        assert env["CONTENT_LENGTH"] == "3"
        assert "HTTP_CONTENT_TYPE" not in env
        assert "HTTP_CONTENT_LENGTH" not in env
        assert env["HTTP_HOST"] == client.host
        assert env["HTTP_X_MULTI"] == "a, b"
        assert env["HTTP_X_UNDER"] == "real"
        assert env["HTTP_COOKIE"] == "a=1; b=2"
        assert env["wsgi.url_scheme"] == "http"
        assert env["wsgi.version"] == [1, 0]
        assert env["wsgi.multiprocess"] is False
        assert env["wsgi.multithread"] is True
        assert env["wsgi.run_once"] is False


def test_wsgi_multiprocess_with_two_workers() -> None:
    """wsgi.multiprocess is True when two worker processes serve."""
    with running(WSGI, *TWO, ready=2) as server:
        env = httpx.get(server.url + "/environ", timeout=10).json()
        assert env["wsgi.multiprocess"] is True


def test_wsgi_root_path() -> None:
    """--root-path /api: SCRIPT_NAME=/api and PATH_INFO without the prefix."""
    with running(WSGI, *ONE, "--root-path", "/api", ready=1) as server:
        env = httpx.get(server.url + "/api/environ", timeout=10).json()
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/api", "/environ")
        env = httpx.get(server.url + "/api", timeout=10).json()
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/api", "")


def test_wsgi_root_path_matches_whole_segments() -> None:
    """--root-path /api and a request for /apiary: PATH_INFO still starts with "/" (PEP 3333)."""
    with running(WSGI, *ONE, "--root-path", "/api", ready=1) as server:
        env = httpx.get(server.url + "/apiary", timeout=10).json()
        assert env["PATH_INFO"].startswith("/"), (env["SCRIPT_NAME"], env["PATH_INFO"])


def test_wsgi_validator_app() -> None:
    """An app wrapped in wsgiref.validate serves GET and POST with nothing in the log."""
    app = "tests.apps.http_apps:validated_app"
    with running(app, *ONE, ready=1) as server:
        response = httpx.get(server.url + "/", timeout=10)
        assert (response.status_code, response.content) == (200, HELLO)
        body = b"line one\nline two\n" * 10_000
        response = httpx.post(server.url + "/", content=body, timeout=10)
        assert (response.status_code, response.content) == (200, body)
        response = httpx.get(server.url + "/?again=1", timeout=10)
        assert response.status_code == 200
        log = server.log()
        for sign in ("Traceback", "AssertionError", "WSGIWarning", "Exception ignored"):
            assert sign not in log, log


def test_wsgi_write_callable() -> None:
    """The write() callable from start_response sends body before the returned iterable."""
    with running(WSGI, *ONE, ready=1) as server, Client.connect(server) as client:
        reply = client.request("GET", "/write")
        assert reply.status == 200
        assert reply.body == b"part1,part2,part3"
        assert client.request("GET", "/hello").body == HELLO


def test_wsgi_start_response_with_exc_info() -> None:
    """start_response again with exc_info before any body: the second status wins."""
    with running(WSGI, *ONE, ready=1) as server:
        response = httpx.get(server.url + "/exc-info", timeout=10)
        assert response.status_code == 503
        assert response.headers["x-recovered"] == "yes"
        assert response.content == b"recovered\n"


def test_wsgi_iterable_close_always_called() -> None:
    """The body iterable's close() is called after success, and when iterating raises."""
    with running(WSGI, *ONE, ready=1) as server:
        assert httpx.get(server.url + "/close-ok?token=ok", timeout=10).content == b"a\nb\n"
        assert httpx.get(server.url + "/close-raises?token=raised", timeout=10).status_code == 500
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(server.url + "/error-streaming", timeout=10)
        wanted = {"ok", "raised", "error-streaming"}
        assert wait_until(lambda: wanted <= set(state_of(server)["closed"]), timeout=5), state_of(
            server
        )


# -- ASGI scope ----------------------------------------------------------------------------


def test_asgi_scope() -> None:
    """ASGI scope: versions, method, decoded path, raw_path and query bytes, headers, peers."""
    with running(ASGI, *ONE, ready=1) as server, Client.connect(server) as client:
        reply = client.request("GET", "/p/caf%C3%A9/a%20b?q=%20a&x", [("X-Mixed-Case", "Value")])
        assert reply.status == 404  # an unknown path: the app answers with its scope
        scope = reply.json()
        assert scope["type"] == "http"
        assert scope["asgi"]["version"] == "3.0"
        assert scope["http_version"] == "1.1"
        assert scope["method"] == "GET"
        assert scope["scheme"] == "http"
        assert scope["path"] == "/p/café/a b"
        assert (scope["raw_path_type"], scope["raw_path"]) == ("bytes", "/p/caf%C3%A9/a%20b")
        assert (scope["query_string_type"], scope["query_string"]) == ("bytes", "q=%20a&x")
        assert scope["root_path"] == ""
        assert set(scope["headers_types"]) <= {"tuple[bytes,bytes]", "list[bytes,bytes]"}
        assert ["x-mixed-case", "Value"] in scope["headers"]
        assert all(name == name.lower() for name, _ in scope["headers"])
        assert ["host", client.host] in scope["headers"]
        assert scope["client"] == ["127.0.0.1", client.local_port]
        assert scope["server"] == ["127.0.0.1", server.port]


def test_asgi_root_path() -> None:
    """--root-path /api: scope root_path is /api and path is the full path."""
    with running(ASGI, *ONE, "--root-path", "/api", ready=1) as server:
        scope = httpx.get(server.url + "/api/x", timeout=10).json()
        assert (scope["root_path"], scope["path"]) == ("/api", "/api/x")


def test_asgi_disconnect_while_streaming() -> None:
    """A client that leaves mid-response: the streaming app's receive() says http.disconnect."""
    with running(ASGI, *ONE, ready=1) as server:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(b"GET /disconnect?token=left HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"tick" in sock.recv(65536)
        assert wait_until(lambda: state_of(server)["disconnects"], timeout=5)
        assert state_of(server)["disconnects"] == [["left", "http.disconnect"]]
        assert_serves(server)


def test_asgi_disconnect_while_waiting() -> None:
    """A client that closes while the app only awaits receive(): http.disconnect arrives."""
    with running(ASGI, *ONE, ready=1) as server:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(b"GET /longpoll?token=closed&wait=4 HTTP/1.1\r\nHost: x\r\n\r\n")
            # The app has read the body and is about to wait in receive().
            assert wait_until(lambda: state_of(server)["waiting"] == ["closed"], timeout=5)
        assert wait_until(lambda: state_of(server)["disconnects"], timeout=6)
        assert state_of(server)["disconnects"] == [["closed", "http.disconnect"]]


def test_asgi_receive_after_response_is_disconnect() -> None:
    """receive() after the response is complete returns http.disconnect at once."""
    with running(ASGI, *ONE, ready=1) as server:
        response = httpx.post(server.url + "/after-response", content=b"body", timeout=10)
        assert response.content == b"done\n"
        assert wait_until(lambda: state_of(server)["after_response"], timeout=3)
        assert state_of(server)["after_response"] == ["http.disconnect"]


# -- interfaces ----------------------------------------------------------------------------


def test_asgi2_class_detected() -> None:
    """A class taking the scope is served as ASGI 2."""
    with running("tests.apps.http_apps:Asgi2App", *ONE, ready=1) as server:
        assert httpx.get(server.url + "/two", timeout=10).content == b"asgi2 at /two"
        assert "serving ASGI2 app" in server.log()


def test_interface_asgi2_forced() -> None:
    """--interface asgi2 serves an ASGI 2 app that detection would take for WSGI."""
    app = "tests.apps.http_apps:asgi2_varargs"
    with running(app, *ONE, "--interface", "asgi2", ready=1) as server:
        assert httpx.get(server.url + "/v", timeout=10).content == b"asgi2 varargs at /v"


def test_interface_wsgi_forced() -> None:
    """--interface wsgi serves a WSGI app written as a class."""
    app = "tests.apps.http_apps:WsgiClass"
    with running(app, *ONE, "--interface", "wsgi", ready=1) as server:
        response = httpx.get(server.url + "/c", timeout=10)
        assert (response.status_code, response.content) == (200, b"wsgi class at /c")
        assert "serving WSGI app" in server.log()


@pytest.mark.parametrize(
    ("factory", "interface"),
    [("create_wsgi_app", "WSGI"), ("create_asgi_app", "ASGI")],
    ids=["wsgi", "asgi"],
)
def test_factory(factory: str, interface: str) -> None:
    """--factory calls module:attribute to get the app."""
    with running(f"tests.apps.http_apps:{factory}", *ONE, "--factory", ready=1) as server:
        assert_serves(server)
        assert f"serving {interface} app" in server.log()


# -- lifespan ------------------------------------------------------------------------------

LIFESPAN = "tests.apps.http_apps:asgi_lifespan"


def test_lifespan_state_reaches_requests() -> None:
    """Lifespan startup state is in every request's scope, as a copy per request."""
    with running(LIFESPAN, *ONE, ready=1) as server:
        seen_state = httpx.get(server.url + "/", timeout=10).json()
        assert seen_state["state"]["greeting"] == "set at startup"
        httpx.get(server.url + "/mutate", timeout=10)
        after = httpx.get(server.url + "/", timeout=10).json()
        assert after["state"]["greeting"] == "set at startup"
        assert "mutated" not in after["state"]


def test_lifespan_runs_in_each_worker() -> None:
    """Two workers: each ran startup itself; its state carries its own pid."""
    with running(LIFESPAN, *TWO, ready=2) as server:
        for _ in range(6):
            data = httpx.get(server.url + "/", timeout=10).json()
            assert data["state"]["startup_pid"] == data["pid"]
            assert data["pid"] in server.workers()


def test_lifespan_off() -> None:
    """--lifespan off: startup never runs, so no greeting in the scope."""
    with running(LIFESPAN, *ONE, "--lifespan", "off", ready=1) as server:
        data = httpx.get(server.url + "/", timeout=10).json()
        assert "greeting" not in (data["state"] or {})


# -- errors --------------------------------------------------------------------------------


@BOTH
def test_exception_before_response_is_500(app: str) -> None:
    """An app exception before the response: 500, traceback logged, the worker serves on."""
    with running(app, *ONE, ready=1) as server:
        pid = httpx.get(server.url + "/pid", timeout=10).text
        response = httpx.get(server.url + "/error", timeout=10)
        assert response.status_code == 500
        assert_serves(server)
        assert httpx.get(server.url + "/pid", timeout=10).text == pid
        log = server.log()
        assert "Traceback" in log
        assert "RuntimeError: boom before the response" in log


@BOTH
def test_exception_mid_stream_drops_connection(app: str) -> None:
    """An app exception after the response started: the chunked body is never completed."""
    with running(app, *ONE, ready=1) as server, Client.connect(server) as client:
        client.send_head("GET", "/error-streaming")
        client.send_body(b"")
        head = client.next_event()
        assert isinstance(head, h11.Response) and head.status_code == 200
        assert (b"transfer-encoding", b"chunked") in list(head.headers)
        received = b""
        with pytest.raises(h11.RemoteProtocolError, match="incomplete"):
            while True:
                event = client.next_event()
                assert not isinstance(event, h11.EndOfMessage), "the body was completed"
                received += event.data
        assert received.startswith(b"first\n")
        assert_serves(server)
        assert "Traceback" in server.log()


@pytest.mark.parametrize(
    ("app", "path"),
    [(WSGI, "/no-start-response"), (ASGI, "/no-response")],
    ids=["wsgi", "asgi"],
)
def test_app_without_response_is_500(app: str, path: str) -> None:
    """An app that returns without starting a response gets a 500 sent for it."""
    with running(app, *ONE, ready=1) as server:
        assert httpx.get(server.url + path, timeout=10).status_code == 500
        assert_serves(server)


@BOTH
def test_garbage_request_is_400(app: str) -> None:
    """A malformed request: 400, connection closed, the next connection served."""
    with running(app, *ONE, ready=1) as server:
        data = exchange(server, b"GARBAGE\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert_serves(server)


@BOTH
@pytest.mark.parametrize("complete", [True, False], ids=["whole-head", "unfinished-head"])
def test_oversized_head_is_431(app: str, complete: bool) -> None:
    """A request head over 16 KiB: 431 and a close; the next connection is served."""
    head = b"GET /hello HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Big-%d: %s\r\n" % (number, b"a" * 2000) for number in range(10)
    )
    assert len(head) > 16 * 1024
    with running(app, *ONE, ready=1) as server:
        data = exchange(server, head + (b"\r\n" if complete else b""), timeout=3)
        assert data.startswith(b"HTTP/1.1 431 "), data[:200]
        assert_serves(server)


@BOTH
def test_bad_content_length_from_app(app: str) -> None:
    """The app declares Content-Length 10 and sends 5: close, error logged, worker serves on."""
    with running(app, *ONE, ready=1) as server:
        data = exchange(server, b"GET /bad-length HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(AssertionError, match="incomplete response"):
            parse_responses(data, ["GET"])
        assert_serves(server)
        assert wait_until(lambda: "ERROR" in server.log() and "/bad-length" in server.log(), 5)


@BOTH
def test_idle_keepalive_connection_closed(app: str) -> None:
    """Idle after a response: keepalive_timeout; before or during a head: header_timeout."""
    args = ("--keepalive-timeout", "1", "--header-timeout", "1.5")
    with running(app, *ONE, *args, ready=1) as server:
        with Client.connect(server) as client:
            assert client.request("GET", "/hello").status == 200
            started = time.monotonic()
            assert client.closed_within(3)
            assert time.monotonic() - started > 0.5
        with Client.connect(server) as client:
            started = time.monotonic()
            assert client.closed_within(4)  # never sent a byte: closed, nothing said
            assert time.monotonic() - started > 1.0
        with Client.connect(server) as client:
            client.send(b"GET /hello HTTP/1.1\r\n")  # a head that never ends (slowloris)
            reply = client.response(within=4)
            assert reply is not None and reply.status == 408, reply
            assert client.closed_within(3)
        assert_serves(server)
