"""Response framing for a driver whose parser only parses (httptools): a response (status,
headers, body pieces, trailers) to bytes, with h11's checks and h11's framing decisions.

h11 0.16 as a server is the reference (h11/_connection.py `_body_framing`,
`_clean_up_response_headers_for_sending`, `_keep_alive`; h11/_headers.py
`normalize_and_validate`; h11/_writers.py). tests/unit/test_framing.py runs both on the
same generated responses and compares what an h11 client reads back.

Rules:
1. What h11 refuses, we refuse, at the same step (head, data, end): BadResponse where h11
   raises LocalProtocolError (and only there, but for Rule 6). A refused head leaves the
   framer ready for another head (the driver answers 500 instead); a refused body piece
   or end leaves it refusing everything, as h11's ERROR state does (the driver closes
   the connection).
2. A header name is a token (RFC 9110 5.6.2). A value is h11's field-value: no NUL, CR,
   LF, VT or FF, and no space or tab at either end. h11 strips nothing it is given to
   send: a value with surrounding whitespace is refused, not trimmed (only the pieces of
   a Content-Length list are stripped, "5, 5" is sent as "5"). Names keep their case;
   the headers added here are lowercase (h11 writes them as Transfer-Encoding...).
3. Content-Length: digits only (at most 20); repeated headers or list members must agree
   and are sent once. Transfer-Encoding: exactly one header, "chunked" (any case).
4. Body framing (RFC 9112 6.3, h11's `_body_framing`): 204, 304, a HEAD request and a 2xx
   to CONNECT have no body; the headers are the ones a GET would get (after a 2xx to
   CONNECT the connection is a tunnel: h11 refuses even the end of that response).
   Otherwise Transfer-Encoding beats Content-Length, and a body of unknown length (no
   Content-Length, or Transfer-Encoding) is chunked for an HTTP/1.1 peer and ends with
   the close for HTTP/1.0 (Content-Length and Transfer-Encoding are then dropped).
5. The connection closes after this response (`keep_alive` False) when the request side
   said so, the body is close-delimited, or the app's Connection header says close. In
   the first two cases Connection is rewritten as h11 does: its tokens lowercased, one
   header each, keep-alive dropped, close added.
6. The status line is `HTTP/1.1 <status> <reason>`. The reason must be an RFC 9112
   reason-phrase (no NUL, CR, LF, VT, FF). This is the one place where we are stricter
   than h11, which writes any reason unchecked, even a CR LF that starts a header of its
   own (h11's own client then refuses the head, or reads that header).
7. A 1xx (`informational`) is written as given, checked like any header list; h11 also
   refuses a 101 to a request that asked for no upgrade, which only the caller knows.
8. Speed: one pass over the headers and one join for the head, nothing kept per
   response. A name or value is checked by regex the first time it is seen, then found
   in a small process-wide cache of those that passed (the same Date, Server,
   Content-Type come back response after response): a hello-world head is ~1.5 us,
   h11's ~13 us.
9. Names and values are bytes. Like h11 (`bytesify`), an ASCII str or another bytes-like
   object is taken too, on a slower path that converts them first.
"""

from __future__ import annotations

import re
from typing import Any

from gunrunner.apps.types import Headers

__all__ = ["BadResponse", "Framer"]

# RFC 9110 5.6.2: token = 1*tchar (h11/_abnf.py `token`).
_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+").fullmatch
# h11/_abnf.py `field_value`: [^\x00\s]+ ( [ \t]+ [^\x00\s]+ )*, or empty. The same set of
# strings, written so that the regex engine makes one pass: a first and last byte that
# are neither NUL nor whitespace, and between them no NUL, CR, LF, VT or FF.
_VALUE = re.compile(rb"(?:[^\x00\s](?:[^\x00\n\r\x0b\x0c]*[^\x00\s])?)?").fullmatch
# RFC 9112 4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ), as h11 parses it.
_REASON = re.compile(rb"[^\x00\n\r\x0b\x0c]*").fullmatch
_MAX_LENGTH_DIGITS = 20  # h11's CONTENT_LENGTH_MAX_DIGITS

# Framer._mode
_IDLE = 0  # no response under way: head() or informational() next
_LENGTH = 1  # a Content-Length body (0 for HEAD, 204, 304)
_CHUNKED = 2
_CLOSE = 3  # HTTP/1.0, unknown length: the close ends the body
_SWITCHED = 4  # a 2xx to CONNECT: the connection is a tunnel, no body and no end
_BROKEN = 5  # a body piece or the end was refused

