"""The driver-neutral half of an HTTP/1.x connection: what every parser driver shares.

A driver (protocols/http11.py for h11, protocols/httptools_driver.py for llhttp)
subclasses `HTTPConnection`: it turns bytes into request heads and body pieces (calling
`begin_request`, `HTTPExchange.feed`/`feed_end`, `dispatch`) and responses into bytes
(the `frame_*` hooks). Everything else lives here once: timers, flow control, the drain,
refusals and the response hook, the WebSocket hand-off.

Rules:
1. One request at a time per connection: a request is handed to the bridge once the
   events already received are processed, and the next request is read only after the
   response completed.
2. A response that starts before the request body was read entirely carries
   `Connection: close`: the unread rest of the body is never parsed as a next request.
3. A protocol error gets its status (400, 431, ...) and a close; nothing reaches the app.
   So does a broken limit: request line 414, header count or field size or whole head
   431, a Content-Length above max_body_size 413 before any body is read (and a chunked
   body that grows past it: 413 if nothing was sent yet, else a close).
4. Timers: a request head must be complete within header_timeout of its first byte (or
   of the connection's start): else 408 and a close (slowloris). Between requests an
   idle connection lives keepalive_timeout. An app waiting for body bytes gets them
   within body_timeout, else 408. The three are one Deadline, moved, never re-created.
5. Every response that went out, the app's or a refusal, passes the observers once
   (protocols/observers.py); a refusal never reaches the app.
6. Keep-alive: HTTP/1.1 unless either side says close; HTTP/1.0 only when the request
   says keep-alive and the response's length is known.
7. EOF after a whole request is a half-close: the response goes out, then the close.
   EOF anywhere else is a client gone away: close, and the app is told.
8. Drain (the worker stops): every response says Connection: close, and no connection
   closes earlier than it would have without the drain (`close_when_idle`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any, ClassVar, NamedTuple

from gunrunner.apps.types import (
    INTERNAL_ERROR,
    ClientDisconnected,
    Headers,
    internal_error_headers,
)
from gunrunner.protocols.deadline import Deadline
from gunrunner.protocols.exchange import HTTPExchange
from gunrunner.protocols.observers import refused_head_record
from gunrunner.protocols.request_head import PASSED, check_head, request_id
from gunrunner.protocols.responses import refusal
from gunrunner.protocols.settings import ConnectionSettings
from gunrunner.protocols.waiters import wake_all
from gunrunner.protocols.websocket import WebSocketProtocol

log = logging.getLogger(__name__)

# A body at least this long is not copied behind its response head (write_parts).
JOIN_LIMIT = 16 * 1024


class RequestLine(NamedTuple):
    """A request head refused before it became an exchange (for the observers)."""

    method: bytes
    target: bytes
    http_version: bytes
    headers: Headers


class HTTPConnection(asyncio.Protocol):
    """One client connection; a driver subclass supplies parsing and framing."""

    # What the driver's framing raises for a response the app got wrong.
    bad_response: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.tls: dict[str, Any] | None = None  # the ASGI tls extension, on TLS connections
        self.exchange: HTTPExchange | None = None
        self._dispatch: HTTPExchange | None = None
        self._timer = Deadline(settings.clock or self.loop)  # the head or keep-alive timer
        self._idle = False  # the timer running is the keep-alive one
        self.trusted = False  # the peer is a trusted proxy (forwarded_allow_ips)
        self.paused_for_cycle = False
        self._paused_for_body = False
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.close_when_done = False
        self.last_request_read = False
        self.http10_keep_alive = False  # the HTTP/1.0 request in progress is kept alive
        self.valid_host: bytes | None = None  # the last Host value that passed the check
        self.served = 0  # responses completed on this connection

    # -- what a driver supplies -------------------------------------------------------------
    def frame_head(self, exchange: HTTPExchange, status: int, headers: Headers) -> bytes:
        """The response head's bytes (headers: the app's plus ours, HTTPExchange.full_headers())."""
        raise NotImplementedError

    def frame_data(self, data: bytes) -> bytes:
        raise NotImplementedError

    def frame_span(self, count: int) -> tuple[bytes, bytes]:
        """Framing around `count` body bytes the caller sends itself (sendfile)."""
        raise NotImplementedError

    def frame_end(self, trailers: Headers | None) -> bytes:
        raise NotImplementedError

    def frame_continue(self) -> bytes:
        """A 100 Continue, if the client waits for one; else b""."""
        raise NotImplementedError

    def frame_refusal(self, status: int, headers: Headers, body: bytes) -> bytes:
        """The server's own answer to a request it refuses; b"" if none can go out
        (a response already started)."""
        raise NotImplementedError

    def head_sent(self) -> bool:
        """The response head in progress went out (a 500 can no longer replace it)."""
        raise NotImplementedError

    def request_ended_with_close(self) -> bool:
        """The request in progress was read whole and is the connection's last."""
        raise NotImplementedError

    def reusable(self) -> bool:
        """After a complete response: the connection may serve another request."""
        raise NotImplementedError

    def next_cycle(self) -> None:
        """Get ready for the next request; serve a pipelined one already buffered."""
        raise NotImplementedError

    def partial_head_buffered(self) -> bool:
        """Bytes of a request not yet complete are buffered."""
        raise NotImplementedError

    def buffered_bytes(self) -> bytes:
        """Bytes received after the request in progress (handed on to a WebSocket)."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Send `data` unless the transport is closing (uvloop raises on a write after
        close(), which can come before connection_lost(); asyncio drops it)."""
        transport = self.transport
        if not transport.is_closing():
            transport.write(data)

    def write_parts(self, head: bytes, body: bytes) -> None:
        """Send `head` then `body` in one call: joined when the body is small; else by
        writelines(), which does not copy the body behind its head (uvloop sends both in
        one writev; asyncio joins them itself)."""
        transport = self.transport
        if not transport.is_closing():
            if len(body) < JOIN_LIMIT:
                transport.write(head + body)
            else:
                transport.writelines((head, body))

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
            self.trusted = proxy.trusts(self.client[0] if self.client else None)
        self.settings.connections.add(self)
        if self.settings.draining:
            self.close_when_done = True
        self._timer.set(self.limits.header_timeout, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.settings.connections.discard(self)
        self.stop_timer()
        if self.exchange is not None:
            self.exchange.lost()
        wake_all(self._drain_waiters, ClientDisconnected("client disconnected"))

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
        self.last_request_read = True  # nothing more will come
        self.close_when_done = True  # the response says Connection: close; then close
        # A client that closed its socket looks the same as one that half-closed. As Go's
        # net/http cancels the request's context: an app waiting for more (ASGI receive()
        # after the body) hears http.disconnect; a response the app sends still goes out.
        exchange.eof = True
        exchange.wake_done()
        return True

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        wake_all(self._drain_waiters)

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

    # -- requests, as the driver parses them ----------------------------------------------
    def fresh(self) -> bool:
        """Nothing has been received on this connection yet."""
        return self.served == 0 and self.exchange is None and not self.partial_head_buffered()

    def start_head_timer(self) -> None:
        if self._idle:
            # A new request begins: its head must be complete within header_timeout,
            # however slowly its bytes trickle in.
            self._idle = False
            self._timer.set(self.limits.header_timeout, self._head_timeout)

    def begin_request(
        self, method: bytes, target: bytes, http_version: bytes, headers: Headers
    ) -> HTTPExchange | None:
        """A request head arrived whole: check it and make it the exchange in progress.

        None when it was refused (the connection is closing) or handed to the WebSocket
        driver: the driver stops reading events then. Else `dispatch()` runs the app
        once the events already received are processed.
        """
        self.cancel_timer()
        exchange = HTTPExchange(self, method, target, http_version, headers)
        check = check_head(
            method,
            target,
            http_version,
            exchange.headers,
            limits=self.limits,
            known_host=self.valid_host,
        )
        if check is not PASSED:
            if check.status:
                self.reject(
                    check.status,
                    check.reason,
                    RequestLine(method, target, http_version, headers),
                )
                return None
            if check.host is not None:
                self.valid_host = check.host  # keep-alive requests repeat it
            if check.forwarded and self.trusted:
                exchange.apply_forwarded(self.settings.proxy)  # type: ignore[arg-type]
        if self.settings.observers:
            exchange.started = time.monotonic()
            exchange.request_id = request_id(exchange.headers, self.trusted)
        elif self.settings.stats is not None:
            exchange.started = time.monotonic()
        upgrade = check.upgrade
        if upgrade and exchange.method == "GET" and b"websocket" in upgrade.lower():
            self._upgrade_websocket(exchange, target)
            return None
        self.exchange = self._dispatch = exchange
        return exchange

    def dispatch(self) -> None:
        """Hand the request that began to the app (once its received events are in)."""
        exchange = self._dispatch
        if exchange is not None:
            self._dispatch = None
            settings = self.settings
            settings.count_request()
            settings.bridge.handle(exchange)

    def _upgrade_websocket(self, exchange: HTTPExchange, target: bytes) -> None:
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
        self.stop_timer()
        settings.connections.discard(self)
        WebSocketProtocol.take_over(
            settings.websocket,
            settings.connections,
            settings.bridge,  # type: ignore[arg-type]
            self.transport,
            request=exchange,
            target=target,
            trailing=self.buffered_bytes(),
        )

    # -- refusals -------------------------------------------------------------------------
    def reject(self, status: int, reason: str, head: RequestLine | None = None) -> None:
        """Refuse the request in progress with `status` and close (a limit was broken,
        or the parser refused the bytes).

        `head`: a request head refused before it became the exchange in progress.
        """
        log.debug("bad request from %s: %s (answering %d)", self.client, reason, status)
        exchange = self.exchange
        self.cancel_timer()
        if self.transport.is_closing():
            pass  # (already closed: a timer or a late event after a close)
        elif not (exchange is not None and exchange.response_started):
            headers, body = refusal(status, reason)
            data = self.frame_refusal(status, headers, body)
            if data:
                self.write(data)
                stats = self.settings.stats
                if stats is not None:
                    stats.refused(status, len(data))
                if self.settings.observers:
                    if exchange is not None:
                        is_head = exchange.method == "HEAD"
                    else:
                        is_head = head is not None and head.method == b"HEAD"
                    self._observe_refusal(status, 0 if is_head else len(body), head)
        if exchange is not None:
            exchange.lost()
        self.transport.close()

    def _observe_refusal(self, status: int, sent: int, head: RequestLine | None) -> None:
        """Tell the observers about a refusal, with what is known of its request within
        the limits (protocols/observers.py, Rule 3)."""
        exchange = self.exchange
        if exchange is not None:  # refused mid-body: its head passed every check
            record = exchange.record(status, sent, refused=True)
        else:
            record = refused_head_record(self.client, head, status=status, sent=sent)
        for observer in self.settings.observers:
            observer.response(record)

    # -- responses ------------------------------------------------------------------------
    def note_close_after_head(self) -> None:
        """Our head said Connection: close after the request ended: from now on any byte
        from the client is ignored (a parser would take it for a protocol error and the
        response under way would be cut)."""
        if self.request_ended_with_close():
            self.last_request_read = True

    def app_error(self, exchange: HTTPExchange, exc: Exception, status: int | None) -> None:
        """The app's response broke HTTP (bad header, wrong Content-Length).

        If nothing went out yet the client gets a 500; otherwise the connection closes,
        so that a short or overlong body is never taken for a complete one.
        """
        if not self.head_sent() and status != 500:
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

    def response_complete(self) -> None:
        if not self.reusable():
            self.transport.close()
            return
        self.exchange = None
        self.served += 1
        if self._paused_for_body:
            # The app left body bytes unread while the rest of the body (its end too)
            # arrived: the body is complete, so reading may go on for the next request.
            self._paused_for_body = False
            if not self.paused_for_cycle:
                self.transport.resume_reading()
        self.next_cycle()

    def after_cycle(self) -> None:
        """The driver served what was buffered: wait for the next request."""
        if self.exchange is None:
            if self.partial_head_buffered():
                # Part of the next head is here: it gets header_timeout, not keep-alive.
                self._timer.set(self.limits.header_timeout, self._head_timeout)
            else:
                self.arm_idle_timer()

    # -- flow control and timers ----------------------------------------------------------
    def pause_for_body(self) -> None:
        if not self._paused_for_body:
            self._paused_for_body = True
            self.transport.pause_reading()

    def resume_for_body(self) -> None:
        if self._paused_for_body:
            self._paused_for_body = False
            if not self.paused_for_cycle:
                self.transport.resume_reading()

    def want_body(self, exchange: HTTPExchange) -> None:
        """The app waits for body bytes: make sure they can arrive."""
        if not exchange.response_started:
            # RFC 9110 10.1.1: send 100 only once the app asks for the body.
            data = self.frame_continue()
            if data:
                self.write(data)
        self.resume_for_body()

    def start_body_timer(self) -> None:
        """The app waits for body bytes: they must come within body_timeout (the
        connection's one Deadline: no head or keep-alive timer runs during a request)."""
        self._timer.set(self.limits.body_timeout, self.body_timed_out)

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
        self.close_when_done = True

    def close_if_idle(self) -> None:
        """Close now if idle between requests (served one, nothing of the next here)."""
        if self.exchange is None and self.served and not self.partial_head_buffered():
            self.transport.close()

    def arm_idle_timer(self) -> None:
        if self.last_request_read:
            self.transport.close()  # the client half-closed: no request can follow
            return
        self._idle = True
        self._timer.set(self.limits.keepalive_timeout, self._idle_timeout)

    def cancel_timer(self) -> None:
        self._idle = False
        self._timer.clear()

    def stop_timer(self) -> None:
        """No timer of this connection stays pending (it is gone, or another protocol
        object serves its transport now)."""
        self._idle = False
        self._timer.close()

    def _idle_timeout(self) -> None:
        if self.exchange is None:
            self.transport.close()

    def _head_timeout(self) -> None:
        if self.exchange is not None:
            return
        if self.partial_head_buffered():
            # Part of a head arrived, too slowly (slowloris): say so, then close.
            self.reject(408, f"request head not complete within {self.limits.header_timeout}s")
        else:
            self.transport.close()  # nothing at all: no one to answer


def _host_port(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None
