"""A Starlette WebSocket endpoint for tests/integration/test_websocket.py.

Module path: tests.apps.ws_starlette:app. `/ws` accepts, echoes text as "echo: ..." until
it gets "bye", then closes with 4002. The first message it sends names the worker pid.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(f"pid {os.getpid()} path {websocket.url.path}")
    while True:
        text = await websocket.receive_text()
        if text == "bye":
            await websocket.close(code=4002, reason="starlette bye")
            return
        await websocket.send_text(f"echo: {text}")


app = Starlette(routes=[WebSocketRoute("/ws", ws_echo)])
