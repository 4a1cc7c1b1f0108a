"""WebSockets on a real gunrunner server, seen through real clients.

Clients: the `websockets` library (asyncio API), a wsproto client over a plain socket
(`RawWS`), raw frame bytes for what no well-behaved client sends, and h11 for handshakes
that must fail. The apps are in tests/apps/ws_apps.py; what the app saw on its side
(websocket.disconnect, progress) comes back through files under a tmp dir ($WS_RECORD_DIR).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import time
import zlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import h11
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
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

from tests.helpers import Server, running, wait_until
from tests.helpers.memory import peak_rss, rss
from tests.helpers.wire import get, wait_read

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

APP = "tests.apps.ws_apps:app"
WSGI = "tests.apps.basic:wsgi_pid"
STARLETTE = "tests.apps.ws_starlette:app"
ONE = ("--workers", "1")
MiB = 1024 * 1024
T = TypeVar("T")


# -- helpers -------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine in a fresh event loop, bounded by `timeout`."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ws_connect(server: Server, path: str, **kwargs: Any) -> connect:
    """A websockets client: no proxy, no client keepalive, no size limit, bounded waits."""
    options: dict[str, Any] = {
        "proxy": None,
        "ping_interval": None,
        "max_size": None,
        "open_timeout": 10,
        "close_timeout": 5,
    }
    options.update(kwargs)
    return connect(f"ws://{server.host}:{server.port}{path}", **options)


async def closed_by_server(ws: ClientConnection, timeout: float = 10.0) -> ConnectionClosed:
    """Read until the server closes; return the ConnectionClosed (its .rcvd is the frame)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as closed:
        return closed


@pytest.fixture
def record_dir(tmp_path: Path) -> Path:
    """The directory the apps write their records to ($WS_RECORD_DIR)."""
    return tmp_path


def env_for(record_dir: Path) -> dict[str, str]:
    return {"WS_RECORD_DIR": str(record_dir)}


def read_record(record_dir: Path, name: str, timeout: float = 10.0) -> Any:
    """What the app recorded under `name` (waits for the file to appear)."""
    path = record_dir / f"{name}.json"
    assert wait_until(path.exists, timeout), f"the app wrote no record {name!r}"
    return json.loads(path.read_text())


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv1: bool = False
) -> bytes:
    """One WebSocket frame as raw bytes, as a client would send it (masked by default)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head = bytes([first, mask_bit | length])
    elif length < 65536:
        head = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    if not payload:
        return head + key
    keystream = (key * (length // 4 + 1))[:length]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(
        length, "big"
    )
    return head + key + body


class RawWS:
    """A WebSocket client over a plain socket: wsproto frames it, raw bytes break the rules.

    Nothing is answered automatically (pings, close frames): each test decides.
    """

    def __init__(
        self,
        server: Server,
        path: str = "/echo",
        *,
        subprotocols: list[str] | None = None,
        deflate: bool = False,
        timeout: float = 10.0,
        sock: socket.socket | None = None,
    ) -> None:
        if sock is None:
            sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.sock = sock
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.pending: collections.deque[Event] = collections.deque()
        self.raw = bytearray()  # everything received, for the handshake response head
        self.received = 0  # bytes received in total
        self.eof = False
        extensions = [PerMessageDeflate()] if deflate else []
        request = Request(
            host=f"{server.host}:{server.port}",
            target=path,
            subprotocols=subprotocols or [],
            extensions=extensions,
        )
        self.sock.sendall(self.conn.send(request))

    def __enter__(self) -> RawWS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    @property
    def head(self) -> bytes:
        """The handshake response head, lower-cased."""
        return bytes(self.raw).split(b"\r\n\r\n", 1)[0].lower()

    def handshake(self) -> AcceptConnection:
        event = self.next_event()
        assert isinstance(event, AcceptConnection), f"handshake not accepted: {event}"
        return event

    def send(self, event: Event) -> None:
        self.sock.sendall(self.conn.send(event))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nothing from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        self.received += len(data)
        if len(self.raw) < 65536:
            self.raw += data[: 65536 - len(self.raw)]
        if self.conn.state is not ConnectionState.CLOSED:
            self.conn.receive_data(data)

    def next_event(self, timeout: float = 10.0) -> Event | None:
        """The next event from the server; None once it closed the TCP connection."""
        deadline = time.monotonic() + timeout
        while True:
            self.pending.extend(self.conn.events())
            if self.pending:
                return self.pending.popleft()
            if self.eof:
                return None
            self._read(deadline)

    def next_message(self, timeout: float = 10.0) -> str | bytes:
        """The next whole message (fragments joined); fails on anything but data frames."""
        parts: list[Any] = []
        while True:
            event = self.next_event(timeout)
            assert isinstance(event, (TextMessage, BytesMessage)), f"expected a message: {event}"
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)

    def expect_close(self, timeout: float = 10.0) -> CloseConnection:
        """Read until the server's close frame (data frames before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(deadline - time.monotonic(), 0.001))
            assert event is not None, "TCP closed without a close frame"
            if isinstance(event, CloseConnection):
                return event

    def wait_eof(self, timeout: float = 10.0) -> float:
        """Seconds until the server closes the TCP connection (reading whatever comes)."""
        start = time.monotonic()
        deadline = start + timeout
        while not self.eof:
            self._read(deadline)
        return time.monotonic() - start


