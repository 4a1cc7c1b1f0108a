from __future__ import annotations

import pytest

from tests.helpers import http_get, running
from tests.helpers.drivers import H11

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools


def test_wsgi_and_asgi_hello_two_workers(http_driver: tuple[str, ...]) -> None:
    """The examples serve on each driver; the serving line names the one the module
    fixture chose (so every module marked `http_driver` really runs on both)."""
    names = "(h11, asyncio)" if http_driver == H11 else "(httptools, uvloop)"
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
            assert f"on {server.host}:{server.port} {names}" in server.log(), server.log()
