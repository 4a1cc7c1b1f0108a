"""The WSGI app every server runs in the side-by-side benchmark.

Routes: `/` hello world; `/64k` a 64 KiB body; `/upload` reads the whole request body
(CONTENT_LENGTH bytes) and answers its length. Imported as `bench_wsgi:application`
with benchmarks/apps on PYTHONPATH.

Rules:
1. The app costs every server the same: bodies are built once, headers per request (as a
   real app does, and so a server that modified the list could not change the next one).
2. Every response carries Content-Length; the body is one bytes object in a list.
3. The app never reads past CONTENT_LENGTH (PEP 3333 allows a server not to stop it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

HELLO = b"Hello, world!\n"
BIG = b"x" * 65536
CHUNK = 65536


def _headers(body_len: int) -> list[tuple[str, str]]:
    return [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(body_len))]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/upload":
        body = str(_read_all(environ)).encode()
        start_response("200 OK", _headers(len(body)))
        return [body]
    if path == "/64k":
        start_response("200 OK", _headers(len(BIG)))
        return [BIG]
    start_response("200 OK", _headers(len(HELLO)))
    return [HELLO]


def _read_all(environ: dict[str, Any]) -> int:
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    size = 0
    while remaining > 0:
        chunk = stream.read(min(CHUNK, remaining))
        if not chunk:
            break  # the client went away
        size += len(chunk)
        remaining -= len(chunk)
    return size