_CRLF = b"\r\n"
_SEP = b": "

# Header kinds (Rule 4, 5); the framing headers by their lowercased name.
_PLAIN, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION = range(4)
_FRAMING = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
}

# Rule 8: names and values that passed the check, as sent; a name maps to its kind.
# Being in a cache only ever means "passed", so a cleared cache costs a regex, never a
# wrong verdict. Each is emptied when full, which bounds it (threads may share them:
# a lost update only costs a regex too).
_CACHE_ENTRIES = 512
_CACHE_VALUE_SIZE = 2048  # longer values are checked every time (bounds the memory)
_names: dict[bytes, int] = {}
_values: set[bytes] = set()


class BadResponse(Exception):
    """The app's response breaks HTTP: where h11 would raise LocalProtocolError."""


class Framer:
    """Frames the responses of one connection, one at a time (no per-response allocation
    beyond the bytes returned; use __slots__)."""

    __slots__ = ("_left", "_mode", "chunked", "keep_alive")

    def __init__(self) -> None:
        self.keep_alive = True  # after head(): False if the connection must close after it
        self.chunked = False  # after head(): the body goes out chunked (it may carry trailers)
        self._mode = _IDLE
        self._left = 0  # Content-Length bytes still to come

    def head(
        self,
        status: int,
        reason: bytes,
        headers: Headers,
        *,
        method: bytes,
        http_version: bytes,
        keep_alive: bool,
    ) -> bytes:
        """Validate and serialise a final response head (Rules 2-6).

        `method` and `http_version` are the request's (b"" when no request was read:
        then the peer is taken for HTTP/1.0, as h11 does); `keep_alive` is the request
        side's verdict (False after Connection: close, or HTTP/1.0 without keep-alive).
        """
        if self._mode:
            raise BadResponse(_state_error(self._mode, "a response head"))
        if not (isinstance(status, int) and 200 <= status < 1000):
            raise BadResponse(f"status {status!r} is not a final status (200 to 999)")
        if _REASON(reason) is None:
            raise BadResponse(f"invalid reason phrase {reason!r}")
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        add = parts.extend
        names = _names
        values = _values
        length: bytes | None = None
        length_name = b""
        chunked = False
        connection: Headers | None = None
        try:
            for name, value in headers:
                kind = names.get(name)
                if kind is None:
                    kind = _learn_name(name)
                if kind == _PLAIN:
                    if value not in values:
                        _learn_value(name, value)
                    add((name, _SEP, value, _CRLF))
                elif kind == _CONTENT_LENGTH:
                    normal = _content_length(value)
                    if length is None:
                        length = normal
                        length_name = name
                    elif normal != length:
                        raise BadResponse("conflicting Content-Length headers")
                elif kind == _TRANSFER_ENCODING:
                    chunked = _transfer_encoding(value, chunked)
                else:
                    if value not in values or type(value) is not bytes:
                        _learn_value(name, value)
                    if connection is None:
                        connection = [(name, value)]
                    else:
                        connection.append((name, value))
        except (TypeError, ValueError):
            # Not bytes (a str, a bytearray): h11 takes ASCII str and bytes-like objects.
            plain = _bytes_headers(headers)
            if plain is None:
                raise
            return self.head(
                status,
                reason,
                plain,
                method=method,
                http_version=http_version,
                keep_alive=keep_alive,
            )

        # Rule 4: the framing headers are chosen as for a GET; HEAD only drops the body.
        need_close = False
        tunnel = method == b"CONNECT" and status < 300
        if tunnel or status in {204, 304}:
            # No body, whatever the headers say; they go out as given.
            if length is not None:
                add((length_name, _SEP, length, _CRLF))
            if chunked:
                parts.append(b"transfer-encoding: chunked\r\n")
            mode = _SWITCHED if tunnel else _LENGTH
            self._left = 0
        elif chunked or length is None:
            if http_version < b"1.1":
                mode = _CLOSE
                need_close = method != b"HEAD"
            else:
                parts.append(b"transfer-encoding: chunked\r\n")
                mode = _CHUNKED
        else:
            add((length_name, _SEP, length, _CRLF))
            mode = _LENGTH
            self._left = int(length)
        if method == b"HEAD":
            mode = _LENGTH
            self._left = 0

        # Rule 5
        if not keep_alive or need_close:
            tokens = _tokens(connection) if connection else set()
            tokens.discard(b"keep-alive")
            tokens.add(b"close")
            for token in sorted(tokens):
                add((b"connection: ", token, _CRLF))
            self.keep_alive = False
        elif connection:
            for name, value in connection:
                add((name, _SEP, value, _CRLF))
            self.keep_alive = b"close" not in _tokens(connection)
        else:
            self.keep_alive = True
        self.chunked = mode == _CHUNKED
        self._mode = mode
        parts.append(_CRLF)
        return b"".join(parts)

    def data(self, data: bytes) -> bytes:
        """Frame a body piece: a chunk for a chunked body (none for empty data), the
        bytes themselves otherwise. More than the declared Content-Length, or any byte
        where there is no body (HEAD, 204, 304), is refused."""
        mode = self._mode
        if mode == _LENGTH:
            left = self._left - len(data)
            if left < 0:
                self._mode = _BROKEN
                raise BadResponse(_too_much(self._left, len(data)))
            self._left = left
            return data
        if mode == _CHUNKED:
            if not data:
                return b""  # a zero-size chunk would end the body
            return b"%x\r\n%s\r\n" % (len(data), data)
        if mode == _CLOSE:
            return data
        raise BadResponse(_state_error(mode, "body data"))

    def span(self, count: int) -> tuple[bytes, bytes]:
        """The bytes to write before and after `count` body bytes the caller sends
        itself (sendfile); accounted and refused as data() does."""
        mode = self._mode
        if mode == _LENGTH:
            left = self._left - count
            if left < 0:
                self._mode = _BROKEN
                raise BadResponse(_too_much(self._left, count))
            self._left = left
            return b"", b""
        if mode == _CHUNKED:
            if count <= 0:
                return b"", b""
            return b"%x\r\n" % count, _CRLF
        if mode == _CLOSE:
            return b"", b""
        raise BadResponse(_state_error(mode, "body data"))

    def end(self, trailers: list[tuple[bytes, bytes]] | None = None) -> bytes:
        """End the body: the last chunk and the trailers for a chunked body, nothing
        otherwise. Fewer bytes than the declared Content-Length, or trailers on a body
        that is not chunked, are refused; trailers are checked as headers are."""
        mode = self._mode
        if mode == _CHUNKED:
            if not trailers:
                self._mode = _IDLE
                return b"0\r\n\r\n"
            parts = [b"0\r\n"]
            self._mode = _BROKEN  # until the trailers passed
            _header_lines(trailers, parts)
            parts.append(_CRLF)
            self._mode = _IDLE
            return b"".join(parts)
        if mode == _LENGTH:
            if self._left:
                self._mode = _BROKEN
                raise BadResponse(f"the body ended {self._left} bytes short of its Content-Length")
            if trailers:
                self._mode = _BROKEN
                _header_lines(trailers, [])  # (an invalid trailer is reported as such)
                raise BadResponse("trailers need a chunked body; this one has a Content-Length")
            self._mode = _IDLE
            return b""
        if mode == _CLOSE:
            if trailers:
                self._mode = _BROKEN
                _header_lines(trailers, [])
                raise BadResponse("trailers cannot be sent to an HTTP/1.0 client")
            self._mode = _IDLE
            return b""
        raise BadResponse(_state_error(mode, "the end of a body"))

    def informational(self, status: int, reason: bytes, headers: Headers) -> bytes:
        """A 1xx head (100 Continue), its headers as given (Rule 7)."""
        if self._mode:
            raise BadResponse(_state_error(self._mode, "a 1xx response"))
        if not (isinstance(status, int) and 100 <= status < 200):
            raise BadResponse(f"status {status!r} is not an informational status (100 to 199)")
        if _REASON(reason) is None:
            raise BadResponse(f"invalid reason phrase {reason!r}")
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        _header_lines(headers, parts)
        parts.append(_CRLF)
        return b"".join(parts)


