"""One request and its response, for every driver: the body queue, the response calls the
app bridges make, and completion (implements apps.types.Exchange).

Rules:
1. No parser here: bytes on the wire come from the driver's framing hooks
   (`frame_head`, `frame_data`, `frame_span`, `frame_end` on the connection), which
   raise the driver's `bad_response` errors for a response that breaks HTTP.
2. A response whose body is known goes out in one transport call (head + body + end,
   `write_parts`), so that it never meets a delayed ACK.
3. Reading pauses while more than BODY_HIGH_WATER bytes of body wait for the app;
   `write` waits while the transport is paused.
4. Every completed response passes the observers once (protocols/observers.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from gunrunner.apps.types import ClientDisconnected, Headers
from gunrunner.protocols.observers import ResponseRecord
from gunrunner.protocols.request_head import (
    accepts_trailers,
    apply_forwarded,
    split_absolute_form,
    with_host,
)
from gunrunner.protocols.responses import HAS_NO_BODY, date_header
from gunrunner.protocols.sendfile import send_range
from gunrunner.protocols.waiters import wake_all

if TYPE_CHECKING:
    from gunrunner.protocols.connection import HTTPConnection
    from gunrunner.proxy import ProxyTrust

log = logging.getLogger(__name__)

# Body bytes buffered for an app that is not reading before we stop reading the socket.
BODY_HIGH_WATER = 256 * 1024


class HTTPExchange:
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
        "response_headers",  # set only when settings.keep_response_headers
        "response_started",
        "scheme",
        "sent",
        "server",
        "started",
        "status",
        "tls",
    )
    response_headers: Headers  # set only when settings.keep_response_headers

    def __init__(
        self,
        proto: HTTPConnection,
        method: bytes,
        target: bytes,
        http_version: bytes,
        headers: Headers,
    ) -> None:
        self.proto = proto
        self.method = method.decode("ascii")
        # HTTP/1.2 and later 1.x are served as 1.1 (RFC 9112 2.3); others were refused.
        self.http_version = "1.0" if http_version == b"1.0" else "1.1"
        self.headers = headers
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

    # -- request body, fed by the driver ---------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.disconnected:
            return  # (refused: a parser that reads on past the refusal feeds no more)
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
        if self.disconnected:
            return  # a refused body never completes
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
        self.wake_done()

    def wake_done(self) -> None:
        wake_all(self._done_waiters)

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
            proto.start_body_timer()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None
                if proto.exchange is self:
                    proto.cancel_timer()
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
        try:
            head = proto.frame_head(self, status, self.full_headers(status, headers, len(body)))
            proto.note_close_after_head()
            rest = b""
            if body and self.method != "HEAD" and status not in HAS_NO_BODY:
                rest = proto.frame_data(body)
                self.sent = len(body)
            rest += proto.frame_end(None)
        except proto.bad_response as exc:
            proto.app_error(self, exc, status)
            return
        proto.write_parts(head, rest)
        self.complete()

    def start(self, status: int, headers: Headers) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        self.response_started = True
        self.status = status
        proto = self.proto
        try:
            self._pending_head = proto.frame_head(
                self, status, self.full_headers(status, headers, None)
            )
            proto.note_close_after_head()
        except proto.bad_response as exc:
            proto.app_error(self, exc, status)
            raise RuntimeError(f"invalid response: {exc}") from None

    async def write(self, data: bytes) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        proto = self.proto
        if self.method != "HEAD":
            try:
                out = proto.frame_data(data)
            except proto.bad_response as exc:
                proto.app_error(self, exc, None)
                raise RuntimeError(f"invalid response: {exc}") from None
            if self._pending_head:
                proto.write_parts(self._pending_head, out)
                self._pending_head = b""
            else:
                proto.write(out)
            self.sent += len(data)
        if proto.write_paused:
            await proto.drain()

    async def sendfile(self, file: Any, offset: int, count: int) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        proto = self.proto
        if self.method == "HEAD" or count <= 0:
            return
        try:
            # The driver frames the span (Content-Length accounting or a chunk header);
            # the bytes themselves go out by sendfile(2).
            before, after = proto.frame_span(count)
        except proto.bad_response as exc:
            proto.app_error(self, exc, None)
            raise RuntimeError(f"invalid response: {exc}") from None
        out = self._pending_head + before
        self._pending_head = b""
        if out:
            proto.write(out)
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
        if after:
            proto.write(after)
        if proto.write_paused:
            await proto.drain()

    def end(self, trailers: Headers | None = None) -> None:
        if self.disconnected:
            return
        proto = self.proto
        if not (trailers and self.chunked and accepts_trailers(self.headers)):
            trailers = None
        try:
            out = proto.frame_end(trailers)  # validates the trailers
        except proto.bad_response as exc:
            proto.app_error(self, exc, None)
            return
        proto.write(self._pending_head + out)
        self._pending_head = b""
        self.complete()

    def abort(self) -> None:
        if not self.disconnected:
            self.proto.transport.close()
        self.lost()

    def complete(self) -> None:
        self.finished = True
        self.wake_done()
        settings = self.proto.settings
        stats = settings.stats
        if stats is not None:
            stats.response(self.method, self.status, self.sent, time.monotonic() - self.started)
        observers = settings.observers
        if observers:
            record = self.record(self.status, self.sent, refused=False)
            for observer in observers:
                observer.response(record)
        self.proto.response_complete()

    def apply_forwarded(self, proxy: ProxyTrust) -> None:
        """Client, scheme and server as the trusted proxy in front of us reports them."""
        forwarded = apply_forwarded(self.headers, self.client, self.scheme, proxy)
        self.client = forwarded.client
        self.scheme = forwarded.scheme
        if forwarded.server is not None and forwarded.headers is not None:
            self.server = forwarded.server
            self.headers = forwarded.headers

    def full_headers(self, status: int, headers: Headers, length: int | None) -> Headers:
        """The app's headers plus ours (Date, Server, Content-Length, Connection)."""
        proto = self.proto
        exchange = self
        has_length = has_server = chunked = False
        for name, _ in headers:
            lowered = name.lower()
            if lowered in (b"content-length", b"transfer-encoding"):
                has_length = True
                chunked = chunked or lowered == b"transfer-encoding"
            elif lowered == b"server":
                has_server = True
        extra: Headers = [(b"date", date_header())]
        if not has_server and proto.settings.server_header:
            extra.append((b"server", b"gunrunner"))
        if length is not None and not has_length and status not in HAS_NO_BODY and status >= 200:
            extra.append((b"content-length", b"%d" % length))
        elif length is None:
            # As the framing goes: chunked unless the length is known, there is no body,
            # or the client speaks HTTP/1.0 (then the close ends the body).
            exchange.chunked = (
                (chunked or not has_length)
                and exchange.http_version == "1.1"
                and exchange.method != "HEAD"
                and status not in HAS_NO_BODY
            )
        if proto.close_when_done or proto.settings.draining or not exchange.body_complete:
            extra.append((b"connection", b"close"))
        elif exchange.http_version == "1.0" and proto.http10_keep_alive:
            # HTTP/1.0 closes unless the response says keep-alive (RFC 9112 9.3). For a
            # body of unknown length the framing turns this into "close".
            extra.append((b"connection", b"keep-alive"))
        full = headers + extra
        if proto.settings.keep_response_headers:
            self.response_headers = full  # (for an access log that logs response fields)
        return full

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
            # (absent when kept headers were not asked for, or no head was built)
            getattr(self, "response_headers", None),
        )
