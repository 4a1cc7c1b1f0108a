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
        """Return once the response is complete or the client has gone away."""

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Send a complete response at once (one write)."""

    def start(self, status: int, headers: Headers) -> None:
        """Begin a streamed response; the head goes out with the first body write."""

    async def write(self, data: bytes) -> None:
        """Send part of the body; waits while the client is not reading."""

    def end(self) -> None:
        """Finish the response."""

    def abort(self) -> None:
        """Drop the connection: the response cannot be completed."""


class AppBridge(Protocol):
    """Runs the app for each Exchange a driver hands it."""

    def handle(self, exchange: Exchange) -> None: ...
