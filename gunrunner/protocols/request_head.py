"""The request head, checked beyond what the parser checks: limits, Host, target form,
version, framing, plus the helpers that read it (absolute-form targets, forwarding
headers, request ids).

Rules:
1. Pure functions of plain values (bytes, headers, `Limits`): no parser types, no driver
   objects, nothing written anywhere. Every driver calls them alike, once per request,
   in one pass over the headers where it can.
2. A check returns a verdict (`HeadCheck`) and the driver acts on it; the common verdict
   (passed, no Upgrade, no forwarding headers, Host already known) is one shared
   constant, so a keep-alive request allocates nothing here.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from gunrunner.apps.types import Headers
from gunrunner.protocols.limits import Limits
from gunrunner.proxy import ProxyTrust

# RFC 3986 host (IP-literal, IPv4 or reg-name, maybe empty) and optional port.
HOST = re.compile(
    rb"(\[[0-9A-Fa-f:.]+\]|([A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(:[0-9]{0,5})?"
)


class HeadCheck(NamedTuple):
    """The verdict on a request head, and what the driver needs from it."""

    status: int  # 0: the head passes; else the status to refuse it with
    reason: str  # why it is refused (the refusal's body and the debug log)
    upgrade: bytes | None  # the Upgrade header's value
    forwarded: bool  # it carries Forwarded or X-Forwarded-* headers
    host: bytes | None  # a Host value found valid that was not the known one: remember it


PASSED = HeadCheck(0, "", None, False, None)


class Forwarded(NamedTuple):
    """Client, scheme and server as a trusted proxy reports them."""

    client: tuple[str, int] | None
    scheme: str
    server: tuple[str, int] | None  # None: no forwarded host; the server is unchanged
    headers: Headers | None  # with the forwarded Host; None: unchanged


def _refuse(status: int, reason: str) -> HeadCheck:
    return HeadCheck(status, reason, None, False, None)


def accepts_trailers(headers: Headers) -> bool:
    """The client said `TE: trailers` (the ASGI extension sends them only then)."""
    return any(name == b"te" and b"trailers" in value.lower() for name, value in headers)


def check_head(
    method: bytes,
    target: bytes,
    version: bytes,
    headers: Headers,
    *,
    limits: Limits,
    known_host: bytes | None = None,
) -> HeadCheck:
    """The verdict on a request head the parser accepted (one pass over the headers).

    `headers` are the ones the app will see (an absolute-form target's authority already
    in Host); `known_host` is the Host value last found valid on this connection:
    keep-alive requests repeat it, so it is checked once. A parser measures only
    unfinished heads (h11's max_incomplete_event_size); a head that arrived whole in one
    read is measured here.
    """
    line = len(method) + len(target) + 10
    if line > limits.limit_request_line:
        return _refuse(414, f"request line longer than {limits.limit_request_line} bytes")
    if method == b"CONNECT":
        # A 2xx would make h11 hand the connection over as a tunnel: we are no proxy.
        return _refuse(501, "CONNECT is not supported: this is not a proxy")
    if not version.startswith(b"1."):
        # h11 parses HTTP/2.0 or HTTP/0.9 as if it were HTTP/1.x (RFC 9110 15.6.6).
        return _refuse(505, f"HTTP/{version.decode()} is not supported; use HTTP/1.1")
    if target[:1] != b"/" and not other_target_ok(method, target):
        return _refuse(400, "request target must be a path (or absolute URL)")
    if len(headers) > limits.limit_request_fields:
        return _refuse(431, f"more than {limits.limit_request_fields} header fields")
    field_limit = limits.limit_request_field_size
    size = line + 4  # as h11 counts: the request line's CRLF and the blank line too
    upgrade = length = host = None
    forwarded = chunked = False
    for name, value in headers:
        field = len(name) + len(value)
        if field > field_limit:
            return _refuse(431, f"header field {name.decode()!r} longer than {field_limit} bytes")
        size += field + 4
        if name == b"upgrade":
            upgrade = value
        elif name == b"content-length":
            length = value
        elif name == b"host":
            host = value  # (h11 refuses a second Host)
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"forwarded" or name.startswith(b"x-forwarded-"):
            forwarded = True
    if size > limits.max_head_size:
        return _refuse(431, "request header block too large")
    if host is None and version != b"1.0":
        return _refuse(400, "missing Host header")  # HTTP/1.2 is served as 1.1
    if chunked and length is not None:
        # RFC 9112 6.1 lets a server refuse these: a proxy in front may have framed the
        # body by the other header (request smuggling).
        return _refuse(400, "both Content-Length and Transfer-Encoding")
    new_host = None
    if host is not None and host != known_host:
        if HOST.fullmatch(host) is None:
            return _refuse(400, "Host header is not a valid host[:port]")
        new_host = host
    limit = limits.max_body_size
    if length is not None and limit and int(length) > limit:
        return _refuse(413, f"Content-Length {int(length)} above max_body_size ({limit} bytes)")
    if upgrade is None and not forwarded and new_host is None:
        return PASSED
    return HeadCheck(0, "", upgrade, forwarded, new_host)


def request_id(headers: Headers, trusted: bool) -> str:
    """X-Request-ID from a trusted proxy (if sane), else a fresh random one."""
    if trusted:
        for name, value in headers:
            if name == b"x-request-id" and 0 < len(value) <= 200:
                return value.decode("latin-1")
    return os.urandom(8).hex()


def apply_forwarded(
    headers: Headers, client: tuple[str, int] | None, scheme: str, proxy: ProxyTrust
) -> Forwarded:
    """Client, scheme and host as the trusted proxy in front of us reports them."""
    client, scheme, host = proxy.resolve(headers, client, scheme)
    if not host:
        return Forwarded(client, scheme, None, None)
    name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    default = 443 if scheme in ("https", "wss") else 80
    server = (name or host, int(port) if port.isdigit() else default)
    # Apps build URLs from Host (PEP 3333, Starlette): it says what the client asked.
    headers = [(n, v) for n, v in headers if n != b"host"]
    headers.append((b"host", host.encode("latin-1")))
    return Forwarded(client, scheme, server, headers)


def other_target_ok(method: bytes, target: bytes) -> bool:
    """A target not starting with "/": absolute-form, or "*" for OPTIONS."""
    if b"://" in target:
        return target.split(b"://", 1)[0].lower() in (b"http", b"https")
    return target == b"*" and method == b"OPTIONS"


def skip_blank_lines(data: bytes) -> bytes:
    """`data` without the empty lines (CRLF or bare LF) it starts with; a lone CR stays."""
    while True:
        if data.startswith(b"\r\n"):
            data = data[2:]
        elif data.startswith(b"\n"):
            data = data[1:]
        else:
            return data


def with_host(headers: Headers, authority: bytes) -> Headers:
    """RFC 9112 3.2.2: an absolute-form target's authority replaces the Host header (in
    the first Host's place, so the order of the fields is kept)."""
    out: Headers = []
    placed = False
    for name, value in headers:
        if name != b"host":
            out.append((name, value))
        elif not placed:
            out.append((b"host", authority))
            placed = True
    if not placed:
        out.append((b"host", authority))
    return out


def split_absolute_form(target: bytes) -> tuple[bytes | None, bytes]:
    """(authority, path and query) of an absolute-form target (http://host/path?q);
    (None, target) for the other forms ("*" of OPTIONS), passed on as they are."""
    scheme_end = target.find(b"://")
    if scheme_end < 0:
        return None, target
    start = scheme_end + 3
    path_start = target.find(b"/", start)
    query = target.find(b"?", start)
    if path_start < 0 or 0 <= query < path_start:
        end = query if query >= 0 else len(target)
        return target[start:end], b"/" + target[end:]
    return target[start:path_start], target[path_start:]
