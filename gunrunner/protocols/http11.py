"""HTTP/1.1 over asyncio: an asyncio.Protocol that drives an h11.Connection.

h11 owns the wire format; this module moves bytes and events and never parses HTTP
itself. h11 types stay here and in request_head.py (the checks on a request head): the
app bridges see an `Exchange`.

Rules:
1. One request at a time per connection (h11 serialises pipelined requests): a request
   is handed to the bridge once the events already received are processed, and the next
   request is read only after the response completed (h11's PAUSED).
2. A response whose body is known goes out in one transport.write() (head + body +
   end), so that it never meets a delayed ACK.
3. Flow control both ways: reading pauses while more than BODY_HIGH_WATER bytes of body
   wait for the app; `Exchange.write` waits while the transport is paused.
4. A response that starts before the request body was read entirely carries
   `Connection: close`: the unread rest of the body is never parsed as a next request.
5. A protocol error gets h11's status hint (400, 431, ...) and a close; nothing reaches
   the app. So does a broken limit: request line 414, header count or field size or
   whole head 431, a Content-Length above max_body_size 413 before any body is read
   (and a chunked body that grows past it: 413 if nothing was sent yet, else a close).
6. Timers: a request head must be complete within header_timeout of its first byte (or
   of the connection's start): else 408 and a close (slowloris). Between requests an
   idle connection lives keepalive_timeout.
7. Every response that went out, the app's or a refusal, passes the observers once
   (protocols/observers.py); a refusal never reaches the app.
8. Keep-alive: HTTP/1.1 unless either side says close; HTTP/1.0 only when the request
   says keep-alive and the response's length is known (`keep_http10_alive`).
9. EOF after a whole request is a half-close: the response goes out, then the close.
   EOF anywhere else is a client gone away: close, and the app is told.
10. Drain (the worker stops): every response says Connection: close, and no connection
   closes earlier than it would have without the drain (`close_when_idle`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import KW_ONLY, dataclass, field
from typing import Any
from urllib.parse import unquote

import h11

from gunrunner.apps.types import (
    INTERNAL_ERROR,
    AppBridge,
    ClientDisconnected,
    Headers,
    internal_error_headers,
)
from gunrunner.protocols import chunk_header
from gunrunner.protocols.limits import Limits
from gunrunner.protocols.observers import ResponseObserver, ResponseRecord
from gunrunner.protocols.request_head import (
    PASSED,
    accepts_trailers,
    apply_forwarded,
    check_head,
    request_id,
    skip_blank_lines,
    split_absolute_form,
    with_host,
)
from gunrunner.protocols.responses import HAS_NO_BODY, REASONS, date_header, refusal
from gunrunner.protocols.sendfile import send_range
from gunrunner.protocols.websocket import WebSocketProtocol, WebSocketSettings
from gunrunner.proxy import ProxyTrust
from gunrunner.tls import TLSServer

log = logging.getLogger(__name__)

chunk_header.install()  # RFC 9112's chunk-header grammar for h11 (see that module)

# Body bytes buffered for an app that is not reading before we stop reading the socket.
BODY_HIGH_WATER = 256 * 1024

# What h11 raises for a response the app got wrong (bad header, wrong Content-Length).
_BAD_RESPONSE = (h11.LocalProtocolError, TypeError, ValueError)
# First bytes of a read that need a look: a TLS record (0x16), a blank line (CR, LF).
_SPECIAL_FIRST_BYTES = frozenset({0x16, 13, 10})


@dataclass(eq=False, slots=True)
class ConnectionSettings:
    """What every connection of a worker shares: bridge, limits, the drain flag."""

    bridge: AppBridge
    _: KW_ONLY
    limits: Limits
    server_header: bool
    scheme: str = "http"
    websocket: WebSocketSettings | None = None
    proxy: ProxyTrust | None = None
    # Told about every response sent, answered or refused (the access log, metrics).
    observers: tuple[ResponseObserver, ...] = ()
    tls: TLSServer | None = None  # set: connections arrive TLS-wrapped (scheme https)
    # HTTP11Protocol and WebSocketProtocol: each has close_when_idle() and transport.
    connections: set[Any] = field(default_factory=set)
    draining: bool = False

    def drain(self, *, close_idle: bool = False) -> None:
        """Stop keeping connections alive: each closes after its next response, or when
        its keep-alive timer runs out if no request comes first (close_when_idle()).

        `close_idle` closes idle keep-alive connections at once instead (dev reload: the
        next request must see the new code; a browser resends a GET on such a close).
        """
        self.draining = True
        for connection in list(self.connections):
            connection.close_when_idle()
            if close_idle and isinstance(connection, HTTP11Protocol):
                connection.close_if_idle()


class _Exchange:
    """One request and its response (implements apps.types.Exchange)."""

    __slots__ = (
        "_body",
        "_body_size",
        "_body_total",
        "_body_waiter",
        "_done_waiters",
        "_pending_head",
        "body_complete",
        "chunked",
        "client",
        "disconnected",
        "eof",
        "finished",
        "headers",
        "http_version",
        "method",
        "path",
        "proto",
        "query_string",
        "raw_path",
        "request_id",
        "response_started",
        "scheme",
        "sent",
        "server",
        "started",
        "status",
        "tls",
    )

    def __init__(self, proto: HTTP11Protocol, request: h11.Request) -> None:
        self.proto = proto
        self.method = request.method.decode("ascii")
        # HTTP/1.2 and later 1.x are served as 1.1 (RFC 9112 2.3); others were refused.
        self.http_version = "1.0" if request.http_version == b"1.0" else "1.1"
        self.headers: Headers = list(request.headers)
        target = request.target
        if not target.startswith(b"/"):
            authority, target = split_absolute_form(target)
            if authority is not None:
                self.headers = with_host(self.headers, authority)
        raw_path, _, self.query_string = target.partition(b"?")
        self.raw_path = raw_path
        path = raw_path.decode("latin-1")
        self.path = unquote(path) if "%" in path else path
        self.scheme = proto.settings.scheme
        self.client = proto.client
        self.server = proto.server
        self.tls = proto.tls
        self.disconnected = False
        self.eof = False  # the client sent EOF after this request: it may still read
        self.response_started = False
        self.finished = False
        self.body_complete = False
        self._body: list[bytes] = []
        self._body_size = 0
        self._body_total = 0
        self._body_waiter: asyncio.Future[None] | None = None
        self._done_waiters: list[asyncio.Future[None]] = []
        self._pending_head = b""
        self.request_id: str | None = None
        self.status = 0
        self.chunked = False  # the response goes out chunked (it can carry trailers)
        self.sent = 0  # body bytes sent, for the access log
        self.started = 0.0

    # -- request body, fed by the protocol -------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._body_total += len(data)
        limit = self.proto.limits.max_body_size
        if limit and self._body_total > limit:
            # Only a chunked body gets here: a Content-Length above it was refused.
            self.proto.reject(413, f"request body larger than max_body_size ({limit} bytes)")
            return
        self._body.append(data)
        self._body_size += len(data)
        if self._body_size > BODY_HIGH_WATER:
            self.proto.pause_for_body()
        self._wake_body()

    def feed_end(self) -> None:
        self.body_complete = True
        self._wake_body()

    def _wake_body(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def lost(self) -> None:
        """The connection is gone: wake every waiter."""
        self.disconnected = True
        self._wake_body()
        self._wake_done()

    def _wake_done(self) -> None:
        for waiter in self._done_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._done_waiters.clear()

    # -- Exchange API, used by the bridges ------------------------------------------------
    def body_known_empty(self) -> bool:
        return self.body_complete and not self._body

    async def receive(self) -> tuple[bytes, bool]:
        while not self._body and not self.body_complete:
            if self.disconnected:
                raise ClientDisconnected("client disconnected before the request body ended")
            proto = self.proto
            proto.want_body(self)
            self._body_waiter = proto.loop.create_future()
            timer = proto.loop.call_later(proto.limits.body_timeout, proto.body_timed_out)
            try:
                await self._body_waiter
            finally:
                timer.cancel()
                self._body_waiter = None
        if self._body:
            data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            self._body.clear()
            self._body_size = 0
            self.proto.resume_for_body()
        else:
            data = b""
        return data, not self.body_complete

    async def wait_done(self) -> None:
        if self.finished or self.disconnected or self.eof:
            return
        waiter = self.proto.loop.create_future()
        self._done_waiters.append(waiter)
        await waiter

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        if self.disconnected:
            return
        self.response_started = True
        self.status = status
        proto = self.proto
        conn = proto.conn
        try:
            head = conn.send(proto.response(self, status, headers, len(body)))
            proto.note_close_after_head()
            if body and self.method != "HEAD" and status not in HAS_NO_BODY:
                data = head + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                self.sent = len(body)
            else:
                data = head + conn.send(h11.EndOfMessage())
        except _BAD_RESPONSE as exc:
            proto.app_error(self, exc, status)
            return
        proto.transport.write(data)
        self._complete()

    def start(self, status: int, headers: Headers) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        self.response_started = True
        self.status = status
        try:
            self._pending_head = self.proto.conn.send(
                self.proto.response(self, status, headers, None)
            )
            self.proto.note_close_after_head()
        except _BAD_RESPONSE as exc:
            self.proto.app_error(self, exc, status)
            raise RuntimeError(f"invalid response: {exc}") from None

    async def write(self, data: bytes) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        proto = self.proto
        if self.method != "HEAD":
            try:
                out = proto.conn.send(h11.Data(data=data))
            except _BAD_RESPONSE as exc:
                proto.app_error(self, exc, None)
                raise RuntimeError(f"invalid response: {exc}") from None
            if self._pending_head:
                out = self._pending_head + out
                self._pending_head = b""
            proto.transport.write(out)
            self.sent += len(data)
        if proto.write_paused:
            await proto.drain()

    async def sendfile(self, file: Any, offset: int, count: int) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        proto = self.proto
        if self.method == "HEAD" or count <= 0:
            return
        span = _Span(count)
        try:
            # h11 frames the span (Content-Length accounting or a chunk header) and
            # hands it back untouched, so the bytes can go out by sendfile(2).
            data = h11.Data(data=span)  # type: ignore[arg-type]
            parts: list[Any] = proto.conn.send_with_data_passthrough(data) or []
        except _BAD_RESPONSE as exc:
            proto.app_error(self, exc, None)
            raise RuntimeError(f"invalid response: {exc}") from None
        out = self._pending_head
        self._pending_head = b""
        for part in parts:
            if part is not span:
                out += part
                continue
            if out:
                proto.transport.write(out)
                out = b""
            try:
                sent = await send_range(proto, file, offset, count, proto.limits.send_timeout)
            except OSError:
                self.abort()
                raise ClientDisconnected("client disconnected during sendfile") from None
            self.sent += sent
            if sent < count:
                log.error(
                    "file ended %d bytes short of the response to %s %s; connection closed",
                    count - sent,
                    self.method,
                    self.path,
                )
                self.abort()
                raise ClientDisconnected("response cut short: the file ended early")
        if out:
            proto.transport.write(out)
        if proto.write_paused:
            await proto.drain()

    def end(self, trailers: Headers | None = None) -> None:
        if self.disconnected:
            return
        proto = self.proto
        try:
            end = h11.EndOfMessage()
            if trailers and self.chunked and accepts_trailers(self.headers):
                end = h11.EndOfMessage(headers=trailers)  # validates them
            out = proto.conn.send(end)
        except _BAD_RESPONSE as exc:
            proto.app_error(self, exc, None)
            return
        proto.transport.write(self._pending_head + out)
        self._pending_head = b""
        self._complete()

    def abort(self) -> None:
        if not self.disconnected:
            self.proto.transport.close()
        self.lost()

    def _complete(self) -> None:
        self.finished = True
        self._wake_done()
        observers = self.proto.settings.observers
        if observers:
            record = self.record(self.status, self.sent, refused=False)
            for observer in observers:
                observer.response(record)
        self.proto.response_complete(self)

    def record(self, status: int, sent: int, *, refused: bool) -> ResponseRecord:
        """What the observers are told of this exchange's response."""
        return ResponseRecord(
            self.client,
            self.method,
            self.raw_path,
            self.query_string,
            self.http_version,
            self.headers,
            status,
            sent,
            time.monotonic() - self.started,
            self.request_id,
            refused,
        )


