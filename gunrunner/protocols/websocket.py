"""WebSockets: an asyncio.Protocol that drives a wsproto connection after an upgrade.

The h11 driver hands the connection over when a GET asks for `Upgrade: websocket`; the
request head has been parsed once, by h11, and wsproto is started from it
(`initiate_upgrade_connection`). wsproto owns the frames; this module moves bytes,
assembles messages and enforces limits.

Rules:
1. Messages are whole when the app gets them; one larger than `max_message_size`
   closes the connection with 1009 before it is buffered entirely.
2. Backpressure both ways: at most `max_queue` received messages wait for the app
   (then reading pauses); `send` waits while the transport is paused.
3. Protocol errors from wsproto (bad UTF-8 1007, bad frames 1002) fail the connection:
   a close frame with the code, then the TCP connection is closed.
4. Every close is bounded: after our close frame the peer has CLOSE_TIMEOUT seconds to
   answer before the TCP connection is closed anyway.
5. A ping every `ping_interval`; no pong within `ping_timeout` closes with 1011.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import zlib
from dataclasses import dataclass
from typing import Any

import wsproto
import wsproto.events as ws
from wsproto.connection import ConnectionState
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from gunrunner.apps.types import Exchange, Headers, WebSocketBridge, WebSocketClosed
from gunrunner.protocols.waiters import wake_all

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds the peer gets to answer our close frame
HANDSHAKE_TIMEOUT = 30.0  # seconds the app gets to accept or deny


class BoundedPerMessageDeflate(PerMessageDeflate):
    """permessage-deflate that inflates at most `max_size` bytes per message.

    wsproto inflates each frame whole, so a few KiB of compressed zeros would become
    gigabytes before our size check saw them; past the limit this closes with 1009.
    (Uses wsproto's per-frame state: `_inbound_compressed`, `_inbound_is_compressible`,
    `_decompressor`; tests/unit/test_websocket_driver.py fails if they change.)
    """

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size
        self._inflated = 0

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        decompressor = self._decompressor
        assert decompressor is not None
        try:
            out = decompressor.decompress(bytes(data), self.max_size - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self.max_size or decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        if fin:
            self._inflated = 0
        return super().frame_inbound_complete(proto, fin)


@dataclass(frozen=True, kw_only=True, slots=True)
class WebSocketSettings:
    """Limits shared by every WebSocket of a worker."""

    max_message_size: int
    max_queue: int
    ping_interval: float
    ping_timeout: float
    per_message_deflate: bool


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection (implements apps.types.WebSocketSession)."""

    def __init__(
        self,
        settings: WebSocketSettings,
        connections: set[Any],
        bridge: WebSocketBridge,
        transport: asyncio.Transport,
        *,
        path: str,
        raw_path: bytes,
        query_string: bytes,
        headers: Headers,
        http_version: str,
        scheme: str,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        tls: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.connections = connections
        self.bridge = bridge
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.path = path
        self.raw_path = raw_path
        self.query_string = query_string
        self.headers = headers
        self.http_version = http_version
        self.scheme = "wss" if scheme in ("https", "wss") else "ws"
        self.client = client
        self.server = server
        self.tls = tls
        self.subprotocols: list[str] = []
        self.conn = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        self._offered_extensions: list[str] = []
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._parts: list[Any] = []
        self._part_size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._write_paused = False
        self._read_paused = False
        self._closed: WebSocketClosed | None = None  # set once no more messages will come
        self._lost = False
        self._accepted = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None

    @classmethod
    def take_over(
        cls,
        settings: WebSocketSettings,
        connections: set[Any],
        bridge: WebSocketBridge,
        transport: asyncio.Transport,
        *,
        request: Exchange,
        target: bytes,
        trailing: bytes,
    ) -> WebSocketProtocol:
        """Take `transport` over from an HTTP driver, after the upgrade `request` (whose
        raw target is `target`; `trailing`: bytes the client sent after it)."""
        proto = cls(
            settings,
            connections,
            bridge,
            transport,
            path=request.path,
            raw_path=request.raw_path,
            query_string=request.query_string,
            headers=request.headers,
            http_version=request.http_version,
            scheme=request.scheme,
            client=request.client,
            server=request.server,
            tls=request.tls,
        )
        transport.set_protocol(proto)
        proto.start(request.headers, target, trailing)
        return proto

    # -- start ----------------------------------------------------------------------------
    def start(self, raw_headers: Headers, target: bytes, trailing: bytes) -> None:
        """Take over the connection from the h11 driver and let wsproto check the handshake."""
        self.connections.add(self)
        try:
            self.conn.initiate_upgrade_connection(raw_headers, target)
        except RemoteProtocolError as exc:
            # A bad handshake: wsproto says which response (e.g. 426 + version header).
            hint = exc.event_hint
            log.debug("bad WebSocket handshake from %s: %s", self.client, exc)
            if isinstance(hint, ws.RejectConnection):
                body = f"{exc}\n".encode()
                self.transport.write(
                    self.conn.send(
                        ws.RejectConnection(
                            status_code=hint.status_code,
                            headers=[*hint.headers, (b"content-type", b"text/plain")],
                            has_body=True,
                        )
                    )
                    + self.conn.send(ws.RejectData(data=body, body_finished=True))
                )
            self.transport.close()
            return
        for event in self.conn.events():
            if isinstance(event, ws.Request):
                self.subprotocols = list(event.subprotocols)
                self._offered_extensions = [str(e) for e in event.extensions]
        if trailing:
            self.data_received(trailing)
        self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout)
        self.bridge.handle_websocket(self)

    def _handshake_timeout(self) -> None:
        if self.conn.state is ConnectionState.CONNECTING and not self._lost:
            log.warning(
                "WebSocket handshake to %s not answered by the app in %.0fs; closing",
                self.path,
                HANDSHAKE_TIMEOUT,
            )
            self.transport.close()

    # -- asyncio callbacks ----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        for event in self.conn.events():
            if isinstance(event, (ws.TextMessage, ws.BytesMessage)):
                self._on_message(event)
            elif isinstance(event, ws.Ping):
                # After our close frame no more frames may go out (a ping can cross it).
                if self.conn.state is ConnectionState.OPEN:
                    self._write(self.conn.send(event.response()))
            elif isinstance(event, ws.Pong):
                if event.payload == self._ping_payload:
                    self._ping_payload = None
            elif isinstance(event, ws.CloseConnection):
                self._on_close(event)
                return

    def _on_message(self, event: ws.TextMessage | ws.BytesMessage) -> None:
        if self._closed is not None:
            return
        self._parts.append(event.data)
        self._part_size += len(event.data)
        if self._part_size > self.settings.max_message_size:
            self._parts.clear()
            self.close(1009, f"message larger than {self.settings.max_message_size} bytes")
            return
        if not event.message_finished:
            return
        parts, self._parts, self._part_size = self._parts, [], 0
        if len(parts) == 1:
            message = parts[0]
        else:
            message = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
        self._messages.append(message)
        if len(self._messages) >= self.settings.max_queue and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def _on_close(self, event: ws.CloseConnection) -> None:
        if self.conn.state is ConnectionState.REMOTE_CLOSING:
            # The peer started the closing handshake: answer it, then close TCP.
            self._write(self.conn.send(event.response()))
            self._finish(event.code, event.reason or "")
            self.transport.close()
        elif self.conn.state is ConnectionState.CLOSED:
            # The answer to our close frame.
            self.transport.close()
        else:
            # wsproto found a protocol error (bad frame 1002, bad UTF-8 1007): fail the
            # connection with that code.
            log.debug(
                "WebSocket protocol error from %s: %s (%d)", self.client, event.reason, event.code
            )
            try:
                self._write(
                    self.conn.send(ws.CloseConnection(code=event.code, reason=event.reason or ""))
                )
            except LocalProtocolError:
                pass
            self._finish(event.code, event.reason or "")
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.connections.discard(self)
        for timer in (self._close_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self._finish(1006, "")
        wake_all(self._drain_waiters)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        wake_all(self._drain_waiters)

    def close_when_idle(self) -> None:
        """The server is stopping: close with 1001 (going away)."""
        if self.conn.state is ConnectionState.OPEN:
            self.close(1001, "server shutting down")
        elif self.conn.state is ConnectionState.CONNECTING:
            self.transport.close()

    # -- WebSocketSession API -------------------------------------------------------------
    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        extensions: list[Any] = []
        if self.settings.per_message_deflate:
            # The message check counts characters for text; UTF-8 takes up to 4 bytes
            # each, so inflation is bounded at 4x: memory stays bounded either way.
            extensions.append(BoundedPerMessageDeflate(4 * self.settings.max_message_size))
        self._write(
            self.conn.send(
                ws.AcceptConnection(
                    subprotocol=subprotocol, extensions=extensions, extra_headers=headers
                )
            )
        )
        self._accepted = True
        if self.settings.ping_interval > 0:
            self._ping_timer = self.loop.call_later(self.settings.ping_interval, self._ping)

    def reject(self, status: int, headers: Headers, body: bytes, more: bool) -> None:
        out = b""
        if self.conn.state is ConnectionState.CONNECTING:
            out = self.conn.send(
                ws.RejectConnection(status_code=status, headers=headers, has_body=True)
            )
        out += self.conn.send(ws.RejectData(data=body, body_finished=not more))
        self._write(out)
        if not more:
            self._finish(1000, "")
            self.transport.close()

    async def receive(self) -> str | bytes:
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._messages.popleft()
        if self._read_paused and len(self._messages) < self.settings.max_queue // 2 + 1:
            self._read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, data: str | bytes) -> None:
        if self._closed is not None or self.conn.state is not ConnectionState.OPEN:
            raise WebSocketClosed(self._closed.code if self._closed else 1006)
        if isinstance(data, str):
            self._write(self.conn.send(ws.TextMessage(data=data)))
        else:
            self._write(self.conn.send(ws.BytesMessage(data=data)))
        if self._write_paused and not self._lost:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def close(self, code: int, reason: str) -> None:
        state = self.conn.state
        if state is ConnectionState.CONNECTING:
            # Closing before accept denies the handshake (ASGI: 403).
            self.reject(403, [(b"content-length", b"0")], b"", False)
            return
        if state is not ConnectionState.OPEN:
            return
        self._write(self.conn.send(ws.CloseConnection(code=code, reason=reason)))
        self._finish(code, reason)
        # abort(), not close(): close() waits for a write buffer that a peer which reads
        # nothing never drains.
        self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    # -- helpers --------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        # (uvloop raises on a write after close(), which can come before connection_lost)
        if data and not self._lost and not self.transport.is_closing():
            self.transport.write(data)

    def _finish(self, code: int, reason: str) -> None:
        """No more messages will arrive: receive() raises after the queued ones."""
        if self._closed is None:
            self._closed = WebSocketClosed(code, reason)
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _ping(self) -> None:
        self._ping_timer = None
        if self.conn.state is not ConnectionState.OPEN:
            return
        if self._ping_payload is not None:
            log.info(
                "WebSocket peer %s did not answer a ping in %.1fs; closing",
                self.client,
                self.settings.ping_timeout,
            )
            self.close(1011, "keepalive ping timeout")
            self._close_timer = self.loop.call_later(0.5, self.transport.abort)
            return
        self._ping_payload = os.urandom(4)
        self._write(self.conn.send(ws.Ping(payload=self._ping_payload)))
        self._ping_timer = self.loop.call_later(self.settings.ping_timeout, self._ping_check)

    def _ping_check(self) -> None:
        self._ping_timer = None
        if self._ping_payload is not None:
            self._ping()  # still unanswered: closes
            return
        remaining = max(self.settings.ping_interval - self.settings.ping_timeout, 0.0)
        self._ping_timer = self.loop.call_later(remaining, self._ping)
