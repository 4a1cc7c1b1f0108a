"""Apps for the process-model tests (module path: tests.apps.process_apps)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any


async def _answer_pid(send: Any) -> None:
    body = str(os.getpid()).encode()
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan_ok(receive: Any, send: Any) -> None:
    """Complete lifespan startup and shutdown (shared by the test apps)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def blocking(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the pid; /block stalls the event loop for 30 s (a stuck worker)."""
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    if scope["path"] == "/block":
        time.sleep(30)  # blocks the whole loop: no heartbeat while this runs
    await _answer_pid(send)


async def startup_fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reports lifespan startup failure with a message."""
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        failed = {"type": "lifespan.startup.failed", "message": "database unreachable at db:5432"}
        await send(failed)
        return
    await _answer_pid(send)


async def startup_raises(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raises during lifespan startup (fatal with --lifespan on)."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("lifespan exploded while warming the cache")
    await _answer_pid(send)


_HELD: list[bytearray] = []


def wsgi_grows(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """/grow?MIB keeps MIB more MiB of touched memory (a leak); anything else: the pid."""
    if environ["PATH_INFO"] == "/grow":
        _HELD.append(bytearray(b"\1" * (int(environ["QUERY_STRING"]) << 20)))  # touched pages
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_slow_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Starts its response at once, then takes 2.5 s for the body (a stream, not stuck)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(2.5)
    await send({"type": "http.response.body", "body": b"done"})
