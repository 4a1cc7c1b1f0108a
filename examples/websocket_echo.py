"""A WebSocket echo server in plain ASGI: `gunrunner examples.websocket_echo:app`.

Try it: python -m websockets ws://127.0.0.1:8000/   (pip install websockets)
"""

from __future__ import annotations

from typing import Any

PAGE = b"""<!doctype html><title>echo</title>
<script>
const ws = new WebSocket(`ws://${location.host}/`);
ws.onmessage = (e) => document.body.append(e.data, document.createElement("br"));
ws.onopen = () => ws.send("hello");
</script>"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": PAGE})
        return
    if scope["type"] != "websocket":
        return  # lifespan: nothing to set up
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
