"""Apps for tests/integration/test_conformance.py (module path: tests.apps.conformance_apps).

`wsgi_app` and `asgi_app` answer alike, so that one raw-socket case runs against either:

- every path but those below echoes the request as the app saw it, as JSON in one shape
  for both interfaces (`view`), after reading the whole body;
- /fixed answers a constant body (HEAD must get GET's headers);
- /big?size=N streams N bytes in 64 KiB pieces (a large response read slowly).

Every call is appended to the JSON-lines file named by $CONFORMANCE_HITS, shared by all
workers: an "enter" record before anything else (so a test can prove that a refused
request never reached the app), then "done" or "error" once the body was read (so that
a truncated body shows up as an error, never as a short body answered 200).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from tests.apps.process_apps import lifespan_ok

StartResponse = Callable[..., Callable[[bytes], None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

FIXED = b"a fixed body, the same for GET and HEAD\n"
PIECE = 65536


def record(**fields: Any) -> None:
    """Append one JSON line to $CONFORMANCE_HITS (one write: whole lines from any worker)."""
    path = os.environ.get("CONFORMANCE_HITS")
    if not path:
        return
    fields["pid"] = os.getpid()
    line = (json.dumps(fields) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _body_view(body: bytes) -> dict[str, Any]:
    """The body (as latin-1 text while small), its length and digest."""
    return {
        "body": body.decode("latin-1") if len(body) <= 65536 else None,
        "body_len": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def _big(size: int) -> Iterator[bytes]:
    """`size` bytes in pieces; byte i is i % 251 (a reordering or a loss shows)."""
    pattern = bytes(range(251)) * (PIECE // 251 + 2)
    sent = 0
    while sent < size:
        length = min(PIECE, size - sent)
        offset = sent % 251
        yield pattern[offset : offset + length]
        sent += length


# -- WSGI ----------------------------------------------------------------------------------


def _wsgi_headers(environ: dict[str, Any]) -> list[list[str]]:
    """HTTP_* (and CONTENT_*) keys in environ order: the order the server added them."""
    return [
        [key, value]
        for key, value in environ.items()
        if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")
    ]


def wsgi_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Echo (or /fixed, /big); records its calls in $CONFORMANCE_HITS."""
    path = environ["PATH_INFO"]
    query = environ["QUERY_STRING"]
    record(phase="enter", method=environ["REQUEST_METHOD"], path=path, query=query)
    if path == "/fixed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [FIXED]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _big(int(query.partition("=")[2] or "0"))
    try:
        body = environ["wsgi.input"].read()
    except Exception as exc:
        # The body never completed: the server must raise rather than hand over a part.
        record(
            phase="error",
            path=path,
            query=query,
            error=type(exc).__name__,
            oserror=isinstance(exc, OSError),
        )
        raise
    record(phase="done", path=path, query=query, body_len=len(body))
    view = {
        "interface": "wsgi",
        "pid": os.getpid(),
        "method": environ["REQUEST_METHOD"],
        "path": path,
        "raw_path": None,
        "query": query,
        "protocol": environ["SERVER_PROTOCOL"],
        "headers": _wsgi_headers(environ),
        **_body_view(body),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [_dump(view)]


# -- ASGI ----------------------------------------------------------------------------------


async def _respond(send: Send, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def asgi_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """ASGI twin of wsgi_app."""
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    path = scope["path"]
    query = scope["query_string"].decode("latin-1")
    record(phase="enter", method=scope["method"], path=path, query=query)
    if path == "/fixed":
        await _respond(send, FIXED, b"text/plain")
        return
    if path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in _big(int(query.partition("=")[2] or "0")):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            record(phase="error", path=path, query=query, error="http.disconnect")
            return
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(parts)
    record(phase="done", path=path, query=query, body_len=len(body))
    view = {
        "interface": "asgi",
        "pid": os.getpid(),
        "method": scope["method"],
        "path": path,
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query": query,
        "protocol": "HTTP/" + scope["http_version"],
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        **_body_view(body),
    }
    await _respond(send, _dump(view), b"application/json")
