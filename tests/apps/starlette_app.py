"""A Starlette app for tests/integration/test_frameworks.py (tests.apps.starlette_app:app)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


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


async def stream(request: Request) -> StreamingResponse:
    count = int(request.query_params.get("n", "5"))

    async def generate() -> AsyncIterator[bytes]:
        for i in range(count):
            yield b"part %d\n" % i
            await asyncio.sleep(0)

    return StreamingResponse(generate(), media_type="text/plain")


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
        Route("/stream", stream),
        Route("/state", state),
        Route("/error", error),
    ],
    lifespan=lifespan,
)
