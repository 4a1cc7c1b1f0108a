"""WebSocketProtocol driven with a fake transport and a wsproto client as the peer.

No sockets and no waiting: the fake transport (tests/helpers/fakes.py) collects what the
server writes (fed to the wsproto client) and models asyncio's close(): connection_lost
comes once the write buffer is flushed, which never happens while the peer reads nothing
(`stuck`); abort() is at once. Timers (handshake, close, keepalive) run on a fake clock
that `settle(seconds)` advances.
"""

from __future__ import annotations

import asyncio
import tracemalloc
import zlib
from typing import Any

import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from gunrunner.apps.types import WebSocketClosed
from gunrunner.protocols import websocket
from gunrunner.protocols.websocket import WebSocketProtocol, WebSocketSettings
from tests.helpers.fakes import FakeBridge, FakeClock, FakeTransport, in_loop

MiB = 1024 * 1024


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """A client frame as raw bytes (mask key 0: masked, payload unchanged)."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head = bytes([first, mask_bit | length])
    elif length < 65536:
        head = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    return head + (b"\x00\x00\x00\x00" if masked else b"") + payload


def upgrade_request(request: Request) -> h11.Request:
    """The request head a wsproto client sends, as the h11 driver parsed it."""
    client = WSConnection(ConnectionType.CLIENT)
    server = h11.Connection(h11.SERVER)
    server.receive_data(client.send(request))
    event = server.next_event()
    assert isinstance(event, h11.Request)
    return event


class Harness:
    """One WebSocketProtocol with its fake transport and bridge, and a wsproto client peer."""

    def __init__(
        self,
        *,
        max_message_size: int = MiB,
        max_queue: int = 8,
        ping_interval: float = 0.0,
        ping_timeout: float = 0.0,
        per_message_deflate: bool = False,
        subprotocols: list[str] | None = None,
        client_deflate: bool = False,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.settings = WebSocketSettings(
            max_message_size=max_message_size,
            max_queue=max_queue,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            per_message_deflate=per_message_deflate,
        )
        self.clock = FakeClock.running()  # before the protocol sets its first timer
        self.connections: set[Any] = set()
        self.bridge = FakeBridge()
        self.transport = FakeTransport(extra={})
        self.client = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host="example.com",
            target="/chat?room=1",
            subprotocols=subprotocols or [],
            extensions=[PerMessageDeflate()] if client_deflate else [],
        )
        data = self.client.send(request)
        h11_server = h11.Connection(h11.SERVER)
        h11_server.receive_data(data)
        head = h11_server.next_event()
        assert isinstance(head, h11.Request)
        self.headers = list(head.headers) if headers is None else headers
        self.proto = WebSocketProtocol(
            self.settings,
            self.connections,
            self.bridge,  # type: ignore[arg-type]
            self.transport,  # type: ignore[arg-type]
            path="/chat",
            raw_path=b"/chat",
            query_string=b"room=1",
            headers=self.headers,
            http_version="1.1",
            scheme="http",
            client=("127.0.0.1", 50000),
            server=("127.0.0.1", 8000),
        )
        self.transport.protocol = self.proto
        self.proto.start(self.headers, head.target, b"")

    def accept(self, subprotocol: str | None = None) -> AcceptConnection:
        self.proto.accept(subprotocol, [(b"x-extra", b"1")])
        events = self.events()
        assert isinstance(events[0], AcceptConnection), events
        return events[0]

    def send(self, event: Event) -> None:
        """The client sends `event` (all its bytes arrive in one data_received)."""
        self.proto.data_received(self.client.send(event))

    def events(self) -> list[Event]:
        """What the server wrote since the last call, as the client sees it."""
        data = self.transport.take()
        if data and self.client.state is not ConnectionState.CLOSED:
            self.client.receive_data(data)
        return list(self.client.events())


async def settle(seconds: float = 0.0) -> None:
    """Let `seconds` pass on the test's fake clock (the timers due fire), then let the
    loop run once more: no test waits in real time."""
    await FakeClock.running().advance(seconds)
    await asyncio.sleep(0)


# -- handshake -----------------------------------------------------------------------------


@in_loop
async def test_start_hands_session_to_bridge() -> None:
    """A good handshake reaches the bridge with the offered subprotocols; nothing is written."""
    h = Harness(subprotocols=["a", "b"])
    assert h.bridge.sessions == [h.proto]
    assert h.proto.subprotocols == ["a", "b"]
    assert h.proto.scheme == "ws"
    assert h.proto in h.connections
    assert h.transport.writes == []


@in_loop
async def test_accept_sends_101_with_subprotocol_and_headers() -> None:
    """accept("b", headers): a 101 naming "b" and carrying the extra header."""
    h = Harness(subprotocols=["a", "b"])
    h.proto.accept("b", [(b"x-extra", b"1")])
    raw = b"".join(h.transport.writes)
    assert raw.startswith(b"HTTP/1.1 101 ")
    assert b"x-extra: 1" in raw.lower()
    h.client.receive_data(h.transport.take())
    (event,) = list(h.client.events())
    assert isinstance(event, AcceptConnection)
    assert event.subprotocol == "b"


@in_loop
async def test_bad_version_answered_426_without_the_app() -> None:
    """Sec-WebSocket-Version 8: a 426 naming version 13, a close; the app never runs."""
    head = upgrade_request(Request(host="example.com", target="/chat"))
    headers = [(n, b"8" if n == b"sec-websocket-version" else v) for n, v in list(head.headers)]
    h = Harness(headers=headers)
    raw = h.transport.take()
    assert raw.startswith(b"HTTP/1.1 426 ")
    assert b"sec-websocket-version: 13" in raw.lower()
    assert h.transport.closed
    assert h.bridge.sessions == []
    await settle()
    assert h.proto not in h.connections


@in_loop
async def test_missing_key_answered_400() -> None:
    """No Sec-WebSocket-Key: a 400 and a close; the app never runs."""
    head = upgrade_request(Request(host="example.com", target="/chat"))
    headers = [(n, v) for n, v in list(head.headers) if n != b"sec-websocket-key"]
    h = Harness(headers=headers)
    assert h.transport.take().startswith(b"HTTP/1.1 400 ")
    assert h.transport.closed
    assert h.bridge.sessions == []


@in_loop
async def test_close_before_accept_denies_with_403() -> None:
    """close() before accept: a 403 response and a close."""
    h = Harness()
    h.proto.close(1000, "")
    events = h.events()
    assert isinstance(events[0], RejectConnection) and events[0].status_code == 403
    assert h.transport.closed
    with pytest.raises(WebSocketClosed):
        await h.proto.receive()


@in_loop
async def test_denial_response_in_parts() -> None:
    """reject() twice: one 401 with both body parts; TCP closes after the last part only."""
    h = Harness()
    h.proto.reject(401, [(b"x-why", b"token")], b"first ", True)
    assert not h.transport.closed
    h.proto.reject(401, [], b"second", False)
    assert h.transport.closed
    events = h.events()
    assert isinstance(events[0], RejectConnection)
    assert events[0].status_code == 401
    assert (b"x-why", b"token") in list(events[0].headers)
    body = b"".join(e.data for e in events[1:] if isinstance(e, RejectData))
    assert body == b"first second"
    last = events[-1]
    assert isinstance(last, RejectData) and last.body_finished


@in_loop
async def test_handshake_timeout_closes() -> None:
    """An app that neither accepts nor denies: the connection closes after HANDSHAKE_TIMEOUT."""
    h = Harness()
    await settle(websocket.HANDSHAKE_TIMEOUT - 0.01)
    assert not h.transport.closed
    await settle(0.02)
    assert h.transport.closed
    assert h.transport.lost


# -- messages ------------------------------------------------------------------------------


@in_loop
async def test_fragments_are_assembled() -> None:
    """Text and binary fragments reach receive() as one whole message each."""
    h = Harness()
    h.accept()
    h.send(TextMessage(data="hel", message_finished=False))
    h.send(Ping(payload=b"mid"))
    h.send(TextMessage(data="lo ✓", message_finished=True))
    for part in (b"ab", b"cd", b"ef"):
        h.send(BytesMessage(data=part, message_finished=part == b"ef"))
    h.send(BytesMessage(data=b"single"))
    assert await h.proto.receive() == "hello ✓"
    assert await h.proto.receive() == b"abcdef"
    assert await h.proto.receive() == b"single"
    pong = h.events()
    assert len(pong) == 1 and isinstance(pong[0], Pong) and pong[0].payload == b"mid"


@in_loop
async def test_receive_waits_for_a_message() -> None:
    """receive() waits until a message arrives."""
    h = Harness()
    h.accept()
    task = asyncio.ensure_future(h.proto.receive())
    await settle(0.02)
    assert not task.done()
    h.send(TextMessage(data="late"))
    assert await asyncio.wait_for(task, 1) == "late"


@in_loop
async def test_send_text_and_bytes() -> None:
    """send() writes text and binary messages the client reads back."""
    h = Harness()
    h.accept()
    await h.proto.send("text ✓")
    await h.proto.send(b"\x00\xff")
    events = h.events()
    assert [type(e) for e in events] == [TextMessage, BytesMessage]
    assert events[0].data == "text ✓"
    assert events[1].data == b"\x00\xff"


@in_loop
async def test_message_at_limit_is_accepted() -> None:
    """A message of exactly max_message_size bytes (or characters) is delivered."""
    h = Harness(max_message_size=100)
    h.accept()
    h.send(BytesMessage(data=b"x" * 100))
    h.send(TextMessage(data="é" * 100))
    assert await h.proto.receive() == b"x" * 100
    assert await h.proto.receive() == "é" * 100
    assert h.events() == []


@in_loop
async def test_fragments_over_limit_close_1009() -> None:
    """Fragments adding up past max_message_size: close 1009, nothing delivered."""
    h = Harness(max_message_size=100)
    h.accept()
    h.send(BytesMessage(data=b"a" * 60, message_finished=False))
    assert h.events() == []
    h.send(BytesMessage(data=b"b" * 60, message_finished=False))
    (close,) = h.events()
    assert isinstance(close, CloseConnection) and close.code == 1009
    h.proto.data_received(frame(0x0, b"c" * 10))  # the last fragment, sent before the close
    with pytest.raises(WebSocketClosed) as info:
        await h.proto.receive()
    assert info.value.code == 1009


@in_loop
async def test_oversized_frame_refused_before_it_is_complete() -> None:
    """A 10000-byte frame arriving in pieces is refused (1009) after 150 bytes, not at the end."""
    h = Harness(max_message_size=100)
    h.accept()
    data = frame(0x2, b"z" * 10000)
    h.proto.data_received(data[:60])
    h.proto.data_received(data[60:160])
    events = h.events()
    assert len(events) == 1 and isinstance(events[0], CloseConnection), events
    assert events[0].code == 1009


@in_loop
async def test_compressed_frame_over_limit_not_inflated_whole() -> None:
    """A deflated frame that inflates to 32 MiB (limit 1 MiB): 1009, memory stays small."""
    h = Harness(max_message_size=MiB, per_message_deflate=True, client_deflate=True)
    accepted = h.accept()
    assert accepted.extensions, "permessage-deflate not negotiated"
    compressor = zlib.compressobj(wbits=-15)
    payload = b"".join(compressor.compress(bytes(MiB)) for _ in range(32))
    payload += compressor.flush(zlib.Z_SYNC_FLUSH)
    data = frame(0x2, payload[:-4])
    data = bytes([data[0] | 0x40]) + data[1:]  # RSV1: compressed
    tracemalloc.start()
    try:
        h.proto.data_received(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    events = h.events()
    assert any(isinstance(e, CloseConnection) and e.code == 1009 for e in events), events
    # Inflation stops at 4x the limit (UTF-8 text is counted in characters), far below
    # the 32 MiB this payload would inflate to.
    assert peak < 16 * MiB, f"{peak // MiB} MiB allocated for a message limited to 1 MiB"


@in_loop
async def test_text_limit_counts_characters_when_compressed() -> None:
    """max_message_size counts characters for text, with deflate as without: 100 "é" pass."""
    for deflate in (False, True):
        h = Harness(max_message_size=100, per_message_deflate=deflate, client_deflate=True)
        assert bool(h.accept().extensions) == deflate
        h.send(TextMessage(data="é" * 100))  # 100 characters, 200 bytes of UTF-8
        assert h.events() == [], f"refused with deflate={deflate}"
        assert await h.proto.receive() == "é" * 100


@in_loop
async def test_per_message_deflate_round_trip() -> None:
    """Negotiated deflate: compressed messages both ways, smaller on the wire."""
    h = Harness(per_message_deflate=True, client_deflate=True)
    accepted = h.accept()
    assert [e.name for e in accepted.extensions] == ["permessage-deflate"]
    text = "all work and no play " * 5000
    h.send(TextMessage(data=text))
    assert await h.proto.receive() == text
    await h.proto.send(text)
    wire = b"".join(h.transport.writes)
    assert len(wire) < len(text) // 10
    (event,) = h.events()
    assert isinstance(event, TextMessage) and event.data == text


@in_loop
async def test_no_deflate_when_disabled() -> None:
    """per_message_deflate off: an offer from the client is not accepted."""
    h = Harness(per_message_deflate=False, client_deflate=True)
    accepted = h.accept()
    assert accepted.extensions == []


# -- flow control --------------------------------------------------------------------------


@in_loop
async def test_queue_pauses_and_resumes_reading() -> None:
    """max_queue unread messages pause reading; reading resumes below half of it."""
    h = Harness(max_queue=4)
    h.accept()
    for i in range(3):
        h.send(TextMessage(data=f"m{i}"))
    assert h.transport.reading and h.transport.pauses == 0
    h.send(TextMessage(data="m3"))
    assert not h.transport.reading and h.transport.pauses == 1
    assert await h.proto.receive() == "m0"
    assert not h.transport.reading  # 3 left: still at or above half
    assert await h.proto.receive() == "m1"
    assert h.transport.reading and h.transport.resumes == 1
    assert await h.proto.receive() == "m2"
    assert await h.proto.receive() == "m3"
    assert h.transport.resumes == 1


@in_loop
async def test_several_messages_in_one_read_pause_once() -> None:
    """Many messages in one read beyond max_queue: all kept, reading paused once."""
    h = Harness(max_queue=2)
    h.accept()
    data = b"".join(h.client.send(TextMessage(data=f"m{i}")) for i in range(5))
    h.proto.data_received(data)
    assert h.transport.pauses == 1 and not h.transport.reading
    assert [await h.proto.receive() for _ in range(5)] == [f"m{i}" for i in range(5)]
    assert h.transport.reading


@in_loop
async def test_send_waits_while_writing_is_paused() -> None:
    """send() returns only once the transport resumes writing."""
    h = Harness()
    h.accept()
    h.proto.pause_writing()
    task = asyncio.ensure_future(h.proto.send(b"x" * 1000))
    await settle(0.05)
    assert not task.done()
    assert h.events()[0] == BytesMessage(data=b"x" * 1000, frame_finished=True)
    h.proto.resume_writing()
    await asyncio.wait_for(task, 1)


@in_loop
async def test_connection_lost_wakes_receiver_and_sender() -> None:
    """Losing TCP: a waiting receive() raises 1006, a waiting send() returns, then raises."""
    h = Harness()
    h.accept()
    receiver = asyncio.ensure_future(h.proto.receive())
    h.proto.pause_writing()
    sender = asyncio.ensure_future(h.proto.send(b"blocked"))
    await settle(0.02)
    assert not receiver.done() and not sender.done()
    h.transport.abort()
    await settle(0.02)
    with pytest.raises(WebSocketClosed) as info:
        await asyncio.wait_for(receiver, 1)
    assert info.value.code == 1006
    await asyncio.wait_for(sender, 1)
    with pytest.raises(WebSocketClosed):
        await h.proto.send(b"after")
    assert h.proto not in h.connections


# -- closing -------------------------------------------------------------------------------


@in_loop
async def test_client_close_is_answered_and_tcp_closed() -> None:
    """The client's close: echoed code, TCP closed, queued messages first, then the close."""
    h = Harness()
    h.accept()
    data = h.client.send(TextMessage(data="last words"))
    data += h.client.send(CloseConnection(code=4000, reason="bye"))
    h.proto.data_received(data)
    (answer,) = h.events()
    assert isinstance(answer, CloseConnection) and (answer.code, answer.reason) == (4000, "bye")
    assert h.transport.closed
    assert await h.proto.receive() == "last words"
    with pytest.raises(WebSocketClosed) as info:
        await h.proto.receive()
    assert (info.value.code, info.value.reason) == (4000, "bye")


