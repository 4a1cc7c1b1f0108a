"""Each ASGI request cycle runs in its own task, in a fresh copy of the worker's context
(apps/asgi.py, Rule 1): a pipelined request never sees what the one before it set, and
cycles that wait or not answer in order. Both drivers."""

from __future__ import annotations

import pytest

from tests.helpers import running
from tests.helpers.drivers import driver_params
from tests.helpers.wire import Client

APP = "tests.apps.cycle_app:app"
ONE = ("--workers", "1")


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


@pytest.mark.parametrize("driver", driver_params())
def test_a_context_variable_set_by_a_request_is_not_seen_by_the_next(
    driver: tuple[str, ...],
) -> None:
    """A pipelined request is started from inside the send() of the one before it; its
    task must not copy that request's context."""
    with running(APP, *ONE, *driver, ready=1) as server, Client.connect(server) as client:
        for path in ("/mark?a", "/mark?b", "/wait", "/mark?c"):
            client.send(get(path))
            assert client.expect_response().json()["seen"] == "unset"
        client.send(get("/mark?d") + get("/mark?e") + get("/wait") + get("/mark?f"))
        for _ in range(4):
            assert client.expect_response().json()["seen"] == "unset"


@pytest.mark.parametrize("driver", driver_params())
def test_pipelined_requests_that_wait_or_not_are_answered_in_order(
    driver: tuple[str, ...],
) -> None:
    paths = ["/wait", "/mark", "/wait", "/wait", "/mark", "/mark", "/wait"] * 3
    with running(APP, *ONE, *driver, ready=1) as server, Client.connect(server) as client:
        client.send(b"".join(get(path) for path in paths))
        answered = [client.expect_response().json()["path"] for _ in paths]
        assert answered == paths


@pytest.mark.parametrize("driver", driver_params())
def test_an_app_that_raises_at_once_gets_a_500_and_the_worker_serves_on(
    driver: tuple[str, ...],
) -> None:
    with running(APP, *ONE, *driver, ready=1) as server:
        with Client.connect(server) as client:
            client.send(get("/raise"))
            assert client.expect_response().status == 500
        with Client.connect(server) as client:
            client.send(get("/mark"))
            assert client.expect_response().status == 200
        assert "boom before the response" in server.log()
