"""Small apps the integration tests serve (module path: tests.apps.basic)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any


def _entered(path: str) -> None:
    """One "app entered PATH in pid N" line in the server's log (stderr): a test waits for
    it to know that the request is in the app."""
    print(f"app entered {path} in pid {os.getpid()}", file=sys.stderr, flush=True)


def wsgi_pid(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers with the worker's pid; /sleep?s sleeps first; /sleep-noted?s also logs
    "app entered /sleep-noted" before it sleeps."""
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
    elif environ["PATH_INFO"] == "/sleep-noted":
        _entered("/sleep-noted")
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_pid(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI twin of wsgi_pid (no lifespan support: exercises lifespan=auto)."""
    if scope["type"] != "http":
        raise RuntimeError("lifespan not supported")
    if scope["path"] == "/sleep":
        await asyncio.sleep(float(scope["query_string"] or b"1"))
    elif scope["path"] == "/sleep-noted":
        _entered("/sleep-noted")
        await asyncio.sleep(float(scope["query_string"] or b"1"))
    body = str(os.getpid()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi_echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Echoes the environ's interesting keys and the body as JSON."""
    body = environ["wsgi.input"].read()
    keys = {k: v for k, v in environ.items() if isinstance(v, str)}
    keys["body"] = body.decode("latin-1")
    out = json.dumps(keys).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [out]


async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the scope and the body as JSON."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    shown = {
        k: (v.decode("latin-1") if isinstance(v, bytes) else v)
        for k, v in scope.items()
        if k not in ("headers", "state", "extensions", "asgi")
    }
    shown["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
    shown["asgi"] = scope["asgi"]
    shown["body"] = body.decode("latin-1")
    out = json.dumps(shown).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": out})