def http_upgrade(
    server: Server,
    headers: list[tuple[str, str]],
    target: str = "/echo",
    timeout: float = 10.0,
    wait_close: float = 5.0,
) -> tuple[int, dict[str, str], bytes, bool]:
    """Send a GET with `headers` through h11; return status, headers, body, closed-after.

    `closed-after` says whether the server closed the connection within `wait_close` s of
    the response.
    """
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        all_headers = [("Host", f"{server.host}:{server.port}"), *headers]
        request = h11.Request(method="GET", target=target, headers=all_headers)
        sock.sendall(conn.send(request) + conn.send(h11.EndOfMessage()))
        status = 0
        response_headers: dict[str, str] = {}
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.InformationalResponse):
                raise AssertionError(f"unexpected informational response {event}")
            elif isinstance(event, h11.Response):
                status = event.status_code
                response_headers = {n.decode(): v.decode() for n, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        sock.settimeout(wait_close)
        try:
            closed = sock.recv(65536) == b""
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
    return status, response_headers, body, closed


GOOD_UPGRADE = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


def upgrade_headers(**replace: str | None) -> list[tuple[str, str]]:
    """GOOD_UPGRADE with some headers replaced (value) or removed (None); keys use _ for -."""
    wanted = {k.replace("_", "-").lower(): v for k, v in replace.items()}
    out = []
    for name, value in GOOD_UPGRADE:
        key = name.lower()
        if key in wanted:
            if wanted[key] is not None:
                out.append((name, str(wanted[key])))
        else:
            out.append((name, value))
    return out


# -- messages ------------------------------------------------------------------------------


def test_echo_text_and_binary() -> None:
    """Text comes back as text and bytes as bytes, in order."""
    with running(APP, *ONE, ready=1) as server:

        async def main() -> list[str | bytes]:
            async with ws_connect(server, "/echo") as ws:
                got = []
                for message in ["hello", b"\x00\x01\xfe\xff", "", b"", "héllo wörld ✓"]:
                    await ws.send(message)
                    got.append(await asyncio.wait_for(ws.recv(), 10))
                return got

        assert run(main()) == ["hello", b"\x00\x01\xfe\xff", "", b"", "héllo wörld ✓"]


def test_echo_one_mebibyte_messages() -> None:
    """A 1 MiB binary (incompressible) and a 1 MiB text message round-trip intact."""
    binary = os.urandom(MiB)
    text = "".join(chr(0x41 + (i * 7) % 26) for i in range(MiB))
    with running(APP, *ONE, ready=1) as server:

        async def main() -> tuple[Any, Any]:
            async with ws_connect(server, "/echo") as ws:
                await ws.send(binary)
                first = await asyncio.wait_for(ws.recv(), 10)
                await ws.send(text)
                second = await asyncio.wait_for(ws.recv(), 10)
                return first, second

        first, second = run(main())
        assert first == binary
        assert second == text


def test_fragmented_messages_arrive_whole() -> None:
    """Fragments (with a ping between them) reach the app as one message, echoed in one frame."""
    with running(APP, *ONE, ready=1) as server, RawWS(server, "/echo") as client:
        client.handshake()
        client.send(TextMessage(data="hel", message_finished=False))
        client.send(Ping(payload=b"between"))
        client.send(TextMessage(data="lo, ", message_finished=False))
        client.send(TextMessage(data="wörld", message_finished=True))
        pong = client.next_event()
        assert isinstance(pong, Pong) and pong.payload == b"between"
        echoed = client.next_event()
        assert isinstance(echoed, TextMessage)
        assert echoed.message_finished, "the echo of a whole message came in fragments"
        assert echoed.data == "hello, wörld"
        for index in range(3):
            client.send(BytesMessage(data=bytes([index]) * 1000, message_finished=index == 2))
        assert client.next_message() == b"\x00" * 1000 + b"\x01" * 1000 + b"\x02" * 1000


def test_fragmented_message_from_websockets_client() -> None:
    """The websockets client's fragmented send (an iterable) is one message for the app."""
    with running(APP, *ONE, ready=1) as server:

        async def main() -> Any:
            async with ws_connect(server, "/echo") as ws:
                await ws.send(["frag", "mented ", "text"])
                return await asyncio.wait_for(ws.recv(), 10)

        assert run(main()) == "fragmented text"


def test_client_ping_answered_with_pong() -> None:
    """A client ping is answered with a pong carrying the same payload."""
    with running(APP, *ONE, ready=1) as server:

        async def main() -> tuple[float, str]:
            async with ws_connect(server, "/echo") as ws:
                # The waiter is only resolved by a pong that carries our payload.
                waiter = await ws.ping(b"are you there")
                latency = await asyncio.wait_for(waiter, 10)
                await ws.send("after the ping")
                return latency, await asyncio.wait_for(ws.recv(), 10)

        latency, echoed = run(main())
        assert isinstance(latency, float)
        assert echoed == "after the ping"  # the connection serves on after the ping
        with RawWS(server) as client:
            client.handshake()
            client.send(Ping(payload=b"raw ping"))
            event = client.next_event()
            assert isinstance(event, Pong)
            assert event.payload == b"raw ping"


# -- closing -------------------------------------------------------------------------------


def test_client_close_code_and_reason_reach_app(record_dir: Path) -> None:
    """A client close with 4000 + reason: the app gets websocket.disconnect 4000 + reason."""
    with running(APP, *ONE, env=env_for(record_dir), ready=1) as server:

        async def main() -> tuple[int | None, str | None]:
            async with ws_connect(server, "/echo?client-close") as ws:
                await ws.send("before closing")
                assert await asyncio.wait_for(ws.recv(), 10) == "before closing"
                await ws.close(4000, "client says bye")
                return ws.close_code, ws.close_reason

        code, reason = run(main())
        assert (code, reason) == (4000, "client says bye")  # the server echoed the close
        disconnect = read_record(record_dir, "client-close")
        assert disconnect == {
            "type": "websocket.disconnect",
            "code": 4000,
            "reason": "client says bye",
        }


def test_app_close_code_and_reason_reach_client(record_dir: Path) -> None:
    """The app closes with 4001 + reason: the client sees both, after the message before."""
    with running(APP, *ONE, env=env_for(record_dir), ready=1) as server:

        async def main() -> tuple[Any, ConnectionClosed]:
            async with ws_connect(server, "/app-close?app-close") as ws:
                first = await asyncio.wait_for(ws.recv(), 10)
                return first, await closed_by_server(ws)

        first, closed = run(main())
        assert first == "closing soon"
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "app says bye")
        assert read_record(record_dir, "app-close")["type"] == "websocket.disconnect"


