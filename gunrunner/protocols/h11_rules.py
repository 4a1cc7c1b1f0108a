"""The rules h11 applies to a request that llhttp does not: the httptools driver asks
these, so that both drivers give one answer (h11 is the reference for behaviour).

Each function is a pure check on what llhttp reported (or on the raw head), without
state; the driver decides what to do with the verdict.
"""

from __future__ import annotations

import re

from gunrunner.apps.types import Headers


def plain_request_line(raw: bytes, method: bytes, target: bytes) -> bool:
    """The request line at the start of `raw` (after blank lines) is method, target and
    version with one space between them, as h11 requires; llhttp takes several."""
    start = 0
    while raw[start : start + 1] in (b"\r", b"\n"):
        start += 1
    end = raw.find(b"\r\n", start)
    # method SP target SP "HTTP/" digit "." digit
    return end - start == len(method) + len(target) + 10


def h11_takes_trailers(section: bytes) -> bool:
    """h11 reads `section` (trailer fields and the empty line) as the end of a chunked
    body: what it would answer in this driver's place (the httptools driver's Rule 3)."""
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
    conn.receive_data(section)
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.EndOfMessage):
                return True
            if event is h11.NEED_DATA:
                return False
    except h11.RemoteProtocolError:
        return False


FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"host"})
_DIGITS = re.compile(rb"[0-9]+")


def normalize_framing(headers: Headers) -> tuple[int, str] | None:
    """Check and normalise Content-Length, Transfer-Encoding and Host as h11 does (in
    place): equal Content-Length values become one field, the transfer coding is
    lower-cased. The refusal (status, reason), or None."""
    length: bytes | None = None
    host = coding = False
    index = 0
    while index < len(headers):
        name, value = headers[index]
        if name == b"content-length":
            values = {part.strip() for part in value.split(b",")}
            if len(values) != 1:
                return 400, "conflicting Content-Length headers"
            value = values.pop()
            if not _DIGITS.fullmatch(value) or len(value) > 20:
                return 400, "bad Content-Length"
            if length is not None:
                if value != length:
                    return 400, "conflicting Content-Length headers"
                del headers[index]
                continue
            length = value
            headers[index] = (name, value)
        elif name == b"transfer-encoding":
            if coding:
                return 501, "multiple Transfer-Encoding headers"
            value = value.lower()
            if value != b"chunked":
                return 501, "Only Transfer-Encoding: chunked is supported"
            coding = True
            headers[index] = (name, value)
        elif name == b"host":
            if host:
                return 400, "Found multiple Host: headers"
            host = True
        index += 1
    return None


def request_flags(version: bytes, headers: Headers) -> tuple[bool, bool]:
    """(keep the connection alive after this request, the client waits for 100 Continue),
    as h11 decides them (and HTTP/1.0 keep-alive as the h11 driver adds it)."""
    close = keep = expect = False
    for name, value in headers:
        if name == b"connection":
            for part in value.lower().split(b","):
                token = part.strip()
                if token == b"close":
                    close = True
                elif token == b"keep-alive":
                    keep = True
        elif name == b"expect" and value.lower() == b"100-continue":
            expect = True
    if version != b"1.0":  # (HTTP/1.2 and later 1.x are served as 1.1)
        return not close, expect
    return keep and not close, False
