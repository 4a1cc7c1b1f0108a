"""HTTP11Protocol driven with a fake transport and a fake bridge; responses parsed by h11."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import h11
import pytest

from gunrunner.apps.types import ClientDisconnected
from gunrunner.config import Options
from gunrunner.protocols.chunk_header import CHUNK_HEADER
from gunrunner.protocols.connection import JOIN_LIMIT
from gunrunner.protocols.exchange import BODY_HIGH_WATER
from gunrunner.protocols.http11 import HTTP11Protocol, keep_http10_alive
from gunrunner.protocols.limits import Limits
from gunrunner.protocols.observers import ResponseRecord
from gunrunner.protocols.responses import date_header
from gunrunner.protocols.settings import ConnectionSettings
from tests.helpers.fakes import FakeClock, FakeTransport, in_loop


class FakeBridge:
    """Records exchanges; the test answers them."""

    def __init__(self) -> None:
        self.exchanges: list[Any] = []

    def handle(self, exchange: Any) -> None:
        self.exchanges.append(exchange)


def limits(**overrides: Any) -> Limits:
    """The default limits (config.py's), some changed."""
    return dataclasses.replace(Limits.from_options(Options()), **overrides)


class Harness:
    """One connection: protocol + fake transport + fake bridge + an h11 client."""

    def __init__(
        self,
        keepalive_timeout: float = 5.0,
        max_head: int = 16384,
        settings: ConnectionSettings | None = None,
        header_timeout: float = 10.0,
    ) -> None:
        if settings is None:
            settings = ConnectionSettings(
                FakeBridge(),
                limits=limits(
                    keepalive_timeout=keepalive_timeout,
                    max_head_size=max_head,
                    header_timeout=header_timeout,
                ),
                server_header=True,
                clock=FakeClock.installed(),
            )
        self.settings = settings
        self.bridge: FakeBridge = settings.bridge  # type: ignore[assignment]
        self.proto = HTTP11Protocol(self.settings)
        self.transport = FakeTransport(self.proto)
        self.proto.connection_made(self.transport)  # type: ignore[arg-type]
        self.client = h11.Connection(h11.CLIENT)
        self._fed = 0

    def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        end: bool = True,
    ) -> None:
        """Send a request made by the h11 client (head, body, and end if `end`)."""
        all_headers = [("Host", "test"), *(headers or [])]
        if body is not None and not any(n.lower() == "content-length" for n, _ in all_headers):
            all_headers.append(("Content-Length", str(len(body))))
        data = self.client.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            data += self.client.send(h11.Data(data=body))
        if end:
            data += self.client.send(h11.EndOfMessage())
        self.proto.data_received(data)

    def expect(self, method: str = "GET") -> None:
        """Tell the h11 client about a request sent as raw bytes (to parse its response)."""
        self.client.send(h11.Request(method=method, target="/", headers=[("Host", "test")]))
        self.client.send(h11.EndOfMessage())

    def events(self) -> list[Any]:
        """Everything the server wrote since last time, as h11 client events."""
        for data in self.transport.writes[self._fed :]:
            self.client.receive_data(data)
        self._fed = len(self.transport.writes)
        if self.transport.closed:
            self.client.receive_data(b"")
        found = []
        while True:
            event = self.client.next_event()
            if event in (h11.NEED_DATA, h11.PAUSED):
                return found
            found.append(event)
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return found

    def response(self) -> tuple[h11.Response, bytes]:
        """The next complete response; ready the client for the next cycle."""
        events = self.events()
        assert events and isinstance(events[-1], h11.EndOfMessage), f"incomplete: {events}"
        heads = [e for e in events if isinstance(e, h11.Response)]
        assert len(heads) == 1, events
        body = b"".join(e.data for e in events if isinstance(e, h11.Data))
        if self.client.our_state is h11.DONE and self.client.their_state is h11.DONE:
            self.client.start_next_cycle()
        return heads[0], body


def header(response: h11.Response, name: bytes) -> list[bytes]:
    return [v for n, v in response.headers if n == name]