def test_app_exception_after_accept_closes_1011() -> None:
    """An exception in the app after accept closes the connection with 1011."""
    with running(APP, *ONE, ready=1) as server:

        async def main() -> ConnectionClosed:
            async with ws_connect(server, "/error-after-accept") as ws:
                return await closed_by_server(ws)

        closed = run(main())
        assert closed.rcvd is not None and closed.rcvd.code == 1011
        server.wait_for(r"boom after accept")
        # The worker serves on.
        with RawWS(server) as client:
            client.handshake()
            client.send(TextMessage(data="still here"))
            assert client.next_message() == "still here"


def test_app_exception_before_accept_is_500() -> None:
    """An exception in the app before accept denies the handshake with a 500."""
    with running(APP, *ONE, ready=1) as server:
        status, _headers, body, closed = http_upgrade(
            server, GOOD_UPGRADE, target="/error-before-accept"
        )
        assert status == 500
        assert b"Internal Server Error" in body
        assert closed


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_closes_with_1001_and_exits_0(record_dir: Path, workers: int) -> None:
    """SIGTERM with a connected client: close frame 1001, the app sees it, exit status 0."""
    with running(APP, "--workers", str(workers), env=env_for(record_dir), ready=workers) as server:

        async def main() -> tuple[ConnectionClosed, float]:
            async with ws_connect(server, "/echo?sigterm") as ws:
                await ws.send("hi")
                assert await asyncio.wait_for(ws.recv(), 10) == "hi"
                server.send_signal(signal.SIGTERM)
                start = time.monotonic()
                closed = await closed_by_server(ws)
                return closed, time.monotonic() - start

        closed, elapsed = run(main())
        assert closed.rcvd is not None and closed.rcvd.code == 1001
        assert elapsed < 5
        assert server.wait_exit(15) == 0
        assert read_record(record_dir, "sigterm")["code"] == 1001


