"""A Starlette app for tests/integration/test_frameworks.py (tests.apps.starlette_app:app).

Starlette's request.form() needs python-multipart, which the test extras do not install;
the multipart upload is parsed from request.stream() with Werkzeug's sans-I/O decoder
(Werkzeug comes with Flask), which also proves the body arrives as a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

# /limited refuses bodies above this with 413, as soon as it has read past it.
LIMIT = 64 * 1024
# Longest a gated stream waits for the test to create its gate file.
GATE_TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """Startup puts a greeting and the worker pid into the lifespan state."""
    yield {"greeting": "hello from lifespan", "startup_pid": os.getpid()}


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"framework": "starlette", "pid": os.getpid()})


async def item(request: Request) -> JSONResponse:
    return JSONResponse(
        {"item_id": request.path_params["item_id"], "name": request.path_params["name"]}
    )


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {
            "len": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "content_type": request.headers.get("content-type"),
        }
    )


async def raw(request: Request) -> JSONResponse:
    """The body hashed as it streams in, and how many pieces it came in."""
    digest = hashlib.sha256()
    size = pieces = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
        pieces += bool(chunk)
    return JSONResponse(
        {
            "len": size,
            "sha256": digest.hexdigest(),
            "pieces": pieces,
            "chunked": "chunked" in request.headers.get("transfer-encoding", ""),
        }
    )


async def upload(request: Request) -> JSONResponse:
    """A multipart form, decoded while it streams in: the field `name` and the file `file`."""
    _, options = parse_options_header(request.headers["content-type"])
    decoder = MultipartDecoder(options["boundary"].encode())
    fields: dict[str, str] = {}
    files: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] = {}

    def drain() -> None:
        nonlocal current
        while True:
            event = decoder.next_event()
            if isinstance(event, (NeedData, Epilogue)):
                return
            if isinstance(event, File):
                current = {
                    "name": event.name,
                    "filename": event.filename,
                    "content_type": event.headers.get("content-type"),
                    "digest": hashlib.sha256(),
                    "len": 0,
                }
            elif isinstance(event, Field):
                current = {"name": event.name, "value": b""}
            elif isinstance(event, Data):
                if "digest" in current:
                    current["digest"].update(event.data)
                    current["len"] += len(event.data)
                else:
                    current["value"] += event.data
                if not event.more_data:
                    if "digest" in current:
                        current["sha256"] = current.pop("digest").hexdigest()
                        files[current["name"]] = current
                    else:
                        fields[current["name"]] = current["value"].decode()

    async for chunk in request.stream():
        decoder.receive_data(chunk)
        drain()
    decoder.receive_data(None)
    drain()
    file = files["file"]
    return JSONResponse(
        {
            "name": fields["name"],
            **{key: file[key] for key in ("filename", "content_type", "len", "sha256")},
        }
    )


async def form(request: Request) -> JSONResponse:
    """A urlencoded form: every value of every field."""
    body = await request.body()
    return JSONResponse(parse_qs(body.decode(), keep_blank_values=True))


async def limited(request: Request) -> JSONResponse:
    """Reads the body until it passes LIMIT: then Starlette answers 413."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > LIMIT:
            raise HTTPException(413, f"body larger than {LIMIT} bytes")
    return JSONResponse({"len": size})


async def stream(request: Request) -> StreamingResponse:
    count = int(request.query_params.get("n", "5"))

    async def generate() -> AsyncIterator[bytes]:
        for i in range(count):
            yield b"part %d\n" % i
            await asyncio.sleep(0)

    return StreamingResponse(generate(), media_type="text/plain")


async def gated(request: Request) -> StreamingResponse:
    """`before` chunks, then nothing until the file `gate` exists (bounded), then the end."""
    before = int(request.query_params.get("before", "1"))
    gate = Path(request.query_params["gate"])

    async def generate() -> AsyncIterator[bytes]:
        for i in range(before):
            yield b"before %d\n" % i
        deadline = time.monotonic() + GATE_TIMEOUT
        while not gate.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        yield b"released\n" if gate.exists() else b"gate timed out\n"

    return StreamingResponse(generate(), media_type="text/plain")


async def stream_error(request: Request) -> StreamingResponse:
    """A streamed body whose generator raises after the first chunk."""

    async def generate() -> AsyncIterator[bytes]:
        yield b"partial 0\n"
        await asyncio.sleep(0)
        raise RuntimeError("starlette stream failed")

    return StreamingResponse(generate(), media_type="text/plain")


async def ignore_body(request: Request) -> PlainTextResponse:
    """Answers without reading the body, once the file `gate` exists (bounded wait)."""
    gate = Path(request.query_params["gate"])
    deadline = time.monotonic() + GATE_TIMEOUT
    while not gate.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    return PlainTextResponse("body ignored\n")


async def file(request: Request) -> FileResponse:
    """FileResponse of the file named by `path` (a file the test wrote); ranges honoured."""
    return FileResponse(request.query_params["path"], media_type="application/octet-stream")


async def state(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "greeting": request.state.greeting,
            "startup_pid": request.state.startup_pid,
            "pid": os.getpid(),
        }
    )


async def error(request: Request) -> JSONResponse:
    raise RuntimeError("starlette route failed")


app = Starlette(
    routes=[
        Route("/", home),
        Route("/items/{item_id:int}/{name}", item),
        Route("/echo", echo, methods=["POST"]),
        Route("/raw", raw, methods=["POST"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/form", form, methods=["POST"]),
        Route("/limited", limited, methods=["POST"]),
        Route("/ignore-body", ignore_body, methods=["POST"]),
        Route("/stream", stream),
        Route("/gated", gated),
        Route("/stream-error", stream_error),
        Route("/file", file),
        Route("/state", state),
        Route("/error", error),
    ],
    lifespan=lifespan,
)