class _Span:
    """`count` bytes of a file, as h11 sees them: only their length matters to it."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


class HTTP11Protocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.loop = asyncio.get_running_loop()
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_size)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.tls: dict[str, Any] | None = None  # the ASGI tls extension, on TLS connections
        self.exchange: _Exchange | None = None
        self._dispatch: _Exchange | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle = False  # the timer running is the keep-alive one
        self._trusted = False  # the peer is a trusted proxy (forwarded_allow_ips)
        self._paused_for_cycle = False
        self._paused_for_body = False
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._close_when_done = False
        self._last_request_read = False
        self._http10_keep_alive = False  # the HTTP/1.0 request in progress is kept alive
        self.valid_host: bytes | None = None  # the last Host value that passed the check
        self._served = 0  # responses completed on this connection

    # -- asyncio callbacks ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            self.client = _host_port(transport.get_extra_info("peername"))
            self.server = _host_port(transport.get_extra_info("sockname"))
        if self.settings.tls is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                self.tls = self.settings.tls.connection_info(ssl_object)
        proxy = self.settings.proxy
        if proxy is not None:
            self._trusted = proxy.trusts(self.client[0] if self.client else None)
        self.settings.connections.add(self)
        if self.settings.draining:
            self._close_when_done = True
        self._timer = self.loop.call_later(self.limits.header_timeout, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.settings.connections.discard(self)
        self._cancel_timer()
        if self.exchange is not None:
            self.exchange.lost()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(ClientDisconnected("client disconnected"))
        self._drain_waiters.clear()

    def data_received(self, data: bytes) -> None:
        first = data[0]
        if first in _SPECIAL_FIRST_BYTES:
            if first == 0x16 and self._fresh():
                # 0x16 opens a TLS handshake record, never an HTTP request: a client
                # speaking HTTPS to a plain port. Nothing we could answer would reach it.
                log.debug("TLS handshake on a plain-HTTP port from %s; closed", self.client)
                self.transport.close()
                return
            if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
                data = skip_blank_lines(data)  # before a request (RFC 9112 2.2)
                if not data:
                    self._start_head_timer()
                    return
        if self._last_request_read:
            return  # after the client's last request (close, HTTP/1.0) nothing is read
        self._start_head_timer()  # (only when idle: a new request begins)
        self.conn.receive_data(data)
        if not self._paused_for_cycle:
            self._handle_events()

    def _start_head_timer(self) -> None:
        if self._idle:
            # A new request begins: its head must be complete within header_timeout,
            # however slowly its bytes trickle in.
            self._idle = False
            self._cancel_timer()
            self._timer = self.loop.call_later(self.limits.header_timeout, self._head_timeout)

    def note_close_after_head(self) -> None:
        """Our head said Connection: close after the request ended: from now on any byte
        from the client is ignored (h11 would take it for a protocol error and the
        response under way would be cut)."""
        if self.conn.their_state is h11.MUST_CLOSE:
            self._last_request_read = True

    def _fresh(self) -> bool:
        """Nothing has been received on this connection yet."""
        return self._served == 0 and self.exchange is None and not self.conn.trailing_data[0]

    def eof_received(self) -> bool:
        """The client will send nothing more (a FIN; under TLS, its close_notify).

        After a whole request it may still read (a half-close, RFC 9112 9.6): keep the
        transport open to send the response, then close. Anywhere else (idle, inside a
        head or a body) the client has gone away (nginx logs it as 499): returning False
        lets asyncio close the transport, and connection_lost tells the app (ASGI
        http.disconnect, WSGI read and write errors) at once, not at its next write.
        A pipelined request still buffered is answered too: reading (hence this EOF)
        waits until the request before it was answered.
        """
        exchange = self.exchange
        if exchange is None or not exchange.body_complete or self.settings.tls is not None:
            # (asyncio's TLS transport closes on the client's close_notify whatever we
            # answer, and warns if we ask it not to.)
            return False
        self._last_request_read = True  # nothing more will come
        self._close_when_done = True  # the response says Connection: close; then close
        # A client that closed its socket looks the same as one that half-closed. As Go's
        # net/http cancels the request's context: an app waiting for more (ASGI receive()
        # after the body) hears http.disconnect; a response the app sends still goes out.
        exchange.eof = True
        exchange._wake_done()
        return True

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    async def drain(self) -> None:
        """Wait until the client reads again; drop it after send_timeout."""
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        timer = self.loop.call_later(self.limits.send_timeout, self._send_timed_out)
        try:
            await waiter
        finally:
            timer.cancel()

    def _send_timed_out(self) -> None:
        log.info(
            "client %s read nothing of its response for %ss; connection dropped",
            self.client,
            self.limits.send_timeout,
        )
        self.transport.abort()

    # -- events ---------------------------------------------------------------------------
    def _handle_events(self) -> None:
        conn = self.conn
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._protocol_error(exc)
                return
            kind = type(event)
            if kind is h11.Data:
                exchange = self.exchange
                exchange.feed(event.data)  # type: ignore[union-attr]
                if exchange.disconnected:  # type: ignore[union-attr]
                    return  # refused (max_body_size): the connection is closing
            elif kind is h11.Request:
                request: h11.Request = event  # type: ignore[assignment]
                self._cancel_timer()
                exchange = _Exchange(self, request)
                check = check_head(
                    request.method,
                    request.target,
                    request.http_version,
                    exchange.headers,
                    limits=self.limits,
                    known_host=self.valid_host,
                )
                if check is not PASSED:
                    if check.status:
                        self.reject(check.status, check.reason, request)
                        return
                    if check.host is not None:
                        self.valid_host = check.host  # keep-alive requests repeat it
                    if check.forwarded and self._trusted:
                        self._apply_forwarded(exchange)
                if self.settings.observers:
                    exchange.started = time.monotonic()
                    exchange.request_id = request_id(exchange.headers, self._trusted)
                if request.http_version == b"1.0":
                    self._http10_keep_alive = keep_http10_alive(conn, exchange.headers)
                upgrade = check.upgrade
                if upgrade and exchange.method == "GET" and b"websocket" in upgrade.lower():
                    self._upgrade_websocket(exchange, request)
                    return
                self.exchange = self._dispatch = exchange
            elif kind is h11.EndOfMessage:
                self.exchange.feed_end()  # type: ignore[union-attr]
                if conn.their_state is h11.MUST_CLOSE:
                    self._last_request_read = True  # (close, HTTP/1.0): ignore what follows
                    break
            elif event is h11.NEED_DATA:
                break
            elif event is h11.PAUSED:
                # A pipelined request waits until this response is complete.
                self._paused_for_cycle = True
                self.transport.pause_reading()
                break
            elif kind is h11.ConnectionClosed:
                self.transport.close()
                break
        if self._dispatch is not None:
            exchange, self._dispatch = self._dispatch, None
            self.settings.bridge.handle(exchange)

    def _apply_forwarded(self, exchange: _Exchange) -> None:
        """Client, scheme and server as the trusted proxy in front of us reports them."""
        forwarded = apply_forwarded(
            exchange.headers,
            exchange.client,
            exchange.scheme,
            self.settings.proxy,  # type: ignore[arg-type]
        )
        exchange.client = forwarded.client
        exchange.scheme = forwarded.scheme
        if forwarded.server is not None and forwarded.headers is not None:
            exchange.server = forwarded.server
            exchange.headers = forwarded.headers

    def _upgrade_websocket(self, exchange: _Exchange, request: h11.Request) -> None:
        """Hand the connection to the WebSocket driver (or refuse: WSGI has no WebSockets)."""
        settings = self.settings
        handler = getattr(settings.bridge, "handle_websocket", None)
        if handler is None or settings.websocket is None:
            self.exchange = exchange
            body = (
                b"WebSocket upgrade refused: this server runs a WSGI app, which cannot "
                b"serve WebSockets; serve an ASGI app for them\n"
            )
            exchange.respond(
                400,
                [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
                body,
            )
            return
        self._cancel_timer()
        settings.connections.discard(self)
        trailing = self.conn.trailing_data[0]
        proto = WebSocketProtocol(
            settings.websocket,
            settings.connections,
            settings.bridge,  # type: ignore[arg-type]
            self.transport,
            path=exchange.path,
            raw_path=exchange.raw_path,
            query_string=exchange.query_string,
            headers=exchange.headers,
            http_version=exchange.http_version,
            scheme=exchange.scheme,
            client=exchange.client,
            server=exchange.server,
            tls=exchange.tls,
        )
        self.transport.set_protocol(proto)
        proto.start(exchange.headers, request.target, trailing)

    def reject(self, status: int, reason: str, head: h11.Request | None = None) -> None:
        """Refuse the request in progress with `status` and close (a limit was broken).

        `head`: a request head refused before it became the exchange in progress.
        """
        self._protocol_error(h11.RemoteProtocolError(reason, status), head)

    def _protocol_error(
        self, exc: h11.RemoteProtocolError, head: h11.Request | None = None
    ) -> None:
        status = exc.error_status_hint
        log.debug("bad request from %s: %s (answering %d)", self.client, exc, status)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not (
            self.exchange is not None and self.exchange.response_started
        ):
            headers, body = refusal(status, str(exc))
            try:
                data = self.conn.send(
                    h11.Response(
                        status_code=status, headers=headers, reason=REASONS.get(status, b"")
                    )
                )
            except h11.LocalProtocolError:
                data = b""
            if data:
                sent = 0
                try:
                    data += self.conn.send(h11.Data(data=body))
                    sent = len(body)
                except h11.LocalProtocolError:
                    pass  # a HEAD request: the head alone
                self.transport.write(data)
                if self.settings.observers:
                    self._observe_refusal(status, sent, head)
        if self.exchange is not None:
            self.exchange.lost()
        self.transport.close()

    def _observe_refusal(self, status: int, sent: int, head: h11.Request | None) -> None:
        """Tell the observers about a refusal, with what is known of its request within
        the limits (protocols/observers.py, Rule 3)."""
        exchange = self.exchange
        if exchange is not None:  # refused mid-body: its head passed every check
            record = exchange.record(status, sent, refused=True)
        elif head is not None and status != 414:  # its line is within limit_request_line
            path, _, query = head.target.partition(b"?")
            record = ResponseRecord(
                self.client,
                head.method.decode("ascii"),
                path,
                query,
                head.http_version.decode("ascii"),
                [] if status == 431 else list(head.headers),
                status,
                sent,
                0.0,
                None,
                True,
            )
        else:  # no head (garbage, too large, too slow) or a line too long to log
            record = ResponseRecord(
                self.client, None, b"", b"", "", [], status, sent, 0.0, None, True
            )
        for observer in self.settings.observers:
            observer.response(record)

    # -- responses ------------------------------------------------------------------------
    def response(
        self, exchange: _Exchange, status: int, headers: Headers, length: int | None
    ) -> h11.Response:
        """The h11 Response for the app's status and headers, plus ours."""
        has_length = has_server = chunked = False
        for name, _ in headers:
            lowered = name.lower()
            if lowered in (b"content-length", b"transfer-encoding"):
                has_length = True
                chunked = chunked or lowered == b"transfer-encoding"
            elif lowered == b"server":
                has_server = True
        extra: Headers = [(b"date", date_header())]
        if not has_server and self.settings.server_header:
            extra.append((b"server", b"gunrunner"))
        if length is not None and not has_length and status not in HAS_NO_BODY and status >= 200:
            extra.append((b"content-length", b"%d" % length))
        elif length is None:
            # As h11 frames it: chunked unless the length is known, there is no body,
            # or the client speaks HTTP/1.0 (then the close ends the body).
            exchange.chunked = (
                (chunked or not has_length)
                and exchange.http_version == "1.1"
                and exchange.method != "HEAD"
                and status not in HAS_NO_BODY
            )
        if self._close_when_done or self.settings.draining or not exchange.body_complete:
            extra.append((b"connection", b"close"))
        elif exchange.http_version == "1.0" and self._http10_keep_alive:
            # HTTP/1.0 closes unless the response says keep-alive (RFC 9112 9.3). For a
            # body of unknown length h11 turns this into "close": the close ends the body.
            extra.append((b"connection", b"keep-alive"))
        return h11.Response(
            status_code=status, headers=headers + extra, reason=REASONS.get(status, b"")
        )

    def app_error(self, exchange: _Exchange, exc: Exception, status: int | None) -> None:
        """The app's response broke HTTP (bad header, wrong Content-Length).

        If nothing went out yet the client gets a 500; otherwise the connection closes,
        so that a short or overlong body is never taken for a complete one.
        """
        if self.conn.our_state is h11.SEND_RESPONSE and status != 500:
            log.error(
                "invalid response from the app to %s %s: %s; answering 500",
                exchange.method,
                exchange.path,
                exc,
            )
            exchange.respond(500, internal_error_headers(), INTERNAL_ERROR)
            return
        log.error(
            "invalid response from the app to %s %s: %s; connection closed",
            exchange.method,
            exchange.path,
            exc,
        )
        exchange.abort()

    def response_complete(self, exchange: _Exchange) -> None:
        conn = self.conn
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
            self.transport.close()
            return
        conn.start_next_cycle()
        self.exchange = None
        self._served += 1
        if self._paused_for_body:
            # The app left body bytes unread while the rest of the body (its end too)
            # arrived: the body is complete, so reading may go on for the next request.
            self._paused_for_body = False
            if not self._paused_for_cycle:
                self.transport.resume_reading()
        if not self._paused_for_cycle:
            self._arm_idle_timer()  # h11 holds no byte of a next request (it would be PAUSED)
            return
        # Bytes of a pipelined request are buffered in h11: serve it now.
        self._paused_for_cycle = False
        self._skip_buffered_blank_lines()
        self.transport.resume_reading()
        self._handle_events()
        if self.exchange is None:
            if self.conn.trailing_data[0]:
                # Part of the next head is here: it gets header_timeout, not keep-alive.
                self._timer = self.loop.call_later(self.limits.header_timeout, self._head_timeout)
            else:
                self._arm_idle_timer()

    def _skip_buffered_blank_lines(self) -> None:
        """Blank lines after the previous request (RFC 9112 2.2 says to ignore them);
        h11 would take them for a bad request line. A fresh h11 connection gets what
        follows them."""
        pending = self.conn.trailing_data[0]
        if pending[:1] in (b"\r", b"\n"):
            conn = self.conn = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self.limits.max_head_size
            )
            rest = skip_blank_lines(pending)
            if rest:  # (receive_data(b"") would mean EOF to h11)
                conn.receive_data(rest)

    # -- flow control and timers ----------------------------------------------------------
    def pause_for_body(self) -> None:
        if not self._paused_for_body:
            self._paused_for_body = True
            self.transport.pause_reading()

    def resume_for_body(self) -> None:
        if self._paused_for_body:
            self._paused_for_body = False
            if not self._paused_for_cycle:
                self.transport.resume_reading()

    def want_body(self, exchange: _Exchange) -> None:
        """The app waits for body bytes: make sure they can arrive."""
        if self.conn.they_are_waiting_for_100_continue and not exchange.response_started:
            # RFC 9110 10.1.1: send 100 only once the app asks for the body.
            self.transport.write(
                self.conn.send(
                    h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                )
            )
        self.resume_for_body()

    def body_timed_out(self) -> None:
        """The app waited body_timeout for body bytes that did not come."""
        if self.exchange is not None and not self.exchange.body_complete:
            self.reject(408, f"no request body bytes for {self.limits.body_timeout}s")

    def close_when_idle(self) -> None:
        """The worker drains: from now on a response says Connection: close, and the
        connection closes after it.

        An idle keep-alive connection is not closed now: its client may be sending its
        next request at this very moment, and would meet the close instead of an answer
        ("Remote end closed connection without response"). It stays until its keep-alive
        timer runs out, as it would have without the drain, and a request that comes
        first is answered. So no close comes earlier than without the drain; the wait is
        bounded by keepalive_timeout (and the worker's by graceful_timeout). A connection
        that has not completed its first request is left to send it, bounded by its
        header timer.
        """
        self._close_when_done = True

    def close_if_idle(self) -> None:
        """Close now if idle between requests (served one, nothing of the next here)."""
        if self.exchange is None and self._served and not self.conn.trailing_data[0]:
            self.transport.close()

    def _arm_idle_timer(self) -> None:
        if self._last_request_read:
            self.transport.close()  # the client half-closed: no request can follow
            return
        self._idle = True
        self._timer = self.loop.call_later(self.limits.keepalive_timeout, self._idle_timeout)

    def _cancel_timer(self) -> None:
        self._idle = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_timeout(self) -> None:
        self._timer = None
        if self.exchange is None:
            self.transport.close()

    def _head_timeout(self) -> None:
        self._timer = None
        if self.exchange is not None:
            return
        if self.conn.trailing_data[0]:
            # Part of a head arrived, too slowly (slowloris): say so, then close.
            self.reject(408, f"request head not complete within {self.limits.header_timeout}s")
        else:
            self.transport.close()  # nothing at all: no one to answer


def keep_http10_alive(conn: h11.Connection, headers: Headers) -> bool:
    """Keep an HTTP/1.0 connection alive if its request asks for it; True if it does.

    h11 never keeps HTTP/1.0 alive: a 1.0 request turns its keep-alive flag off
    (`_keep_alive()` in h11/_connection.py), so our response would get `Connection: close`
    and the cycle would end in MUST_CLOSE. A fresh h11.Connection per request (as for blank
    lines) would restart the cycle but not change that head: the flag decides it. So
    right after h11 parsed a 1.0 head that says keep-alive (and not close), before any body
    or response event, the flag goes back on; from there h11 runs the cycle as for 1.1 and
    still ends a body of unknown length with the close (for a 1.0 peer it adds
    `Connection: close` itself, which turns the flag off again). One private attribute,
    checked by tests/unit/test_http11_driver.py; without it 1.0 closes, as before.
    """
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(token.strip() for token in value.lower().split(b","))
    if b"keep-alive" not in tokens or b"close" in tokens:
        return False
    state = getattr(conn, "_cstate", None)
    if getattr(state, "keep_alive", None) is not False:
        return False  # not the h11 we know: leave it its own way (close)
    state.keep_alive = True  # type: ignore[union-attr]
    return True


def _host_port(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None
