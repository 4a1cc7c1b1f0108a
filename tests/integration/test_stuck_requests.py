"""request_warn_after: a request with no response yet logs where it is, once, and goes on."""

from __future__ import annotations

import re

import pytest

from tests.helpers import running
from tests.helpers.wire import Client

STUCK = (
    r"request still without a response after \d+s: "
    r"GET /sleep\?3 \(request id \S+, client 127\.0\.0\.1:\d+\)"
)


@pytest.mark.parametrize(
    ("app", "frame"),
    [
        ("tests.apps.basic:wsgi_pid", r'basic\.py", line \d+, in wsgi_pid\n\s+time\.sleep'),
        (
            "tests.apps.basic:asgi_pid",
            r'basic\.py", line \d+, in asgi_pid\n\s+await asyncio\.sleep',
        ),
    ],
)
def test_a_stuck_request_logs_its_stack_once_and_is_answered(app: str, frame: str) -> None:
    with running(app, "--workers", "2", "--request-warn-after", "1", ready=2) as server:
        with Client.connect(server) as client:
            client.send_head("GET", "/sleep?3")
            line = server.wait_for(STUCK)
            # The stack is the request's own, down to the line where the app waits.
            stack = server.log()[line.end() :]
            assert re.search(frame, stack), server.log()
            reply = client.expect_response(within=10)
        assert reply.status == 200
        assert len(re.findall(STUCK, server.log())) == 1, server.log()


def test_a_started_stream_is_not_reported() -> None:
    with running(
        "tests.apps.process_apps:asgi_slow_stream",
        "--workers", "2",
        "--request-warn-after", "1",
        "--access-log", "-",
        ready=2,
    ) as server:  # fmt: skip
        with Client.connect(server) as client:
            reply = client.request("GET", "/stream", within=10)
        assert reply.status == 200
        server.wait_for(r'"GET /stream HTTP/1\.1" 200')  # logged after the body ended
        assert "still without a response" not in server.log()


def test_zero_turns_the_report_off() -> None:
    with running(
        "tests.apps.basic:wsgi_pid",
        "--workers", "2",
        "--request-warn-after", "0",
        "--access-log", "-",
        ready=2,
    ) as server:  # fmt: skip
        with Client.connect(server) as client:
            assert client.request("GET", "/sleep?2", within=10).status == 200
        server.wait_for(r'"GET /sleep\?2 HTTP/1\.1" 200')
        assert "still without a response" not in server.log()
