"""The ASGI app every server runs in the side-by-side benchmark.

Routes: `/` hello world; `/64k` a 64 KiB body; `/upload` reads the whole request body
and answers its length in bytes; a WebSocket on any path echoes every message back.
Imported as `bench_asgi:app` with benchmarks/apps on PYTHONPATH.

Rules:
1. Every server gets the same app, so the app's own cost is the same for all of them.
   Bodies are built once; the message dicts are built per request, as a real app does
   (and so a server that modified one could not change the next response).
2. Every response carries Content-Length, so no server has to chunk.
"""

from __future__ import annotations

from typing import Any

HELLO = b"Hello, world!\n"
BIG = b"x" * 65536
_TEXT = (b"content-type", b"text/plain; charset=utf-8")


def _start(body_len: int) -> dict[str, Any]:
    return {
        "type": "http.response.start",
        "status": 200,
        "headers": [_TEXT, (b"content-length", str(body_len).encode())],
    }


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "http":
        path = scope["path"]
        if path == "/upload":
            await _upload(receive, send)
        elif path == "/64k":
            await send(_start(len(BIG)))
            await send({"type": "http.response.body", "body": BIG})
        else:
            await send(_start(len(HELLO)))
            await send({"type": "http.response.body", "body": HELLO})
    elif kind == "websocket":
        await _echo(receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)


async def _upload(receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = str(size).encode()
    await send(_start(len(body)))
    await send({"type": "http.response.body", "body": body})


async def _echo(receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        data = message.get("bytes")
        if data is not None:
            await send({"type": "websocket.send", "bytes": data})
        else:
            await send({"type": "websocket.send", "text": message.get("text") or ""})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