@pytest.mark.slow
def test_close_timeout_when_peer_never_answers() -> None:
    """After the server's close frame, a peer that never answers loses TCP within ~6 s."""
    with running(APP, *ONE, ready=1) as server, RawWS(server, "/app-close") as client:
        client.handshake()
        assert client.next_message() == "closing soon"
        close = client.expect_close()
        assert close.code == 4001
        elapsed = client.wait_eof(timeout=15)
        assert 3 < elapsed < 7, f"TCP closed {elapsed:.1f}s after the close frame"


def test_client_close_answered_and_tcp_closed() -> None:
    """A raw client's close frame is answered with the same code and then TCP closes."""
    with running(APP, *ONE, ready=1) as server, RawWS(server) as client:
        client.handshake()
        client.send(CloseConnection(code=4000, reason="raw bye"))
        answer = client.expect_close()
        assert (answer.code, answer.reason) == (4000, "raw bye")
        assert client.wait_eof(timeout=5) < 2


def test_ping_during_closing_handshake_is_harmless(record_dir: Path) -> None:
    """A ping that crosses the server's close frame is no server error; the close completes."""
    env = env_for(record_dir)
    with running(APP, *ONE, env=env, ready=1) as server, RawWS(server, "/app-close?late") as client:
        client.handshake()
        assert client.next_message() == "closing soon"
        close = client.expect_close()
        client.send_raw(frame(0x9, b"late ping"))
        wait_read(client.sock)  # the ping is read on its own, before the close frame
        client.send(close.response())
        client.wait_eof(timeout=5)
        assert read_record(record_dir, "late")["code"] == 4001  # the app has finished
        assert get(server, "/marker?after-close")[0] == 200
        server.assert_no_errors_before(
            "app marker: after-close", alarms=("Traceback", "Fatal error")
        )


# -- handshake: subprotocols, headers, denial ----------------------------------------------


def test_subprotocol_negotiation_and_accept_headers() -> None:
    """Offered ["a", "b"], the app picks "b": the 101 says so, with the app's extra headers."""
    with running(APP, *ONE, ready=1) as server:

        async def main() -> tuple[str | None, Any, Any]:
            async with ws_connect(server, "/subprotocol", subprotocols=["a", "b"]) as ws:
                offered = json.loads(await asyncio.wait_for(ws.recv(), 10))
                return ws.subprotocol, ws.response.headers, offered

        chosen, headers, offered = run(main())
        assert chosen == "b"
        assert headers.get_all("Sec-WebSocket-Protocol") == ["b"]
        assert offered == ["a", "b"]
        assert headers["X-Extra"] == "yes"
        assert headers["Set-Cookie"] == "session=1"
        assert headers["Upgrade"].lower() == "websocket"


def test_no_subprotocol_header_when_app_picks_none() -> None:
    """Nothing offered, nothing chosen: no Sec-WebSocket-Protocol header."""
    with running(APP, *ONE, ready=1) as server, RawWS(server, "/subprotocol") as client:
        accept = client.handshake()
        assert accept.subprotocol is None
        assert b"sec-websocket-protocol" not in client.head
        assert json.loads(client.next_message()) == []


def test_denial_response_single_body() -> None:
    """websocket.http.response: the client gets the app's 401, its headers and its body."""
    with running(APP, *ONE, ready=1) as server:

        async def main() -> InvalidStatus:
            try:
                async with ws_connect(server, "/deny"):
                    pass
            except InvalidStatus as exc:
                return exc
            raise AssertionError("the handshake was accepted")

        denied = run(main())
        assert denied.response.status_code == 401
        assert denied.response.headers["WWW-Authenticate"] == "Bearer"
        assert denied.response.headers["Content-Type"] == "text/plain"
        assert denied.response.body == b"go away, you!"


def test_denial_response_in_two_body_parts() -> None:
    """A denial body sent in two messages reaches the client whole, with status and headers."""
    with running(APP, *ONE, ready=1) as server, RawWS(server, "/deny-parts") as client:
        event = client.next_event()
        assert isinstance(event, RejectConnection), event
        assert event.status_code == 401
        headers = dict(event.headers)
        assert headers[b"x-denied"] == b"twice"
        assert headers[b"content-type"] == b"text/plain"
        body = b""
        while True:
            part = client.next_event()
            assert isinstance(part, RejectData), part
            body += part.data
            if part.body_finished:
                break
        assert body == b"first part, second part"
        assert client.wait_eof(timeout=5) < 5

    with running(APP, *ONE, ready=1) as server:

        async def main() -> InvalidStatus:
            try:
                async with ws_connect(server, "/deny-parts"):
                    pass
            except InvalidStatus as exc:
                return exc
            raise AssertionError("the handshake was accepted")

        denied = run(main())
        assert denied.response.status_code == 401
        assert denied.response.body == b"first part, second part"