@in_loop
async def test_server_close_waits_for_the_answer() -> None:
    """close(4001): a close frame; TCP closes when the client answers, not before."""
    h = Harness()
    h.accept()
    h.proto.close(4001, "app bye")
    (close,) = h.events()
    assert isinstance(close, CloseConnection) and (close.code, close.reason) == (4001, "app bye")
    assert not h.transport.closed
    with pytest.raises(WebSocketClosed):
        await h.proto.send("after close")
    h.send(close.response())
    assert h.transport.closed
    await settle()
    assert h.transport.lost


@in_loop
async def test_close_timeout_when_peer_never_answers() -> None:
    """No answer to our close frame: TCP closed after CLOSE_TIMEOUT."""
    h = Harness()
    h.accept()
    h.proto.close(1000, "")
    await settle(websocket.CLOSE_TIMEOUT - 0.01)
    assert not h.transport.closed
    await settle(0.02)
    assert h.transport.closed and h.transport.lost


@in_loop
async def test_close_timeout_when_peer_reads_nothing() -> None:
    """A peer that reads nothing (buffer never flushes): still lost after CLOSE_TIMEOUT."""
    h = Harness()
    h.accept()
    h.transport.stuck = True
    h.proto.pause_writing()
    h.proto.close(1001, "going away")
    await settle(websocket.CLOSE_TIMEOUT - 0.01)
    assert not h.transport.lost
    await settle(0.5)
    assert h.transport.lost, "the connection outlived CLOSE_TIMEOUT (close() waits for a flush)"