async def settle() -> None:
    """Let call_soon callbacks (connection_lost) run."""
    for _ in range(3):
        await asyncio.sleep(0)


# -- responses -----------------------------------------------------------------------------


@in_loop
async def test_complete_response_is_one_write() -> None:
    """respond(): head, body and end leave in one transport.write(), with our headers."""
    h = Harness()
    h.request("GET", "/hello")
    (exchange,) = h.bridge.exchanges
    exchange.respond(200, [(b"content-type", b"text/plain")], b"hello")
    assert len(h.transport.writes) == 1
    response, body = h.response()
    assert (response.status_code, response.reason, body) == (200, b"OK", b"hello")
    assert header(response, b"content-length") == [b"5"]
    assert header(response, b"server") == [b"gunrunner"]
    assert header(response, b"date") == [date_header()]
    assert header(response, b"connection") == []
    assert not h.transport.closed


@in_loop
async def test_large_body_is_not_copied_behind_its_head() -> None:
    """A body of JOIN_LIMIT bytes or more leaves in one writelines() call, head then the
    body object itself; a smaller one is joined to its head in one write()."""
    h = Harness()
    big = b"x" * JOIN_LIMIT
    h.request("GET", "/big")
    h.bridge.exchanges[0].respond(200, [], big)
    ((head, body),) = h.transport.vectored
    assert body is big and head.startswith(b"HTTP/1.1 200 ")
    assert h.response()[1] == big
    h.request("GET", "/small")
    h.bridge.exchanges[1].respond(200, [], big[:-1])
    assert len(h.transport.vectored) == 1 and len(h.transport.writes) == 2
    assert h.response()[1] == big[:-1]
    h.request("GET", "/streamed")
    streamed = h.bridge.exchanges[2]
    streamed.start(200, [(b"content-length", b"%d" % len(big))])
    await streamed.write(big)
    streamed.end()
    assert h.transport.vectored[1][1] is big  # after the held head
    assert h.response()[1] == big


@in_loop
async def test_streamed_response_head_leaves_with_first_chunk() -> None:
    """start() writes nothing; the head goes out with the first write(); end() finishes."""
    h = Harness()
    h.request("GET", "/stream")
    (exchange,) = h.bridge.exchanges
    exchange.start(200, [])
    assert h.transport.writes == []
    await exchange.write(b"ab")
    assert len(h.transport.writes) == 1
    await exchange.write(b"cd")
    exchange.end()
    assert len(h.transport.writes) == 3
    response, body = h.response()
    assert header(response, b"transfer-encoding") == [b"chunked"]
    assert body == b"abcd"
    assert exchange.finished


@in_loop
async def test_streamed_response_without_body_writes_head_at_end() -> None:
    """start() then end() with no write: the head and the end leave together."""
    h = Harness()
    h.request("GET", "/")
    (exchange,) = h.bridge.exchanges
    exchange.start(200, [(b"content-length", b"0")])
    exchange.end()
    assert len(h.transport.writes) == 1
    response, body = h.response()
    assert (response.status_code, body) == (200, b"")


@in_loop
async def test_exchange_request_fields() -> None:
    """The Exchange: decoded path, raw path and query bytes, lower-case headers, peers."""
    h = Harness()
    h.request("POST", "/a%20b/caf%C3%A9?x=1&y=%20", [("X-Thing", "V")], b"")
    (exchange,) = h.bridge.exchanges
    assert exchange.method == "POST"
    assert exchange.path == "/a b/café"
    assert exchange.raw_path == b"/a%20b/caf%C3%A9"
    assert exchange.query_string == b"x=1&y=%20"
    assert exchange.http_version == "1.1"
    assert (b"x-thing", b"V") in exchange.headers
    assert exchange.scheme == "http"
    assert exchange.client == ("127.0.0.1", 50000)
    assert exchange.server == ("127.0.0.1", 8000)
    assert exchange.body_known_empty()


