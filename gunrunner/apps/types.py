"""The seam between protocol drivers and app bridges, and the ASGI types.

A protocol driver (protocols/http11.py today, a faster parser later) presents each
request as an `Exchange`; the bridges (apps/asgi.py, apps/wsgi.py) build the scope or
environ from it and drive the response through it. Neither side sees the other's types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI3App = Callable[[Scope, Receive, Send], Awaitable[None]]
WSGIApp = Callable[..., Any]
Headers = list[tuple[bytes, bytes]]

# The answer to a request the app failed (it raised, or sent a broken response) before
# anything went out: the same from every bridge and driver.
INTERNAL_ERROR = b"Internal Server Error\n"


def internal_error_headers() -> Headers:
    """The headers of the 500 that carries INTERNAL_ERROR (a new list each time)."""
    return [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(INTERNAL_ERROR)),
        (b"connection", b"close"),
    ]


class ClientDisconnected(OSError):
    """The client went away before the request body or the response was complete."""


class Exchange(Protocol):
    """One request and its response, as a protocol driver presents it.

    Request fields are plain attributes filled once by the driver. Methods are called
    on the event loop thread only.
    """

    method: str
    path: str  # percent-decoded, for PATH_INFO / scope["path"]
    raw_path: bytes
    query_string: bytes
    http_version: str
    headers: Headers  # names lower-case, in the order received
    scheme: str
    client: tuple[str, int] | None
    server: tuple[str, int] | None
    request_id: str | None  # set when the access log is on
    tls: dict[str, Any] | None  # the ASGI tls extension on TLS connections, else None

    @property
    def disconnected(self) -> bool: ...

    @property
    def response_started(self) -> bool: ...

    def body_known_empty(self) -> bool:
        """True when the request has no body left to read (no waiting needed)."""

    async def receive(self) -> tuple[bytes, bool]:
        """The next piece of the body and whether more follows; (b"", False) at the end.

        Raises ClientDisconnected if the client goes away before the body is complete.
        """

    async def wait_done(self) -> None:
        """Return once the response is complete or the client has gone away (or sent
        EOF after its request: it may still read a response, if one comes)."""

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Send a complete response at once (one write)."""

    def start(self, status: int, headers: Headers) -> None:
        """Begin a streamed response; the head goes out with the first body write."""

    async def write(self, data: bytes) -> None:
        """Send part of the body; waits while the client is not reading."""

    async def sendfile(self, file: Any, offset: int, count: int) -> None:
        """Send `count` bytes of a real file from `offset` as body (sendfile(2) if it can).

        Raises ClientDisconnected if the client goes away or the file ends early (the
        connection is closed either way: the response is incomplete).
        """

    def end(self, trailers: Headers | None = None) -> None:
        """Finish the response; `trailers` go out if it is chunked and the client asked
        for them (`TE: trailers`), else they are dropped."""

    def abort(self) -> None:
        """Drop the connection: the response cannot be completed."""


class AppBridge(Protocol):
    """Runs the app for each Exchange a driver hands it."""

    def handle(self, exchange: Exchange) -> None: ...


class WebSocketClosed(OSError):
    """The WebSocket is closed; `code` and `reason` say how (1006: no close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with code {code}")
        self.code = code
        self.reason = reason


class WebSocketSession(Protocol):
    """One WebSocket connection, as the websocket driver presents it to a bridge.

    Request fields are those of the upgrade request. Methods run on the event loop.
    """

    path: str
    raw_path: bytes
    query_string: bytes
    http_version: str
    headers: Headers
    scheme: str  # "ws" or "wss"
    client: tuple[str, int] | None
    server: tuple[str, int] | None
    tls: dict[str, Any] | None
    subprotocols: list[str]

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        """Complete the handshake (101)."""

    def reject(self, status: int, headers: Headers, body: bytes, more: bool) -> None:
        """Deny the handshake with an HTTP response; call again with more body parts."""

    async def receive(self) -> str | bytes:
        """The next whole message; raises WebSocketClosed once the connection is closed."""

    async def send(self, data: str | bytes) -> None:
        """Send a message; waits while the client is not reading."""

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (before accept: deny with 403)."""


class WebSocketBridge(Protocol):
    """An app bridge that can serve WebSockets (ASGI)."""

    def handle_websocket(self, session: WebSocketSession) -> None: ...
