"""Behind a proxy: forwarded client, scheme and host from trusted peers only."""

from __future__ import annotations

import pytest

from tests.helpers import Server, running
from tests.helpers.wire import exchange

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools


def _echo(server: Server, headers: str) -> dict[str, object]:
    import json

    raw = exchange(
        server,
        f"GET /p HTTP/1.1\r\nHost: internal:8000\r\n{headers}Connection: close\r\n\r\n".encode(),
    )
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


PROXY_HEADERS = (
    "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
)


def test_proxy_headers_from_trusted_peer_wsgi() -> None:
    """From 127.0.0.1 (trusted by default) WSGI sees the forwarded client, scheme and host."""
    with running("tests.apps.basic:wsgi_echo", ready=1) as server:
        environ = _echo(server, PROXY_HEADERS)
        assert environ["REMOTE_ADDR"] == "203.0.113.7"
        assert environ["wsgi.url_scheme"] == "https"
        assert environ["HTTP_HOST"] == "example.com"
        assert environ["SERVER_NAME"] == "example.com" and environ["SERVER_PORT"] == "443"


def test_proxy_headers_from_trusted_peer_asgi() -> None:
    """The same for ASGI: scope client, scheme and the host header."""
    with running("tests.apps.basic:asgi_echo", ready=1) as server:
        scope = _echo(server, PROXY_HEADERS)
        assert scope["client"] == ["203.0.113.7", 0]
        assert scope["scheme"] == "https"
        assert ["host", "example.com"] in scope["headers"]  # type: ignore[operator]


def test_proxy_headers_from_untrusted_peer_are_ignored() -> None:
    """With forwarded_allow_ips not matching the peer, the headers change nothing."""
    args = ("--forwarded-allow-ips", "10.9.9.9", "--lifespan", "off")
    with running("tests.apps.basic:asgi_echo", *args, ready=1) as server:
        scope = _echo(server, PROXY_HEADERS)
        assert scope["client"][0] == "127.0.0.1"  # type: ignore[index]
        assert scope["scheme"] == "http"
        assert ["host", "internal:8000"] in scope["headers"]  # type: ignore[operator]