@in_loop
async def test_absolute_form_target() -> None:
    """An absolute-form target (proxy style) gives the path and query of the URL."""
    h = Harness()
    h.proto.data_received(b"GET http://example.com/p/q?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    (exchange,) = h.bridge.exchanges
    assert (exchange.path, exchange.query_string) == ("/p/q", b"x=1")
    h.expect()
    exchange.respond(200, [], b"")
    h.response()
    h.proto.data_received(b"GET http://example.com?y=2 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert (h.bridge.exchanges[1].path, h.bridge.exchanges[1].query_string) == ("/", b"y=2")


# -- pipelining ----------------------------------------------------------------------------


@in_loop
async def test_pipelined_requests_one_at_a_time_in_order() -> None:
    """Three requests in one read: handed over one at a time, answered in order."""
    h = Harness()
    h.proto.data_received(b"".join(b"GET /%d HTTP/1.1\r\nHost: test\r\n\r\n" % i for i in range(3)))
    assert [e.path for e in h.bridge.exchanges] == ["/0"]
    assert not h.transport.reading  # h11 PAUSED: the next request waits
    for number in range(3):
        exchange = h.bridge.exchanges[number]
        assert exchange.path == f"/{number}"
        assert len(h.bridge.exchanges) == number + 1
        exchange.respond(200, [], exchange.path.encode())
    assert h.transport.reading
    for number in range(3):
        h.expect()
        _, body = h.response()
        assert body == f"/{number}".encode()
    assert not h.transport.closed


@in_loop
async def test_request_arriving_during_response_waits() -> None:
    """A request that arrives while one is being answered is held until the response ends."""
    h = Harness()
    h.request("GET", "/first")
    h.proto.data_received(b"GET /second HTTP/1.1\r\nHost: test\r\n\r\n")
    assert len(h.bridge.exchanges) == 1
    assert not h.transport.reading
    first = h.bridge.exchanges[0]
    first.start(200, [])
    await first.write(b"x")
    assert len(h.bridge.exchanges) == 1  # still streaming the first
    first.end()
    assert [e.path for e in h.bridge.exchanges] == ["/first", "/second"]
    assert h.transport.reading


@in_loop
async def test_pipelined_post_body_goes_to_its_request() -> None:
    """Pipelined POST then GET: the body belongs to the POST, the GET follows."""
    h = Harness()
    h.proto.data_received(
        b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /g HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    (post,) = h.bridge.exchanges
    assert await post.receive() == (b"hello", False)
    post.respond(200, [], b"")
    assert [e.path for e in h.bridge.exchanges] == ["/p", "/g"]
    assert h.bridge.exchanges[1].body_known_empty()


# -- HEAD ------------------------------------------------------------------------------------


@in_loop
async def test_head_keeps_length_sends_no_body() -> None:
    """HEAD: Content-Length of the body the app gave, and no body bytes."""
    h = Harness()
    h.request("HEAD", "/")
    (exchange,) = h.bridge.exchanges
    exchange.respond(200, [], b"hello")
    assert h.transport.writes[0].endswith(b"\r\n\r\n")
    assert b"hello" not in h.transport.writes[0]
    response, body = h.response()
    assert header(response, b"content-length") == [b"5"]
    assert body == b""


@in_loop
async def test_head_streamed_sends_no_body() -> None:
    """HEAD with a streamed answer: the head goes out, the chunks do not."""
    h = Harness()
    h.request("HEAD", "/")
    (exchange,) = h.bridge.exchanges
    exchange.start(200, [])
    await exchange.write(b"secret")
    exchange.end()
    assert b"secret" not in b"".join(h.transport.writes)
    response, body = h.response()
    assert (response.status_code, body) == (200, b"")
    h.request("GET", "/next")
    assert len(h.bridge.exchanges) == 2


def test_h11_keeps_the_keep_alive_flag_we_turn_back_on() -> None:
    """HTTP/1.0 keep-alive rests on one private h11 attribute: fail loudly if it changes."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Request)
    assert conn._cstate.keep_alive is False  # h11 turned it off for HTTP/1.0
    assert keep_http10_alive(conn, [(b"connection", b"keep-alive")])
    assert conn._cstate.keep_alive is True
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
    conn.send(h11.EndOfMessage())
    assert conn.states == {h11.CLIENT: h11.DONE, h11.SERVER: h11.DONE}


@pytest.mark.parametrize(
    ("chunk", "valid"),
    [
        (b"5\r\n", True),
        (b"5;a=b\r\n", True),
        (b'5;a="x \\" y"\r\n', True),
        (b"5 ; a = b ;c\r\n", True),  # BWS around ";" and "=" (RFC 9112 7.1.1)
        (b"5 \r\n", False),  # no whitespace after a size without an extension
        (b"5;a\x01\r\n", False),
        (b'5;a="\x7f"\r\n', False),
        (b"5;a=b \r\n", False),
        (b"5;\r\n", False),
    ],
)
def test_h11_reads_chunk_headers_by_rfc_9112(chunk: bytes, valid: bool) -> None:
    """Our chunk-header pattern is the one h11's chunked reader uses (installed by the
    driver's import): fail loudly if h11's internals change."""
    assert h11._readers.chunk_header_re is CHUNK_HEADER
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Request)
    conn.receive_data(chunk + b"hello\r\n0\r\n\r\n")
    if valid:
        event = conn.next_event()
        assert isinstance(event, h11.Data) and event.data == b"hello"
    else:
        with pytest.raises(h11.RemoteProtocolError, match="illegal chunk header"):
            conn.next_event()


@in_loop
async def test_http10_keep_alive_cycle() -> None:
    """HTTP/1.0 + keep-alive: answered with keep-alive and kept open; a streamed answer
    (length unknown) closes."""
    h = Harness()
    for number in range(2):
        h.proto.data_received(b"GET /%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % number)
        h.expect()
        h.bridge.exchanges[number].respond(200, [], b"ok")
        response, body = h.response()
        assert header(response, b"connection") == [b"keep-alive"]
        assert header(response, b"content-length") == [b"2"] and body == b"ok"
        assert not h.transport.closed
    h.proto.data_received(b"GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    exchange = h.bridge.exchanges[2]
    exchange.start(200, [])
    await exchange.write(b"streamed")
    exchange.end()
    assert b"connection: close\r\n" in h.transport.writes[-2].lower()
    assert h.transport.closed


# -- protocol errors -----------------------------------------------------------------------


@in_loop
async def test_garbage_is_400_and_closed() -> None:
    """A malformed request: 400 with Connection: close, nothing reaches the bridge."""
    h = Harness()
    h.proto.data_received(b"GARBAGE\r\n\r\n")
    assert h.bridge.exchanges == []
    assert h.transport.writes[0].startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close" in h.transport.writes[0].lower()
    assert h.transport.closed


@in_loop
async def test_unfinished_oversized_head_is_431() -> None:
    """More than max_incomplete_event_size bytes of unfinished head: 431 and close."""
    h = Harness(max_head=16384)
    h.proto.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"a" * 20000)
    assert h.bridge.exchanges == []
    assert h.transport.writes[0].startswith(b"HTTP/1.1 431 ")
    assert h.transport.closed


@in_loop
async def test_complete_oversized_head_is_431() -> None:
    """A head over the limit is refused even when it arrives whole in one read."""
    h = Harness(max_head=16384)
    h.proto.data_received(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert h.bridge.exchanges == [], "an over-limit head reached the app"
    assert h.transport.writes and h.transport.writes[0].startswith(b"HTTP/1.1 431 ")
    assert h.transport.closed


class RecordingObserver:
    def __init__(self) -> None:
        self.records: list[ResponseRecord] = []

    def response(self, record: ResponseRecord) -> None:
        self.records.append(record)


def observed_harness(**overrides: Any) -> tuple[Harness, RecordingObserver]:
    observer = RecordingObserver()
    settings = ConnectionSettings(
        FakeBridge(),
        limits=limits(**overrides),
        server_header=True,
        observers=(observer,),
        clock=FakeClock.installed(),
    )
    return Harness(settings=settings), observer


@in_loop
async def test_observers_see_answered_and_refused_responses() -> None:
    """One record per response sent: the app's, and the server's own refusals."""
    h, observer = observed_harness(max_body_size=10)
    h.request("GET", "/a?q=1", [("User-Agent", "ua")])
    h.bridge.exchanges[0].respond(201, [], b"hello")
    h.response()
    (answered,) = observer.records
    assert (answered.method, answered.path, answered.query) == ("GET", b"/a", b"q=1")
    assert (answered.status, answered.sent, answered.refused) == (201, 5, False)
    assert (b"user-agent", b"ua") in answered.headers and answered.request_id

    h.proto.data_received(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 99\r\n\r\n")
    refused = observer.records[1]
    assert (refused.method, refused.path, refused.http_version) == ("POST", b"/up", "1.1")
    assert (refused.status, refused.refused) == (413, True)
    assert refused.sent == len(h.transport.writes[-1].split(b"\r\n\r\n", 1)[1]) > 0
    assert h.bridge.exchanges[1:] == []  # the app never saw it


@in_loop
async def test_response_headers_reach_the_observers_only_when_kept() -> None:
    """settings.keep_response_headers (an access log with response fields): the record
    carries the headers as sent, ours included; off, it carries None."""
    for keep in (True, False):
        h, observer = observed_harness()
        h.settings.keep_response_headers = keep
        h.request("GET", "/")
        h.bridge.exchanges[0].respond(200, [(b"x-app", b"1")], b"ok")
        h.response()
        (record,) = observer.records
        if keep:
            assert record.response_headers is not None
            names = [name.lower() for name, _ in record.response_headers]
            assert b"x-app" in names and b"content-length" in names and b"date" in names
        else:
            assert record.response_headers is None


@in_loop
async def test_refusal_without_a_head_is_observed_without_client_bytes() -> None:
    """Garbage, or a line over the limit: status and client only; no method, no path."""
    for data, status in [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000, 431),
    ]:
        h, observer = observed_harness(limit_request_line=200)
        h.proto.data_received(data)
        (record,) = observer.records
        assert record.status == status
        assert (record.method, record.path, record.headers) == (None, b"", [])
        assert record.client == ("127.0.0.1", 50000) and record.refused


@in_loop
async def test_bad_content_length_from_app_aborts() -> None:
    """The app declares 10 bytes and gives 5: no partial response, the connection drops."""
    h = Harness()
    h.request("GET", "/")
    (exchange,) = h.bridge.exchanges
    exchange.respond(200, [(b"content-length", b"10")], b"12345")
    assert h.transport.writes == []
    assert h.transport.closed
    await settle()
    assert exchange.disconnected


@in_loop
async def test_invalid_header_from_app_is_500() -> None:
    """A header h11 refuses (a space in the name), nothing sent yet: the client gets 500."""
    h = Harness()
    h.request("GET", "/")
    h.bridge.exchanges[0].respond(200, [(b"bad name", b"x")], b"body")
    response, body = h.response()
    assert response.status_code == 500
    assert b"body" not in body
    assert h.transport.closed


@in_loop
async def test_invalid_header_in_streamed_response_is_500() -> None:
    """start() with a header h11 refuses raises for the app; the client gets 500."""
    h = Harness()
    h.request("GET", "/")
    exchange = h.bridge.exchanges[0]
    with pytest.raises(Exception, match="invalid response"):
        exchange.start(200, [(b"x", b"bad\r\nvalue")])
    response, _ = h.response()
    assert response.status_code == 500
    assert h.transport.closed


def test_bad_content_length_from_app_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The app's broken response is logged as an error naming the request."""

    async def scenario() -> None:
        h = Harness()
        h.request("GET", "/bad")
        h.bridge.exchanges[0].respond(200, [(b"content-length", b"10")], b"12345")

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert any(r.levelno == logging.ERROR and "/bad" in r.getMessage() for r in caplog.records)


# -- request bodies and flow control --------------------------------------------------------


@in_loop
async def test_answer_before_body_read_closes() -> None:
    """A response before the request body is complete carries Connection: close, then closes."""
    h = Harness()
    h.request("POST", "/", [("Content-Length", "10")], b"12345", end=False)
    (exchange,) = h.bridge.exchanges
    exchange.respond(200, [], b"early")
    response, body = h.response()
    assert header(response, b"connection") == [b"close"]
    assert body == b"early"
    assert h.transport.closed


@in_loop
async def test_unread_but_complete_body_keeps_alive() -> None:
    """A body that arrived whole but was not read does not stop keep-alive."""
    h = Harness()
    h.request("POST", "/", body=b"ignored")
    (exchange,) = h.bridge.exchanges
    exchange.respond(200, [], b"ok")
    response, _ = h.response()
    assert header(response, b"connection") == []
    h.request("GET", "/next")
    assert [e.path for e in h.bridge.exchanges] == ["/", "/next"]
    assert not h.transport.closed


@in_loop
async def test_receive_delivers_body_as_it_arrives() -> None:
    """receive() waits for body bytes, returns them with more=True, then (b"", False)."""
    h = Harness()
    h.request("POST", "/", [("Content-Length", "6")], end=False)
    (exchange,) = h.bridge.exchanges
    assert not exchange.body_known_empty()
    pending = asyncio.ensure_future(exchange.receive())
    await settle()
    assert not pending.done()
    h.proto.data_received(h.client.send(h11.Data(data=b"abc")))
    assert await pending == (b"abc", True)
    h.proto.data_received(h.client.send(h11.Data(data=b"def")) + h.client.send(h11.EndOfMessage()))
    assert await exchange.receive() == (b"def", False)
    assert await exchange.receive() == (b"", False)


@in_loop
async def test_reading_pauses_above_high_water_and_resumes_on_receive() -> None:
    """More than BODY_HIGH_WATER unread body bytes pause reading; receive() resumes it."""
    h = Harness()
    total = 4 * BODY_HIGH_WATER
    h.request("POST", "/", [("Content-Length", str(total))], end=False)
    (exchange,) = h.bridge.exchanges
    piece = b"x" * 65536
    sent = 0
    while sent + len(piece) <= BODY_HIGH_WATER:
        h.proto.data_received(h.client.send(h11.Data(data=piece)))
        sent += len(piece)
    assert h.transport.reading, "paused at or below the high-water mark"
    h.proto.data_received(h.client.send(h11.Data(data=piece)))
    sent += len(piece)
    assert not h.transport.reading
    data, more = await exchange.receive()
    assert (len(data), more) == (sent, True)
    assert h.transport.reading


@in_loop
async def test_100_continue_only_when_body_is_wanted() -> None:
    """Expect: 100-continue: nothing is sent until the app asks for the body; then 100."""
    h = Harness()
    h.request("POST", "/", [("Expect", "100-continue"), ("Content-Length", "5")], end=False)
    (exchange,) = h.bridge.exchanges
    assert h.transport.writes == []
    pending = asyncio.ensure_future(exchange.receive())
    await settle()
    events = h.events()
    assert [type(e) for e in events] == [h11.InformationalResponse]
    assert events[0].status_code == 100
    h.proto.data_received(
        h.client.send(h11.Data(data=b"hello")) + h.client.send(h11.EndOfMessage())
    )
    assert await pending == (b"hello", False)


@in_loop
async def test_no_100_continue_when_app_answers_first() -> None:
    """Expect: 100-continue and an answer without reading: no 100, Connection: close."""
    h = Harness()
    h.request("POST", "/", [("Expect", "100-continue"), ("Content-Length", "5")], end=False)
    (exchange,) = h.bridge.exchanges
    exchange.respond(413, [], b"too big")
    assert len(h.transport.writes) == 1
    assert not h.transport.writes[0].startswith(b"HTTP/1.1 100")
    response, _ = h.response()
    assert response.status_code == 413
    assert header(response, b"connection") == [b"close"]
    assert h.transport.closed


@in_loop
async def test_client_gone_mid_body_raises_in_receive() -> None:
    """The client closes before the body ends: receive() raises ClientDisconnected."""
    h = Harness()
    h.request("POST", "/", [("Content-Length", "10")], b"12345", end=False)
    (exchange,) = h.bridge.exchanges
    assert await exchange.receive() == (b"12345", True)
    pending = asyncio.ensure_future(exchange.receive())
    await settle()
    if not h.proto.eof_received():
        h.transport.close()  # what asyncio does when eof_received() returns False
    await settle()
    with pytest.raises(ClientDisconnected):
        await pending
    assert exchange.disconnected
    assert h.transport.closed


# -- connection lifetime -------------------------------------------------------------------


@in_loop
async def test_wait_done_returns_when_response_ends_or_client_leaves() -> None:
    """wait_done(): pending until the response ends; also released by connection loss."""
    h = Harness()
    h.request("GET", "/")
    exchange = h.bridge.exchanges[0]
    waiter = asyncio.ensure_future(exchange.wait_done())
    await settle()
    assert not waiter.done()
    exchange.respond(200, [], b"")
    await settle()
    assert waiter.done()
    h.response()
    h.request("GET", "/second")
    second = h.bridge.exchanges[1]
    waiter = asyncio.ensure_future(second.wait_done())
    await settle()
    h.proto.connection_lost(None)
    await settle()
    assert waiter.done() and second.disconnected


@in_loop
async def test_write_waits_while_transport_is_paused() -> None:
    """Exchange.write() waits while the transport asked to pause writing."""
    h = Harness()
    h.request("GET", "/")
    exchange = h.bridge.exchanges[0]
    exchange.start(200, [])
    h.proto.pause_writing()
    writing = asyncio.ensure_future(exchange.write(b"data"))
    await settle()
    assert not writing.done()
    h.proto.resume_writing()
    await settle()
    assert writing.done() and writing.exception() is None


@in_loop
async def test_write_raises_when_client_leaves_while_paused() -> None:
    """A write waiting for the client to read raises ClientDisconnected when it leaves."""
    h = Harness()
    h.request("GET", "/")
    exchange = h.bridge.exchanges[0]
    exchange.start(200, [])
    h.proto.pause_writing()
    writing = asyncio.ensure_future(exchange.write(b"data"))
    await settle()
    h.proto.connection_lost(ConnectionResetError())
    with pytest.raises(ClientDisconnected):
        await writing


@in_loop
async def test_eof_inside_a_request_is_a_disconnect() -> None:
    """EOF inside a body (or a head, or between requests): the client went away; the
    transport closes and the app is told."""
    h = Harness()
    h.request("POST", "/", [("Content-Length", "10")], b"12345", end=False)
    assert h.proto.eof_received() is False  # asyncio closes the transport
    h.proto.connection_lost(None)
    exchange = h.bridge.exchanges[0]
    assert exchange.disconnected
    exchange.respond(200, [], b"late")  # ignored: nobody to send it to
    assert b"late" not in b"".join(h.transport.writes)
    partial = Harness()
    partial.proto.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n")
    assert partial.proto.eof_received() is False
    idle = Harness()
    idle.request("GET", "/")
    idle.bridge.exchanges[0].respond(200, [], b"")
    assert idle.proto.eof_received() is False


@in_loop
async def test_eof_after_a_whole_request_is_a_half_close() -> None:
    """A client that half-closes after its request gets the response, then the close;
    also when the response had started before the EOF."""
    h = Harness()
    h.request("GET", "/")
    (exchange,) = h.bridge.exchanges
    waiting = asyncio.ensure_future(exchange.wait_done())  # an ASGI receive() after the body
    await settle()
    assert h.proto.eof_received() is True  # the transport stays open for the response
    await settle()
    assert waiting.done()  # the app hears http.disconnect (the client may be gone)...
    assert not exchange.disconnected  # ...but what it sends still goes out
    exchange.respond(200, [], b"answer")
    response, body = h.response()
    assert body == b"answer" and header(response, b"connection") == [b"close"]
    assert h.transport.closed
    streaming = Harness()
    streaming.request("GET", "/")
    (exchange,) = streaming.bridge.exchanges
    exchange.start(200, [])
    await exchange.write(b"part")
    assert streaming.proto.eof_received() is True
    exchange.end()
    assert streaming.transport.closed


@in_loop
async def test_idle_connection_closed_after_keepalive_timeout() -> None:
    """An idle connection closes after keepalive_timeout; a busy one does not."""
    clock = FakeClock.running()
    h = Harness(keepalive_timeout=5.0)
    h.request("GET", "/")
    await clock.advance(15.0)
    assert not h.transport.closed  # a request is in progress
    h.bridge.exchanges[0].respond(200, [], b"")
    await clock.advance(4.9)
    assert not h.transport.closed
    await clock.advance(0.2)
    assert h.transport.closed
    # A connection that never sends a byte is closed after header_timeout.
    fresh = Harness(keepalive_timeout=5.0, header_timeout=10.0)
    await clock.advance(9.9)
    assert not fresh.transport.closed
    await clock.advance(0.2)
    assert fresh.transport.closed


@in_loop
async def test_drain_closes_no_connection_before_its_keep_alive_time() -> None:
    """drain(): every response says Connection: close, and no connection closes earlier
    than it would have without the drain. An idle one stays until its keep-alive timer
    runs out (a request that comes first, racing the drain, is answered); a busy one
    answers, then closes; one whose response head went out before keeps its keep-alive."""

    clock = FakeClock.running()

    def served(settings: ConnectionSettings | None = None) -> Harness:
        h = Harness(keepalive_timeout=5.0, settings=settings)
        h.request("GET", "/")
        h.bridge.exchanges[-1].respond(200, [], b"")
        h.response()
        return h

    idle = served()
    quiet = served(idle.settings)  # (connections of one worker share its settings)
    busy = Harness(settings=idle.settings)
    busy.request("GET", "/")
    busy_exchange = busy.bridge.exchanges[-1]
    streaming = Harness(settings=idle.settings)
    streaming.request("GET", "/")
    streaming_exchange = streaming.bridge.exchanges[-1]
    streaming_exchange.start(200, [])
    await streaming_exchange.write(b"head went out")
    idle.settings.drain()
    await settle()
    assert not any(h.transport.closed for h in (idle, quiet, busy, streaming))

    idle.request("GET", "/next")  # sent before the client could know of the drain
    idle.bridge.exchanges[-1].respond(200, [], b"answered")
    response, body = idle.response()
    assert (body, header(response, b"connection")) == (b"answered", [b"close"])
    assert idle.transport.closed
    busy_exchange.respond(200, [], b"bye")
    response, _ = busy.response()
    assert header(response, b"connection") == [b"close"]
    assert busy.transport.closed
    streaming_exchange.end()
    assert not streaming.transport.closed  # its client may send its next request now
    await clock.advance(4.9)
    assert not quiet.transport.closed and not streaming.transport.closed
    await clock.advance(0.2)  # the keep-alive timers ran out
    assert quiet.transport.closed and streaming.transport.closed


@in_loop
async def test_drain_close_idle_closes_idle_connections_at_once() -> None:
    """drain(close_idle=True) (--reload): idle keep-alive connections close now; a busy
    one answers first, and a fresh one (no request yet) may still send its request."""
    idle = Harness()
    idle.request("GET", "/")
    idle.bridge.exchanges[-1].respond(200, [], b"")
    idle.response()
    busy = Harness(settings=idle.settings)
    busy.request("GET", "/")
    fresh = Harness(settings=idle.settings)
    idle.settings.drain(close_idle=True)
    assert idle.transport.closed
    assert not busy.transport.closed and not fresh.transport.closed
    busy.bridge.exchanges[-1].respond(200, [], b"bye")
    response, _ = busy.response()
    assert header(response, b"connection") == [b"close"] and busy.transport.closed


def test_date_header_format() -> None:
    """date_header(): an IMF-fixdate in GMT."""
    value = date_header().decode()
    assert value.endswith(" GMT")
    assert len(value) == len("Sun, 06 Nov 1994 08:49:37 GMT")