def test_scope_extensions_offer_http_response() -> None:
    """scope["extensions"] of a websocket scope has "websocket.http.response"."""
    with running(APP, *ONE, ready=1) as server:
        status, headers, body, _closed = http_upgrade(server, GOOD_UPGRADE, "/extensions")
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert "websocket.http.response" in json.loads(body)


def test_close_before_accept_is_403() -> None:
    """websocket.close before accept denies the handshake with 403; the worker serves on."""
    with running(APP, *ONE, ready=1) as server:

        async def main() -> InvalidStatus:
            try:
                async with ws_connect(server, "/close-before-accept"):
                    pass
            except InvalidStatus as exc:
                return exc
            raise AssertionError("the handshake was accepted")

        assert run(main()).response.status_code == 403
        status, _headers, _body, closed = http_upgrade(server, GOOD_UPGRADE, "/close-before-accept")
        assert status == 403
        assert closed


# -- bad handshakes ------------------------------------------------------------------------


def test_wrong_websocket_version_is_426() -> None:
    """Sec-WebSocket-Version: 8 gets 426 with Sec-WebSocket-Version: 13, then a close."""
    with running(APP, *ONE, ready=1) as server:
        status, headers, _body, closed = http_upgrade(
            server, upgrade_headers(sec_websocket_version="8")
        )
        assert status == 426
        assert headers.get("sec-websocket-version") == "13"
        assert closed


def test_missing_websocket_key_is_400() -> None:
    """An upgrade without Sec-WebSocket-Key gets 400 and a close."""
    with running(APP, *ONE, ready=1) as server:
        status, _headers, body, closed = http_upgrade(
            server, upgrade_headers(sec_websocket_key=None)
        )
        assert status == 400
        assert b"Sec-WebSocket-Key" in body
        assert closed
        # The worker serves on.
        with RawWS(server) as client:
            client.handshake()
            client.send(TextMessage(data="ok"))
            assert client.next_message() == "ok"


def test_upgrade_after_http_request_on_same_connection() -> None:
    """A keep-alive connection that served a plain request can then upgrade to WebSocket."""
    with (
        running(APP, *ONE, ready=1) as server,
        socket.create_connection((server.host, server.port), timeout=10) as sock,
    ):
        conn = h11.Connection(h11.CLIENT)
        host = f"{server.host}:{server.port}"
        request = h11.Request(method="GET", target="/", headers=[("Host", host)])
        sock.sendall(conn.send(request) + conn.send(h11.EndOfMessage()))
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                assert event.status_code == 200
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event}")
        assert body == b"http ok"
        assert conn.trailing_data == (b"", False)
        with RawWS(server, "/echo", sock=sock) as client:
            client.handshake()
            client.send(TextMessage(data="upgraded"))
            assert client.next_message() == "upgraded"


def test_wsgi_app_refuses_upgrade_with_400() -> None:
    """A WSGI app asked for a WebSocket: 400 that says why, a close, and the worker serves on."""
    with running(WSGI, *ONE, ready=1) as server:
        start = time.monotonic()
        status, headers, body, closed = http_upgrade(server, GOOD_UPGRADE, target="/")
        assert time.monotonic() - start < 5
        assert status == 400
        assert b"WSGI" in body and b"WebSocket" in body
        assert headers.get("connection") == "close"
        assert closed

        async def main() -> InvalidStatus:
            try:
                async with ws_connect(server, "/"):
                    pass
            except InvalidStatus as exc:
                return exc
            raise AssertionError("the handshake was accepted")

        assert run(main()).response.status_code == 400
        status, _headers, body, _closed = http_upgrade(server, [], "/", wait_close=0.01)
        assert status == 200
        assert body == str(server.pid).encode()


# -- protocol errors -----------------------------------------------------------------------

