"""The request head, checked beyond what h11 checks: limits, Host, target form,
version, framing, plus the helpers that read it (absolute-form targets, forwarding
headers, request ids). Pure functions: the driver in http11.py calls them once per
request, in one pass over the headers where it can.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import h11

from gunrunner.apps.types import Headers
from gunrunner.proxy import ProxyTrust

if TYPE_CHECKING:
    from gunrunner.protocols.http11 import ConnectionSettings, _Exchange

# RFC 3986 host (IP-literal, IPv4 or reg-name, maybe empty) and optional port.
HOST = re.compile(
    rb"(\[[0-9A-Fa-f:.]+\]|([A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(:[0-9]{0,5})?"
)


def accepts_trailers(headers: Headers) -> bool:
    """The client said `TE: trailers` (the ASGI extension sends them only then)."""
    return any(name == b"te" and b"trailers" in value.lower() for name, value in headers)


def check_head(
    exchange: _Exchange, request: h11.Request, settings: ConnectionSettings
) -> tuple[int, str, bytes | None, bool]:
    """(status, reason) for a head that breaks a limit, else (0, ""); its Upgrade; and
    whether it carries forwarding headers (one pass over the headers for all of it).

    h11 measures only incomplete heads (max_incomplete_event_size); a head that arrived
    whole in one read is measured here.
    """
    line = len(request.method) + len(request.target) + 10
    if line > settings.limit_request_line:
        return 414, f"request line longer than {settings.limit_request_line} bytes", None, False
    if request.method == b"CONNECT":
        # A 2xx would make h11 hand the connection over as a tunnel: we are no proxy.
        return 501, "CONNECT is not supported: this is not a proxy", None, False
    version = request.http_version
    if not version.startswith(b"1."):
        # h11 parses HTTP/2.0 or HTTP/0.9 as if it were HTTP/1.x (RFC 9110 15.6.6).
        return 505, f"HTTP/{version.decode()} is not supported; use HTTP/1.1", None, False
    target = request.target
    if target[:1] != b"/" and not other_target_ok(request.method, target):
        return 400, "request target must be a path (or absolute URL)", None, False
    headers = exchange.headers
    if len(headers) > settings.limit_request_fields:
        return 431, f"more than {settings.limit_request_fields} header fields", None, False
    field_limit = settings.limit_request_field_size
    size = line + 4  # as h11 counts: the request line's CRLF and the blank line too
    upgrade = length = host = None
    forwarded = chunked = False
    for name, value in headers:
        field = len(name) + len(value)
        if field > field_limit:
            reason = f"header field {name.decode()!r} longer than {field_limit} bytes"
            return 431, reason, None, False
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
    if size > settings.max_incomplete_event_size:
        return 431, "request header block too large", None, False
    if host is None and version != b"1.0":
        return 400, "missing Host header", None, False  # HTTP/1.2 is served as 1.1
    if chunked and length is not None:
        # RFC 9112 6.1 lets a server refuse these: a proxy in front may have framed the
        # body by the other header (request smuggling).
        return 400, "both Content-Length and Transfer-Encoding", None, False
    if host is not None and host != exchange.proto.valid_host:
        if HOST.fullmatch(host) is None:
            return 400, "Host header is not a valid host[:port]", None, False
        exchange.proto.valid_host = host  # keep-alive requests repeat it: checked once

    limit = settings.max_body_size
    if length is not None and limit and int(length) > limit:
        reason = f"Content-Length {int(length)} above max_body_size ({limit} bytes)"
        return 413, reason, None, False
    return 0, "", upgrade, forwarded


def request_id(headers: Headers, trusted: bool) -> str:
    """X-Request-ID from a trusted proxy (if sane), else a fresh random one."""
    if trusted:
        for name, value in headers:
            if name == b"x-request-id" and 0 < len(value) <= 200:
                return value.decode("latin-1")
    return os.urandom(8).hex()


def apply_forwarded(exchange: _Exchange, proxy: ProxyTrust) -> None:
    """Client, scheme and host as the trusted proxy in front of us reports them."""
    client, scheme, host = proxy.resolve(exchange.headers, exchange.client, exchange.scheme)
    exchange.client = client
    exchange.scheme = scheme
    if host:
        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        default = 443 if scheme in ("https", "wss") else 80
        exchange.server = (name or host, int(port) if port.isdigit() else default)
        # Apps build URLs from Host (PEP 3333, Starlette): it says what the client asked.
        exchange.headers = [(n, v) for n, v in exchange.headers if n != b"host"]
        exchange.headers.append((b"host", host.encode("latin-1")))


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
