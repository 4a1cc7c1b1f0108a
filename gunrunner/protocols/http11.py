"""The h11 driver: an HTTPConnection (protocols/connection.py) whose parsing and framing
are h11's. h11 is the default driver and the reference for behaviour.

h11 owns the wire format here; this module moves bytes and events and never parses HTTP
itself. h11 types stay in this module.

Rules:
1. h11 serialises pipelined requests: the next request is read only after the response
   completed (h11's PAUSED); blank lines between requests are skipped (RFC 9112 2.2).
2. A protocol error gets h11's status hint (400, 431, ...) and a close.
3. HTTP/1.0 keep-alive: h11 never keeps 1.0 alive; `keep_http10_alive` turns its flag
   back on when the request asks for it (one private attribute, guarded by a test).
"""

from __future__ import annotations

import logging
from typing import Any

import h11

from gunrunner.apps.types import Headers
from gunrunner.protocols import chunk_header
from gunrunner.protocols.connection import HTTPConnection
from gunrunner.protocols.exchange import BODY_HIGH_WATER, HTTPExchange
from gunrunner.protocols.request_head import skip_blank_lines
from gunrunner.protocols.responses import REASONS
from gunrunner.protocols.settings import ConnectionSettings
from gunrunner.stats import BYTES_RECEIVED

__all__ = ["BODY_HIGH_WATER", "ConnectionSettings", "HTTP11Protocol", "keep_http10_alive"]

log = logging.getLogger(__name__)

chunk_header.install()  # RFC 9112's chunk-header grammar for h11 (see that module)

# First bytes of a read that need a look: a TLS record (0x16), a blank line (CR, LF).
_SPECIAL_FIRST_BYTES = frozenset({0x16, 13, 10})
_CONTINUE = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")


class HTTP11Protocol(HTTPConnection):
    """One client connection, parsed and framed by h11."""

    bad_response = (h11.LocalProtocolError, TypeError, ValueError)

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.conn = self._new_h11()

    def _new_h11(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_size)

    # -- bytes in ---------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        stats = self.settings.stats
        if stats is not None:
            stats.counts[BYTES_RECEIVED] += len(data)
        first = data[0]
        if first in _SPECIAL_FIRST_BYTES:
            if first == 0x16 and self.fresh():
                # 0x16 opens a TLS handshake record, never an HTTP request: a client
                # speaking HTTPS to a plain port. Nothing we could answer would reach it.
                log.debug("TLS handshake on a plain-HTTP port from %s; closed", self.client)
                self.transport.close()
                return
            if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
                data = skip_blank_lines(data)  # before a request (RFC 9112 2.2)
                if not data:
                    self.start_head_timer()
                    return
        if self.last_request_read:
            return  # after the client's last request (close, HTTP/1.0) nothing is read
        self.start_head_timer()  # (only when idle: a new request begins)
        self.conn.receive_data(data)
        if not self.paused_for_cycle:
            self._handle_events()

    def _handle_events(self) -> None:
        conn = self.conn
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.reject(exc.error_status_hint, str(exc))
                return
            if isinstance(event, h11.Data):
                exchange = self.exchange
                assert exchange is not None
                exchange.feed(event.data)
                if exchange.disconnected:
                    return  # refused (max_body_size): the connection is closing
            elif isinstance(event, h11.Request):
                exchange = self.begin_request(
                    event.method, event.target, event.http_version, list(event.headers)
                )
                if exchange is None:
                    return  # refused, or now a WebSocket
                if event.http_version == b"1.0":
                    self.http10_keep_alive = keep_http10_alive(conn, exchange.headers)
            elif isinstance(event, h11.EndOfMessage):
                assert self.exchange is not None
                self.exchange.feed_end()
                if conn.their_state is h11.MUST_CLOSE:
                    self.last_request_read = True  # (close, HTTP/1.0): ignore what follows
                    break
            elif event is h11.NEED_DATA:
                break
            elif event is h11.PAUSED:
                # A pipelined request waits until this response is complete.
                self.paused_for_cycle = True
                self.transport.pause_reading()
                break
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                break
        self.dispatch()

    # -- bytes out --------------------------------------------------------------------------
    def frame_head(self, exchange: HTTPExchange, status: int, headers: Headers) -> bytes:
        return self.conn.send(
            h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""))
        )

    def frame_data(self, data: bytes) -> bytes:
        return self.conn.send(h11.Data(data=data))

    def frame_span(self, count: int) -> tuple[bytes, bytes]:
        # h11 frames the span (Content-Length accounting or a chunk header) and hands it
        # back untouched, so the bytes can go out by sendfile(2).
        span = _Span(count)
        parts: list[Any] = (
            self.conn.send_with_data_passthrough(
                h11.Data(data=span)  # type: ignore[arg-type]
            )
            or []
        )
        at = next(i for i, part in enumerate(parts) if part is span)
        return b"".join(parts[:at]), b"".join(parts[at + 1 :])

    def frame_end(self, trailers: Headers | None) -> bytes:
        end = h11.EndOfMessage(headers=trailers) if trailers else h11.EndOfMessage()
        return self.conn.send(end)

    def frame_continue(self) -> bytes:
        if self.conn.they_are_waiting_for_100_continue:
            return self.conn.send(_CONTINUE)
        return b""

    def frame_refusal(self, status: int, headers: Headers, body: bytes) -> bytes:
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return b""
        try:
            data: bytes = self.conn.send(
                h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""))
            )
        except h11.LocalProtocolError:
            return b""
        try:
            data += self.conn.send(h11.Data(data=body))
        except h11.LocalProtocolError:
            pass  # a HEAD request: the head alone
        return data

    # -- state ------------------------------------------------------------------------------
    def head_sent(self) -> bool:
        return self.conn.our_state is not h11.SEND_RESPONSE

    def request_ended_with_close(self) -> bool:
        return self.conn.their_state is h11.MUST_CLOSE

    def reusable(self) -> bool:
        conn = self.conn
        return conn.our_state is not h11.MUST_CLOSE and conn.their_state is h11.DONE

    def partial_head_buffered(self) -> bool:
        return bool(self.conn.trailing_data[0])

    def buffered_bytes(self) -> bytes:
        return bytes(self.conn.trailing_data[0])

    def next_cycle(self) -> None:
        self.conn.start_next_cycle()
        if not self.paused_for_cycle:
            self.arm_idle_timer()  # h11 holds no byte of a next request (it would be PAUSED)
            return
        # Bytes of a pipelined request are buffered in h11: serve it now.
        self.paused_for_cycle = False
        self._skip_buffered_blank_lines()
        self.transport.resume_reading()
        self._handle_events()
        self.after_cycle()

    def _skip_buffered_blank_lines(self) -> None:
        """Blank lines after the previous request (RFC 9112 2.2 says to ignore them);
        h11 would take them for a bad request line. A fresh h11 connection gets what
        follows them."""
        pending = self.conn.trailing_data[0]
        if pending[:1] in (b"\r", b"\n"):
            conn = self.conn = self._new_h11()
            rest = skip_blank_lines(pending)
            if rest:  # (receive_data(b"") would mean EOF to h11)
                conn.receive_data(rest)


class _Span:
    """`count` bytes of a file, as h11 sees them: only their length matters to it."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


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