PROTOCOL_ERRORS = {
    "invalid-utf8": (frame(0x1, b"ok \xff\xfe bad"), 1007),
    "unmasked": (frame(0x1, b"not masked", masked=False), 1002),
    "bad-opcode": (frame(0x3, b"reserved opcode"), 1002),
    "fragmented-ping": (frame(0x9, b"half a ping", fin=False), 1002),
    "rsv1-without-extension": (frame(0x1, b"compressed?", rsv1=True), 1002),
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
def test_protocol_error_closes_with_code(case: str, record_dir: Path) -> None:
    """A broken frame: close frame with the right code, the app told, TCP closed at once."""
    data, code = PROTOCOL_ERRORS[case]
    with (
        running(APP, *ONE, env=env_for(record_dir), ready=1) as server,
        RawWS(server, f"/echo?{case}") as client,
    ):
        client.handshake()
        client.send(TextMessage(data="fine so far"))
        assert client.next_message() == "fine so far"
        client.send_raw(data)
        close = client.expect_close(timeout=5)
        assert close.code == code, close
        assert client.wait_eof(timeout=5) < 2
        assert read_record(record_dir, case)["code"] == code


def test_message_size_limit() -> None:
    """--ws-max-message-size 1024: a 1024-byte message passes, 2000 bytes close with 1009."""
    with running(APP, *ONE, "--ws-max-message-size", "1024", ready=1) as server:

        async def main() -> ConnectionClosed:
            async with ws_connect(server, "/echo") as ws:
                await ws.send(b"x" * 1024)
                assert await asyncio.wait_for(ws.recv(), 10) == b"x" * 1024
                await ws.send(b"y" * 2000)
                return await closed_by_server(ws)

        closed = run(main())
        assert closed.rcvd is not None and closed.rcvd.code == 1009

        # Fragments that add up to more than the limit are refused as well.
        with RawWS(server) as client:
            client.handshake()
            for _ in range(5):
                client.send(BytesMessage(data=b"z" * 300, message_finished=False))
            close = client.expect_close()
            assert close.code == 1009
            client.send(close.response())
            assert client.wait_eof(timeout=5) < 2


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_text_size_limit_counts_characters(deflate: bool) -> None:
    """The limit counts characters for text (per --help), compressed or not: 1024 "é" pass."""
    with (
        running(APP, *ONE, "--ws-max-message-size", "1024", ready=1) as server,
        RawWS(server, "/echo", deflate=deflate) as client,
    ):
        accept = client.handshake()
        assert bool(accept.extensions) == deflate
        client.send(TextMessage(data="é" * 1024))  # 1024 characters, 2048 bytes of UTF-8
        event = client.next_event()
        assert isinstance(event, TextMessage), f"1024 characters refused: {event}"
        assert event.data == "é" * 1024
        client.send(TextMessage(data="é" * 1025))
        assert client.expect_close().code == 1009


def test_compressed_message_over_limit_does_not_inflate_whole() -> None:
    """A small deflated frame that inflates to 128 MiB: 1009 without inflating it in memory."""
    compressor = zlib.compressobj(wbits=-15)
    zeros = bytes(MiB)
    parts = [compressor.compress(zeros) for _ in range(128)]
    payload = b"".join(parts) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert payload.endswith(b"\x00\x00\xff\xff")
    payload = payload[:-4]
    assert len(payload) < 256 * 1024
    with (
        running(APP, *ONE, "--ws-max-message-size", str(MiB), ready=1) as server,
        RawWS(server, "/echo", deflate=True) as client,
    ):
        accept = client.handshake()
        assert accept.extensions, "permessage-deflate not negotiated"
        client.send(BytesMessage(data=b"warm up"))
        assert client.next_message() == b"warm up"
        base = rss(server.pid)
        client.send_raw(frame(0x2, payload, rsv1=True))
        close = client.expect_close()
        assert close.code == 1009
        peak = peak_rss(server.pid)
        assert peak - base < 16 * MiB, f"worker peak RSS grew by {(peak - base) // MiB} MiB"


# -- keepalive -----------------------------------------------------------------------------

KEEPALIVE = ("--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5")


def test_keepalive_unanswered_pings_close_1011() -> None:
    """A client that never answers pings is closed with 1011 and loses TCP within seconds."""
    with running(APP, *ONE, *KEEPALIVE, ready=1) as server, RawWS(server) as client:
        start = time.monotonic()
        client.handshake()
        pings = 0
        while True:
            event = client.next_event(timeout=5)
            assert event is not None, "TCP closed without a close frame"
            if isinstance(event, Ping):
                pings += 1
            elif isinstance(event, CloseConnection):
                break
            else:
                raise AssertionError(f"unexpected {event}")
        assert pings >= 1
        assert event.code == 1011
        client.wait_eof(timeout=5)
        assert time.monotonic() - start < 5


def test_keepalive_answered_pings_stay_open() -> None:
    """A client that answers every ping stays connected, and echo still works."""
    with running(APP, *ONE, *KEEPALIVE, ready=1) as server, RawWS(server) as client:
        client.handshake()
        pings = 0
        deadline = time.monotonic() + 3
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = client.next_event(timeout=remaining)
            except TimeoutError:
                break
            assert isinstance(event, Ping), f"unexpected {event}"
            pings += 1
            client.send(event.response())
        assert pings >= 3
        client.send(TextMessage(data="still open"))
        while True:
            event = client.next_event()
            if isinstance(event, Ping):
                client.send(event.response())
                continue
            assert isinstance(event, TextMessage), event
            assert event.data == "still open"
            break


# -- per-message deflate -------------------------------------------------------------------


def compressible(size: int) -> str:
    line = "the quick brown fox jumps over the lazy dog %d\n"
    text = "".join(line % i for i in range(size // 40 + 1))
    return text[:size]


def test_per_message_deflate_negotiated_and_used() -> None:
    """Default: permessage-deflate is negotiated and a 1 MiB text travels compressed."""
    message = compressible(MiB)
    with running(APP, *ONE, ready=1) as server:
        with RawWS(server, deflate=True) as client:
            accept = client.handshake()
            assert b"sec-websocket-extensions: permessage-deflate" in client.head
            assert [e.name for e in accept.extensions] == ["permessage-deflate"]
            before = client.received
            client.send(TextMessage(data=message))
            assert client.next_message() == message
            on_wire = client.received - before
            assert on_wire < 200 * 1024, f"{on_wire} bytes on the wire for 1 MiB: not compressed"

        async def main() -> tuple[str | None, Any]:
            async with ws_connect(server, "/echo") as ws:
                await ws.send(message)
                echoed = await asyncio.wait_for(ws.recv(), 10)
                return ws.response.headers.get("Sec-WebSocket-Extensions"), echoed

        extensions, echoed = run(main())
        assert extensions is not None and extensions.startswith("permessage-deflate")
        assert echoed == message


def test_no_per_message_deflate_option() -> None:
    """--no-ws-per-message-deflate: not negotiated though offered; messages travel as is."""
    message = compressible(MiB)
    with (
        running(APP, *ONE, "--no-ws-per-message-deflate", ready=1) as server,
        RawWS(server, deflate=True) as client,
    ):
        accept = client.handshake()
        assert b"sec-websocket-extensions" not in client.head
        assert accept.extensions == []
        before = client.received
        client.send(TextMessage(data=message))
        assert client.next_message() == message
        assert client.received - before >= MiB


# -- backpressure --------------------------------------------------------------------------


@pytest.mark.slow
def test_backpressure_fast_sender_slow_app(record_dir: Path) -> None:
    """A client sending faster than the app reads is paused: worker RSS stays bounded."""
    with running(APP, *ONE, env=env_for(record_dir), ready=1) as server:
        pid = server.pid

        async def main() -> tuple[int, int, int]:
            async with ws_connect(
                server, "/slow-reader?slow", compression=None, close_timeout=1
            ) as ws:
                await asyncio.sleep(0.3)  # the handshake's allocations settle: a fair baseline
                base = peak = rss(pid)
                payload = os.urandom(64 * 1024)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 3
                sent = 0
                while sent < 2000 and loop.time() < deadline:
                    await asyncio.wait_for(ws.send(payload), 10)
                    sent += 1
                    if sent % 10 == 0:
                        peak = max(peak, rss(pid))
                peak = max(peak, peak_rss(pid))
                return sent, base, peak

        sent, base, peak = run(main())
        assert sent < 2000, "the server took 125 MiB from a client while the app read slowly"
        assert peak - base < 60 * MiB, f"worker RSS grew by {(peak - base) // MiB} MiB"
        assert read_record(record_dir, "slow")["read"] >= 1


@pytest.mark.slow
def test_backpressure_client_not_reading(record_dir: Path) -> None:
    """An app sending 200 MiB to a client that never reads stalls early; RSS stays bounded."""
    with running(APP, *ONE, env=env_for(record_dir), ready=1) as server:
        with RawWS(server, "/flood?flood") as client:
            client.handshake()
            base = rss(server.pid)
            time.sleep(3)  # the buffers fill (no event says "full"); then the app must stall
            stalled_at = read_record(record_dir, "flood")["sent"]
            time.sleep(1)  # and make no progress for a whole second
            progress = read_record(record_dir, "flood")
            assert progress["sent"] == stalled_at, "the app kept sending to a client not reading"
            assert not progress["done"]
            assert progress["sent"] < 40 * MiB
            grown = peak_rss(server.pid) - base
            assert grown < 60 * MiB, f"worker RSS grew by {grown // MiB} MiB"
        # The client went away: the app's blocked send ends and the app finishes.
        assert wait_until(lambda: read_record(record_dir, "flood")["done"], 10)


@pytest.mark.slow
def test_stop_bounded_with_client_not_reading(record_dir: Path) -> None:
    """SIGTERM while the app's sends fill a non-reading client: closed after CLOSE_TIMEOUT.

    The 1001 close frame cannot leave (the socket buffers are full); the connection must
    be dropped once the peer had CLOSE_TIMEOUT (5 s) to answer, not at graceful_timeout.
    """
    with (
        running(APP, *ONE, "--graceful-timeout", "30", env=env_for(record_dir), ready=1) as server,
        RawWS(server, "/flood?flood") as client,
    ):
        client.handshake()
        assert wait_until(lambda: read_record(record_dir, "flood")["sent"] >= MiB, 10)
        time.sleep(1)  # the buffers are full by now
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait_exit(15)
        except subprocess.TimeoutExpired:
            raise AssertionError("server still running 15 s after SIGTERM") from None
        assert code == 0
        assert time.monotonic() - start < 10


@pytest.mark.slow
def test_keepalive_drops_client_not_reading(record_dir: Path) -> None:
    """A client that reads nothing (so answers no ping) is dropped within seconds."""
    with (
        running(APP, *ONE, *KEEPALIVE, env=env_for(record_dir), ready=1) as server,
        RawWS(server, "/flood?flood") as client,
    ):
        client.handshake()
        # The app's blocked send ends once the connection is dropped.
        dropped = wait_until(lambda: read_record(record_dir, "flood")["done"], 8)
        assert dropped, "a client answering no ping for 8 s is still connected"
        assert read_record(record_dir, "flood")["sent"] < 40 * MiB


# -- frameworks, scope, state --------------------------------------------------------------


def test_starlette_websocket_endpoint_two_workers() -> None:
    """A Starlette WebSocket endpoint: accept, receive_text, send_text, close(4002)."""
    with running(STARLETTE, "--workers", "2", ready=2) as server:

        async def one(index: int) -> tuple[int, ConnectionClosed]:
            async with ws_connect(server, "/ws") as ws:
                hello = await asyncio.wait_for(ws.recv(), 10)
                assert isinstance(hello, str)
                words = hello.split()
                assert words[0] == "pid" and words[2:] == ["path", "/ws"]
                await ws.send(f"message {index}")
                assert await asyncio.wait_for(ws.recv(), 10) == f"echo: message {index}"
                await ws.send("bye")
                return int(words[1]), await closed_by_server(ws)

        async def main() -> list[tuple[int, ConnectionClosed]]:
            return await asyncio.gather(*(one(i) for i in range(8)))

        results = run(main())
        workers = set(server.workers())
        for pid, closed in results:
            assert pid in workers
            assert closed.rcvd is not None
            assert (closed.rcvd.code, closed.rcvd.reason) == (4002, "starlette bye")


def test_websocket_scope_and_lifespan_state() -> None:
    """The websocket scope: type, scheme, paths, query, headers, client, server, state."""
    with running(APP, *ONE, ready=1) as server:

        async def main() -> tuple[dict[str, Any], tuple[str, int]]:
            async with ws_connect(
                server,
                "/scope/caf%C3%A9%20x?a=1&b=%20",
                additional_headers={"X-Custom": "yes"},
                subprotocols=["chat"],
            ) as ws:
                scope = json.loads(await asyncio.wait_for(ws.recv(), 10))
                return scope, ws.local_address[:2]

        scope, local = run(main())
        assert scope["type"] == "websocket"
        assert scope["scheme"] == "ws"
        assert scope["asgi"]["version"] == "3.0"
        assert scope["http_version"] == "1.1"
        assert scope["path"] == "/scope/café x"
        assert scope["raw_path"] == "/scope/caf%C3%A9%20x"
        assert scope["query_string"] == "a=1&b=%20"
        assert scope["root_path"] == ""
        headers = dict(scope["headers"])
        assert headers["x-custom"] == "yes"
        assert headers["upgrade"].lower() == "websocket"
        assert "sec-websocket-key" in headers
        assert all(name == name.lower() for name, _ in scope["headers"])
        assert scope["client"] == [local[0], local[1]]
        assert scope["server"] == ["127.0.0.1", server.port]
        assert scope["subprotocols"] == ["chat"]
        assert scope["state"]["greeting"] == "hello from lifespan"
        assert scope["state"]["startup_pid"] == server.pid