def _learn_name(name: bytes) -> int:
    """The kind of a header name not seen yet; BadResponse if it is no token."""
    if type(name) is not bytes:
        raise TypeError("not bytes")  # (made bytes by the caller, as h11 does)
    if _NAME(name) is None:
        raise BadResponse(f"invalid header name {name!r}")
    kind = _FRAMING.get(name.lower(), _PLAIN)
    if len(_names) >= _CACHE_ENTRIES:
        _names.clear()
    _names[name] = kind
    return kind


def _learn_value(name: bytes, value: bytes) -> None:
    """Check a header value not seen yet (Rule 2)."""
    if type(value) is not bytes:
        raise TypeError("not bytes")  # (made bytes by the caller, as h11 does)
    if _VALUE(value) is None:
        raise BadResponse(f"invalid value {value!r} of header {name!r}")
    if len(value) <= _CACHE_VALUE_SIZE:
        if len(_values) >= _CACHE_ENTRIES:
            _values.clear()
        _values.add(value)


def _content_length(value: bytes) -> bytes:
    """A Content-Length value as h11 normalises it ("5, 5" is "5"); BadResponse if it
    is not one length (Rule 3)."""
    if type(value) is not bytes:
        raise TypeError("not bytes")  # (made bytes by the caller, as h11 does)
    if value.isdigit() and len(value) <= _MAX_LENGTH_DIGITS:
        return value  # (bytes.isdigit: ASCII digits only, and not empty)
    if _VALUE(value) is None:
        raise BadResponse(f"invalid Content-Length value {value!r}")
    lengths = {piece.strip() for piece in value.split(b",")}
    if len(lengths) != 1:
        raise BadResponse(f"conflicting Content-Length values in {value!r}")
    (length,) = lengths
    if not length.isdigit() or len(length) > _MAX_LENGTH_DIGITS:
        raise BadResponse(f"invalid Content-Length value {value!r}")
    return length


