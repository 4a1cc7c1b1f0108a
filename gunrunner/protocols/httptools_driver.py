"""The httptools driver: an HTTPConnection (protocols/connection.py) that parses with
llhttp (through httptools) and frames responses with protocols/framing.py.

h11 is the reference for behaviour: every request gets the same answer from this driver
as from h11's (the conformance corpus and the property tests run against both). llhttp
is lenient or silent where h11 is strict, so the checks h11 makes and llhttp does not are
made here or in request_head.py, with h11's statuses.

Rules:
1. One request at a time: llhttp parses all it is fed, so the events of a pipelined
   request that arrive while a response is under way wait in `_queue` (reading pauses),
   and are replayed once that response completed.
2. A head llhttp refuses is handed, with the rest of the connection, to the h11 driver
   (`_hand_to_h11`): the reference decides, and answers. That head's first byte is found
   in the read from the end of the request before it (its head, then its Content-Length
   body). Where it cannot be found, or the error is in a body, the answer is 400 (501
   for a transfer coding), after the responses before it.
3. A chunked body is not llhttp's: llhttp stops at the end of its head, the body is read
   by chunked_body.py with h11's rules (and h11 judges its trailer section), and a new
   parser takes what follows it.
4. A head still incomplete past max_head_size bytes gets 431, as h11's
   max_incomplete_event_size does.
5. After a request that ends the connection (Connection: close, HTTP/1.0 without
   keep-alive) nothing more is read.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import httptools

from gunrunner.apps.types import Headers
from gunrunner.protocols.chunked_body import ChunkedBody
from gunrunner.protocols.connection import HTTPConnection
from gunrunner.protocols.exchange import HTTPExchange
from gunrunner.protocols.framing import BadResponse, Framer
from gunrunner.protocols.h11_rules import (
    FRAMING_FIELDS,
    h11_takes_trailers,
    normalize_framing,
    plain_request_line,
    request_flags,
)
from gunrunner.protocols.request_head import skip_blank_lines
from gunrunner.protocols.responses import REASONS
from gunrunner.protocols.settings import ConnectionSettings
from gunrunner.stats import BYTES_RECEIVED

log = logging.getLogger(__name__)

_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}
# Queued events of a pipelined request (Rule 1).
_HEAD, _BODY, _END, _ERROR, _HANDOFF = range(5)
_BLANK = (13, 10)  # CR, LF


class HttpToolsProtocol(HTTPConnection):
    """One client connection, parsed by llhttp and framed by framing.Framer."""

    bad_response = (BadResponse, TypeError, ValueError)

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.parser = self._new_parser()
        self.framer = Framer()
        self._url = b""
        self._headers: Headers = []
        self._in_head = False  # a request head has begun and is not complete yet
        self._head_bytes = 0  # bytes read while that head was incomplete
        self._method = b""  # of the request being read or answered
        self._keep_alive = True  # the request side's verdict for the request in progress
        self._request_done = False  # the request in progress was read whole
        self._expect_continue = False  # the client waits for 100 Continue
        self._head_out = False  # the response head in progress was framed
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._upgrade: tuple[bytes, bytes, bytes, Headers] | None = None
        self._trailing = b""  # bytes after an upgrade request
        self._framing_fields = False  # the head has Content-Length, Transfer-Encoding or Host
        self._in_message = False  # between on_message_begin and on_message_complete
        self._completed_here = False  # a message completed in the read being parsed
        self._raw: bytes | None = None  # the head in progress, from its first byte on
        self._data = b""  # the read being parsed
        self._head_raw: bytes | None = None  # the last head, from its first byte on
        self._body_here = 0  # body bytes of the message in progress in this read
        self._chunked = False  # the message in progress has a chunked body
        self._body: ChunkedBody | None = None  # that body, read here (Rule 3)
        self._take_body = False  # llhttp was stopped at the end of a chunked head
        self._head_done_before = False  # its head was complete before this read began
        self._has_host = False  # the head in progress has a Host field

    def _new_parser(self) -> httptools.HttpRequestParser:
        parser = httptools.HttpRequestParser(self)
        # HTTP/1.2, 2.0 ...: parsed, then answered by request_head's version check, as
        # after h11.
        # Whitespace between a chunk size and ';' is allowed, as by h11 (RFC 9112 7.1.1).
        parser.set_dangerous_leniencies(lenient_version=True, lenient_spaces_after_chunk_size=True)
        return parser

    # -- bytes in ---------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        stats = self.settings.stats
        if stats is not None:
            stats.counts[BYTES_RECEIVED] += len(data)
        if self.last_request_read:
            return  # after the client's last request nothing is read
        if self._body is not None:
            self._read_chunked(data, 0)  # (Rule 3)
            return
        if data[0] == 0x16 and self.fresh():
            # 0x16 opens a TLS handshake record, never an HTTP request: a client
            # speaking HTTPS to a plain port. Nothing we could answer would reach it.
            log.debug("TLS handshake on a plain-HTTP port from %s; closed", self.client)
            self.transport.close()
            return
        self.start_head_timer()  # (only when idle: a new request begins)
        if not self._in_message and data[0] in _BLANK:
            blank = self._blank_lines(data)
            if blank is None:
                if not self.transport.is_closing():
                    self.dispatch()  # (a request that ended just before the blank lines)
                return
            data = blank
        self._data = data
        self._completed_here = False
        self._body_here = 0
        self._head_done_before = not self._in_head
        if self._in_head and self._raw is not None:
            self._raw += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded(data[exc.args[0] :])
            return
        except httptools.HttpParserError as exc:
            if self._take_body:
                self._take_body = False
                if self.transport.is_closing() or self.transport.get_protocol() is not self:
                    return  # (refused, or a WebSocket now)
                start = self._body_start()
                if start >= 0:
                    self._read_chunked(data, start)  # (Rule 3)
                    return
                self._body = None
                self._event(_ERROR, 400, "malformed request")
            if self.last_request_read:
                pass
            elif self._in_head and self._raw is not None:
                self._event(_HANDOFF, self._raw)  # h11 decides (Rule 2)
                if self.transport.get_protocol() is not self:
                    return
            else:
                self._event(_ERROR, self._error_status(exc), str(exc) or "malformed request")
        else:
            if data[-1] == 13 and self._completed_here and not self._in_message:
                end = self._next_start()
                if end >= 0 and skip_blank_lines(data[end:]) == b"\r":
                    # A lone CR after a request: llhttp took it in silence; h11 refuses
                    # it as a request line once the response before it is out.
                    self._event(_HANDOFF, b"\r")
            if self._in_head:
                limit = self.limits.max_head_size
                if self._raw is not None:
                    size = len(self._raw)  # as h11 counts its buffer (Rule 3)
                else:  # a lower bound: what llhttp reported of the head
                    size = len(self._url) + sum(len(n) + len(v) + 4 for n, v in self._headers)
                if size > limit:
                    self._event(_ERROR, 431, f"request head larger than {limit} bytes")
        if not self.transport.is_closing():
            self.dispatch()

    def _read_chunked(self, data: bytes, at: int) -> None:
        """Bytes of a chunked body, from `at` (Rule 3). At its end, if h11 takes the
        trailer section, the request ends and what follows is parsed by a new parser."""
        body = self._body
        assert body is not None
        pieces: list[bytes] = []
        end = body.feed(data, at, pieces)
        for piece in pieces:
            self._event(_BODY, piece)
        if self.transport.is_closing():
            return  # (refused: a body past max_body_size)
        if body.illegal is not None:
            self._event(_ERROR, 400, body.illegal)
        elif end >= 0:
            self._body = None
            if body.trailers != b"\r\n" and not h11_takes_trailers(body.trailers):
                self._event(_ERROR, 400, "malformed trailers")
            else:
                self._in_message = False
                self._event(_END)
                self.parser = self._new_parser()
                if end < len(data) and not self.transport.is_closing():
                    self.data_received(data[end:])  # (a pipelined request after it)
        if not self.transport.is_closing():
            # (Also after the bytes that followed: those may have been ignored, after a
            # request that ends the connection, without dispatching this one.)
            self.dispatch()

    def _blank_lines(self, data: bytes) -> bytes | None:
        """Blank lines before a request, skipped as the h11 driver skips them (llhttp
        skips a lone CR too, h11 refuses it); what is left to parse, or None."""
        data = skip_blank_lines(data)
        if not data:
            return None
        if data[0] == 13:
            self._event(_HANDOFF, data)  # a lone CR: h11 decides (Rule 2)
            return None
        return data

    def _hand_to_h11(self, raw: bytes) -> None:
        """llhttp refused a head that h11 may accept (a method llhttp does not know, LF
        line ends, equal Content-Length fields...): the h11 driver, the reference, takes
        the connection over from that head on and gives its own answer."""
        from gunrunner.protocols.http11 import HTTP11Protocol

        self.stop_timer()
        self.settings.connections.discard(self)
        proto = HTTP11Protocol(self.settings)
        transport = self.transport
        transport.set_protocol(proto)
        proto.connection_made(transport)
        proto.served = self.served
        proto.valid_host = self.valid_host
        proto.close_when_done = self.close_when_done
        proto.write_paused = self.write_paused
        self._in_head = False
        self._queue.clear()
        if self.paused_for_cycle:
            transport.resume_reading()  # (paused while the requests before it were served)
        proto.data_received(raw)

    def _error_status(self, exc: Exception) -> int:
        # h11 answers a transfer coding other than chunked with 501, the rest with 400.
        return 501 if "invalid `Transfer-Encoding`" in str(exc) else 400

    # -- llhttp callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_message = True
        # Where this head begins in the read (Rule 2): at its start, or where the request
        # that completed in this read ended.
        start = self._next_start() if self._completed_here else 0
        self._raw = self._data[start:] if start >= 0 else None
        self._body_here = 0
        self._head_done_before = False
        self._url = b""
        self._headers = []
        self._in_head = True
        self._framing_fields = False
        self._has_host = False
        self._chunked = False

    def _next_start(self) -> int:
        """Where the request that begins now starts in the read (-1: not known)."""
        start = self._body_start()
        if start < 0:
            return -1
        return start + self._body_here

    def _body_start(self) -> int:
        """Where the body of the last request begins in the read (0: before it)."""
        if self._head_done_before:  # began in an earlier read, head and all
            return 0
        head = self._head_raw  # from the head's first byte to the end of this read
        if head is None:
            return -1
        at = 0
        while head[at : at + 1] in (b"\r", b"\n"):
            at += 1  # blank lines before a request (llhttp and h11 skip them)
        end = head.find(b"\r\n\r\n", at)  # llhttp takes CRLF only
        if end < 0:
            return -1
        return len(self._data) - len(head) + end + 4

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a trailer field: dropped, as h11 does
        name = name.lower()
        if name in FRAMING_FIELDS:
            self._framing_fields = True
            if name == b"host":
                self._has_host = True
        self._headers.append((name, value.strip(b" \t")))  # OWS is not the value's

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = parser.get_method()
        text = parser.get_http_version()
        raw = self._raw
        if raw is not None and text != "0.9" and not plain_request_line(raw, method, self._url):
            raise _RefusedByH11Rules  # h11 decides (Rule 2): parsed on, it is a handoff
        self._in_head = False
        self._head_raw, self._raw = raw, None
        version = _VERSIONS.get(text) or text.encode("ascii")
        if version == b"0.9":  # llhttp's reading of a request line without a version
            self._event(_ERROR, 400, "illegal request line")
            return
        if version == b"1.1" and not self._has_host:
            # h11's rule, before an absolute-form target could lend its authority.
            self._event(_ERROR, 400, "Missing mandatory Host: header")
            return
        if self._framing_fields:
            self._chunked = any(name == b"transfer-encoding" for name, _ in self._headers)
            refused = normalize_framing(self._headers)
            if refused is not None:
                self._event(_ERROR, *refused)
                return
        if parser.should_upgrade():
            self._upgrade = (method, self._url, version, self._headers)
            return
        self._event(_HEAD, method, self._url, version, self._headers)
        if self._chunked:
            self._body = ChunkedBody(self.limits.max_head_size)
            self._take_body = True
            raise _ChunkedBodyIsOurs  # stops llhttp here (Rule 3)

    def on_body(self, body: bytes) -> None:
        self._body_here += len(body)
        self._event(_BODY, body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._completed_here = True
        if self._upgrade is None:
            self._event(_END)

    # -- events, now or queued (Rule 1) ------------------------------------------------------
    def _event(self, kind: int, *args: Any) -> None:
        if self._queue or (
            self.exchange is not None and (kind == _HEAD or (kind >= _ERROR and self._request_done))
        ):
            if not self._queue:
                self.paused_for_cycle = True
                self.transport.pause_reading()
            self._queue.append((kind, *args))
            return
        if kind == _BODY:
            exchange = self.exchange
            if exchange is not None:
                self._expect_continue = False
                exchange.feed(args[0])
        elif kind == _HEAD:
            self._begin(*args)
        elif kind == _END:
            self._end()
        elif kind == _HANDOFF:
            self._hand_to_h11(args[0])
        else:
            self.reject(args[0], args[1])

    def _begin(self, method: bytes, target: bytes, version: bytes, headers: Headers) -> None:
        self._method = method
        self._request_done = False
        self._head_out = False
        keep_alive, expect = request_flags(version, headers)
        self._keep_alive = keep_alive
        self.http10_keep_alive = version == b"1.0" and keep_alive
        self._expect_continue = expect
        self.begin_request(method, target, version, headers)

    def _end(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        self._request_done = True
        self._expect_continue = False
        exchange.feed_end()
        if not self._keep_alive:
            self.last_request_read = True  # (close, HTTP/1.0): ignore what follows

    def _upgraded(self, trailing: bytes) -> None:
        """llhttp stopped after a request that asks to switch protocols."""
        assert self._upgrade is not None
        method, target, version, headers = self._upgrade
        self._upgrade = None
        self._trailing = trailing
        self._begin(method, target, version, headers)
        if self.exchange is None:
            return  # refused, or now a WebSocket
        # Not taken (Upgrade: h2c, ...): served as a plain request; what follows it is
        # read once its response is complete.
        self._end()
        if trailing:
            self.paused_for_cycle = True
            self.transport.pause_reading()
        self.dispatch()

    # -- bytes out --------------------------------------------------------------------------
    def frame_head(self, exchange: HTTPExchange, status: int, headers: Headers) -> bytes:
        self._expect_continue = False
        data = self.framer.head(
            status,
            REASONS.get(status, b""),
            headers,
            method=self._method,
            http_version=b"1.0" if exchange.http_version == "1.0" else b"1.1",
            keep_alive=self._keep_alive,
        )
        self._head_out = True
        return data

    def frame_data(self, data: bytes) -> bytes:
        return self.framer.data(data)

    def frame_span(self, count: int) -> tuple[bytes, bytes]:
        return self.framer.span(count)

    def frame_end(self, trailers: Headers | None) -> bytes:
        return self.framer.end(trailers)

    def frame_continue(self) -> bytes:
        if self._expect_continue:
            self._expect_continue = False
            return self.framer.informational(100, b"Continue", [])
        return b""

    def frame_refusal(self, status: int, headers: Headers, body: bytes) -> bytes:
        if self._head_out:
            return b""
        self._head_out = True
        framer = self.framer
        try:
            data = framer.head(
                status,
                REASONS.get(status, b""),
                headers,
                method=self._method or b"GET",
                http_version=b"1.1",
                keep_alive=False,
            )
            if self._method != b"HEAD":
                data += framer.data(body)
        except BadResponse:
            return b""
        return data

    # -- state ------------------------------------------------------------------------------
    def head_sent(self) -> bool:
        return self._head_out

    def request_ended_with_close(self) -> bool:
        return self._request_done and not self._keep_alive

    def reusable(self) -> bool:
        return self._request_done and self._keep_alive and self.framer.keep_alive

    def partial_head_buffered(self) -> bool:
        return self._in_head or bool(self._queue)

    def buffered_bytes(self) -> bytes:
        return self._trailing

    def next_cycle(self) -> None:
        self._head_out = False
        self._request_done = False
        self._method = b""
        queue = self._queue
        if not self.paused_for_cycle:
            self.after_cycle()
            return
        # Events of pipelined requests are queued: serve them now.
        while queue and self.exchange is None:
            self._replay(queue.popleft())
        while queue and queue[0][0] in (_BODY, _END):  # of the request now in progress
            self._replay(queue.popleft())
        if self.transport.get_protocol() is not self:
            return  # handed to the h11 driver (Rule 2)
        if queue:
            self.dispatch()
            return  # the next request waits behind this one
        self.paused_for_cycle = False
        trailing, self._trailing = self._trailing, b""
        self.transport.resume_reading()
        if trailing and not self.transport.is_closing():
            self.data_received(trailing)
        else:
            self.dispatch()
        self.after_cycle()

    def _replay(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == _HEAD:
            self._begin(*event[1:])
        elif kind == _BODY:
            if self.exchange is not None:
                self.exchange.feed(event[1])
        elif kind == _END:
            self._end()
        elif kind == _HANDOFF:
            self._queue.clear()
            self._hand_to_h11(event[1])
        else:
            self._queue.clear()
            self.reject(event[1], event[2])


class _RefusedByH11Rules(Exception):
    """Raised in a callback to stop llhttp at a head h11 would refuse (Rule 2)."""


class _ChunkedBodyIsOurs(Exception):
    """Raised at the end of a chunked request's head: the body is read here (Rule 3)."""