@in_loop
async def test_ping_crossing_our_close_frame() -> None:
    """A ping the client sent before it saw our close frame is no error; the close completes."""
    h = Harness()
    h.accept()
    h.proto.close(4001, "bye")
    ping = h.client.send(Ping(payload=b"crossing"))  # the client has not read our close yet
    h.proto.data_received(ping)
    events = h.events()
    close = events[-1]
    assert isinstance(close, CloseConnection)
    h.send(close.response())
    assert h.transport.closed


@in_loop
async def test_close_when_idle_sends_1001() -> None:
    """Server stopping: an open WebSocket gets 1001; one still in the handshake is closed."""
    h = Harness()
    h.accept()
    h.proto.close_when_idle()
    (close,) = h.events()
    assert isinstance(close, CloseConnection) and close.code == 1001
    with pytest.raises(WebSocketClosed) as info:
        await h.proto.receive()
    assert info.value.code == 1001

    pending = Harness()
    pending.proto.close_when_idle()
    assert pending.transport.closed


PROTOCOL_ERRORS = {
    "invalid-utf8": (frame(0x1, b"\xff\xfe"), 1007),
    "unmasked": (frame(0x1, b"hi", masked=False), 1002),
    "bad-opcode": (frame(0x3, b"x"), 1002),
    "fragmented-ping": (frame(0x9, b"x", fin=False), 1002),
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
@in_loop
async def test_protocol_error_fails_the_connection(case: str) -> None:
    """A broken frame: a close frame with the code, TCP closed, receive() raises that code."""
    data, code = PROTOCOL_ERRORS[case]
    h = Harness()
    h.accept()
    h.proto.data_received(data)
    events = h.events()
    assert len(events) == 1 and isinstance(events[0], CloseConnection), events
    assert events[0].code == code
    assert h.transport.closed
    with pytest.raises(WebSocketClosed) as info:
        await h.proto.receive()
    assert info.value.code == code


# -- keepalive -----------------------------------------------------------------------------


@in_loop
async def test_keepalive_unanswered_closes_1011() -> None:
    """Pings every 0.05 s; none answered: close 1011 and TCP closed soon after."""
    h = Harness(ping_interval=0.05, ping_timeout=0.05)
    h.accept()
    await settle(0.07)
    events = h.events()
    assert len(events) == 1 and isinstance(events[0], Ping)
    await settle(0.1)
    events = h.events()
    assert any(isinstance(e, CloseConnection) and e.code == 1011 for e in events), events
    await settle(0.7)
    assert h.transport.closed and h.transport.lost


@in_loop
async def test_keepalive_answered_stays_open() -> None:
    """Pings answered with their payload: the connection stays open."""
    h = Harness(ping_interval=0.05, ping_timeout=0.05)
    h.accept()
    pings = 0
    deadline = h.clock.now + 0.5
    while h.clock.now < deadline:
        await settle(0.01)
        for event in h.events():
            assert isinstance(event, Ping), event
            pings += 1
            h.send(event.response())
    assert pings >= 4
    assert not h.transport.closed
    await h.proto.send("alive")
    assert h.events() == [TextMessage(data="alive", frame_finished=True)]


@in_loop
async def test_keepalive_off_with_interval_zero() -> None:
    """ping_interval 0: no pings at all."""
    h = Harness(ping_interval=0, ping_timeout=0.01)
    h.accept()
    await settle(0.1)
    assert h.events() == []