def _transfer_encoding(value: bytes, seen: bool) -> bool:
    """Check a Transfer-Encoding header (Rule 3); True."""
    if type(value) is not bytes:
        raise TypeError("not bytes")  # (made bytes by the caller, as h11 does)
    if seen:
        raise BadResponse("more than one Transfer-Encoding header")
    if value.lower() != b"chunked":  # (then the value is a valid one too)
        raise BadResponse(f"Transfer-Encoding {value!r}: only chunked is supported")
    return True


def _tokens(connection: Headers) -> set[bytes]:
    """The tokens of Connection headers, as h11's get_comma_header reads them."""
    tokens: set[bytes] = set()
    for _, value in connection:
        for token in value.lower().split(b","):
            token = token.strip()  # noqa: PLW2901 (h11's strip: ASCII whitespace)
            if token:
                tokens.add(token)
    return tokens


def _header_lines(headers: Headers, parts: list[bytes]) -> None:
    """Check headers as h11's normalize_and_validate does and add their lines to `parts`
    (a 1xx head, trailers): Content-Length once and normalised, Transfer-Encoding
    "chunked", everything else as given."""
    add = parts.extend
    length: bytes | None = None
    chunked = False
    try:
        for name, value in headers:
            kind = _names.get(name)
            if kind is None:
                kind = _learn_name(name)
            if kind == _CONTENT_LENGTH:
                normal = _content_length(value)
                if length is None:
                    length = normal
                    add((name, _SEP, normal, _CRLF))
                elif normal != length:
                    raise BadResponse("conflicting Content-Length headers")
            elif kind == _TRANSFER_ENCODING:
                chunked = _transfer_encoding(value, chunked)
                add((name, _SEP, b"chunked", _CRLF))
            else:
                if value not in _values:
                    _learn_value(name, value)
                add((name, _SEP, value, _CRLF))
    except (TypeError, ValueError):
        plain = _bytes_headers(headers)
        if plain is None:
            raise
        _header_lines(plain, parts)


def _bytes_headers(headers: Headers) -> Headers | None:
    """The headers with every name and value made bytes as h11's bytesify does (ASCII
    str, bytes-like objects); None if they all were bytes already."""
    if all(type(name) is bytes and type(value) is bytes for name, value in headers):
        return None
    return [(_bytesify(name), _bytesify(value)) for name, value in headers]


def _bytesify(data: Any) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode("ascii")  # (UnicodeEncodeError, as h11)
    if isinstance(data, int):
        raise TypeError("expected bytes-like object, not int")
    return bytes(data)


def _too_much(left: int, size: int) -> str:
    return f"{size} body bytes where the Content-Length allows {left} more"


def _state_error(mode: int, what: str) -> str:
    if mode == _IDLE:
        return f"{what} before a response head"
    if mode == _SWITCHED:
        return f"{what} after a 2xx to CONNECT (the connection is a tunnel now)"
    if mode == _BROKEN:
        return f"{what} after this response was refused"
    return f"{what} while a response body is under way"
