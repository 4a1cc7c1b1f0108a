from __future__ import annotations

from tests.helpers import http_get, running


def test_wsgi_and_asgi_hello_two_workers() -> None:
    for app in (
        "examples.hello_wsgi:application",
        "examples.hello_asgi:app",
        "examples.hello_asgi2:App",
    ):
        with running(app, "--workers", "2", ready=2) as server:
            response = http_get(server.url)
            assert response.status_code == 200
            assert response.text.startswith("Hello")
            assert len(server.workers()) == 2
