"""Check that a server answers a scenario right before it is measured.

A server that answers the wrong thing (a short body, a keep-alive where the client asked
for close, an upload it did not read) must fail the run instead of looking fast; wrk
itself only counts statuses. The WebSocket echo is checked by ws_load.py (first echo).

Rules:
1. One request per probe, on a fresh raw connection, with a hard timeout.
2. Only the answer is checked (status, body, that the connection closes), not headers
   a server may legitimately choose (Date, Server, chunking).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from benchlib import LOOPBACK, BenchError

TIMEOUT = 10.0
Probe = Callable[[int], None]


def _exchange(port: int, request: bytes, until_close: bool) -> bytes:
    """Send `request`, read one response (or everything until EOF when `until_close`)."""
    data = b""
    with socket.create_connection((LOOPBACK, port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError as exc:
                if until_close:
                    raise BenchError(
                        f"no connection close within {TIMEOUT:.0f} s after a"
                        " `Connection: close` request"
                    ) from exc
                raise BenchError(
                    f"no full response within {TIMEOUT:.0f} s: {data[:200]!r}"
                ) from exc
            if not chunk:
                return data
            data += chunk
            if not until_close and _complete(data):
                return data


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False  # no Content-Length: read until the server closes


def _check(data: bytes, body: bytes) -> None:
    head, _, got = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200" not in status or got != body:
        shown = got if len(got) < 80 else got[:40] + b"..." + f"({len(got)} bytes)".encode()
        raise BenchError(f"wrong answer: {status.decode(errors='replace')!r}, body {shown!r}")


def expect(
    path: str, body: bytes, *, method: str = "GET", send: bytes = b"", close: bool = False
) -> Probe:
    """A probe: `method path` (with body `send`) must answer 200 and exactly `body`."""
    headers = f"{method} {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
    if send:
        headers += f"Content-Length: {len(send)}\r\n"
    if close:
        headers += "Connection: close\r\n"
    request = headers.encode() + b"\r\n" + send

    def probe(port: int) -> None:
        _check(_exchange(port, request, until_close=close), body)

    return probe
