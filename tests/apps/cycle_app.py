"""The ASGI app of tests/integration/test_asgi_cycles.py: it reports a context variable
the request before it may have set, and waits or raises on request."""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any

REQUEST_MARK: contextvars.ContextVar[str] = contextvars.ContextVar("request_mark")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/mark?X: reports the mark a request before it left (there must be none), sets X.
    /wait: yields to the loop (a bare yield and a timer) before answering.
    /raise: raises before its response."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/raise":
        raise RuntimeError("boom before the response")
    if path == "/wait":
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
    seen = REQUEST_MARK.get("unset")
    if path == "/mark":
        REQUEST_MARK.set(scope["query_string"].decode() or "set")
    body = json.dumps({"path": path, "seen": seen}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
