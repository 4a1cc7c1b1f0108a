"""ASGI WebSocket apps for tests/integration/test_websocket.py (tests.apps.ws_apps:app).

`app` routes on the path. What a client cannot see on the wire (the disconnect message,
how far a sender got) goes to files under $WS_RECORD_DIR, named by the query string:
`/record?name` writes name.json once the app got websocket.disconnect. Plain HTTP gets
"http ok"; `GET /marker?text` also logs "app marker: text" first.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

Receive = Any
Send = Any
Scope = dict[str, Any]

CHUNK = 64 * 1024  # message size of /flood


def record(name: str, data: Any) -> None:
    """Write `data` as JSON to $WS_RECORD_DIR/<name>.json atomically (no-op without the dir)."""
    directory = os.environ.get("WS_RECORD_DIR")
    if not directory or not name:
        return
    target = Path(directory) / f"{name}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(target)


def _name(scope: Scope) -> str:
    return scope["query_string"].decode("ascii")


def _shown_scope(scope: Scope) -> dict[str, Any]:
    """The scope as JSON-friendly data (bytes decoded as latin-1)."""

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("latin-1")
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in scope.items()}


async def _lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["greeting"] = "hello from lifespan"
            scope["state"]["startup_pid"] = os.getpid()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _echo_until_disconnect(receive: Receive, send: Send) -> dict[str, Any]:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return dict(message)
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Routes WebSocket paths; answers plain HTTP with 200 "http ok"."""
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(scope, receive, send)
        return
    if kind == "http":
        if scope["path"] == "/marker":
            # One "app marker: QUERY" line in the server's log: what came before is in.
            print(f"app marker: {_name(scope)}", file=sys.stderr, flush=True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"http ok"})
        return
    path = scope["path"]
    connect = await receive()
    assert connect["type"] == "websocket.connect", connect
    handler = ROUTES.get(path)
    if handler is None and path.startswith("/scope/"):
        handler = show_scope
    if handler is None:
        await send({"type": "websocket.close", "code": 1000})
        return
    await handler(scope, receive, send)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Echoes every message; the disconnect message goes to the record named by the query."""
    await send({"type": "websocket.accept"})
    disconnect = await _echo_until_disconnect(receive, send)
    record(_name(scope), disconnect)


async def show_scope(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts and sends the scope as JSON text, then echoes."""
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(_shown_scope(scope))})
    await _echo_until_disconnect(receive, send)


async def subprotocol(scope: Scope, receive: Receive, send: Send) -> None:
    """Picks "b" if offered, adds an extra header, sends the offered list as JSON."""
    chosen = "b" if "b" in scope["subprotocols"] else None
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": chosen,
            "headers": [(b"x-extra", b"yes"), (b"set-cookie", b"session=1")],
        }
    )
    await send({"type": "websocket.send", "text": json.dumps(scope["subprotocols"])})
    await _echo_until_disconnect(receive, send)


async def deny(scope: Scope, receive: Receive, send: Send) -> None:
    """A 401 denial response in one body message."""
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"www-authenticate", b"Bearer"),
                (b"content-length", b"13"),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"go away, you!"})


async def deny_parts(scope: Scope, receive: Receive, send: Send) -> None:
    """A 401 denial response whose body comes in two messages (no Content-Length)."""
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"twice")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"first part, ", "more_body": True})
    await asyncio.sleep(0.05)
    await send({"type": "websocket.http.response.body", "body": b"second part"})


async def extensions(scope: Scope, receive: Receive, send: Send) -> None:
    """Denies with 200 and the scope's extensions as the JSON body."""
    body = json.dumps(scope.get("extensions")).encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


async def close_before_accept(scope: Scope, receive: Receive, send: Send) -> None:
    """websocket.close before accept: the handshake is denied (403)."""
    await send({"type": "websocket.close", "code": 1000})


async def app_close(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts, sends one message, closes with 4001; records the disconnect message."""
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "closing soon"})
    await send({"type": "websocket.close", "code": 4001, "reason": "app says bye"})
    message = await receive()
    record(_name(scope), dict(message))


async def error_after_accept(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts, then raises."""
    await send({"type": "websocket.accept"})
    raise RuntimeError("boom after accept")


async def error_before_accept(scope: Scope, receive: Receive, send: Send) -> None:
    """Raises before accepting."""
    raise RuntimeError("boom before accept")


async def slow_reader(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts, then reads one message every 0.2 s; records how many it read."""
    await send({"type": "websocket.accept"})
    count = 0
    while True:
        await asyncio.sleep(0.2)
        message = await receive()
        if message["type"] == "websocket.disconnect":
            break
        count += 1
        record(_name(scope), {"read": count})


async def flood(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts, then sends 200 MiB in 64 KiB binary messages; records the bytes sent."""
    await send({"type": "websocket.accept"})
    payload = b"\x5a" * CHUNK
    sent = 0
    name = _name(scope)
    record(name, {"sent": sent, "done": False})
    try:
        while sent < 200 * 1024 * 1024:
            await send({"type": "websocket.send", "bytes": payload})
            sent += CHUNK
            if sent % (16 * CHUNK) == 0:
                record(name, {"sent": sent, "done": False})
    finally:
        record(name, {"sent": sent, "done": True})


ROUTES = {
    "/echo": echo,
    "/scope": show_scope,
    "/subprotocol": subprotocol,
    "/deny": deny,
    "/deny-parts": deny_parts,
    "/extensions": extensions,
    "/close-before-accept": close_before_accept,
    "/app-close": app_close,
    "/error-after-accept": error_after_accept,
    "/error-before-accept": error_before_accept,
    "/slow-reader": slow_reader,
    "/flood": flood,
}
