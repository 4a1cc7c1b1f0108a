"""Refused requests reach the access log: the status sent, and no unbounded client bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Server, http_get, running, wait_until
from tests.helpers.wire import exchange

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

HOST = b"Host: x\r\n"
# (raw request, status it gets, request line logged or None for "-")
REFUSALS = [
    pytest.param(b"BAD REQUEST LINE\r\n\r\n", 400, None, id="garbage-400"),
    pytest.param(b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414, None, id="414"),
    pytest.param(
        b"GET /many HTTP/1.1\r\n"
        + HOST
        + b"".join(b"X-H%d: v\r\n" % n for n in range(21))
        + b"\r\n",
        431,
        "GET /many HTTP/1.1",
        id="431",
    ),
    pytest.param(
        b"POST /big HTTP/1.1\r\n" + HOST + b"Content-Length: 1073741824\r\n\r\n",
        413,
        "POST /big HTTP/1.1",
        id="413",
    ),
    pytest.param(
        b"CONNECT example.com:443 HTTP/1.1\r\n" + HOST + b"\r\n",
        501,
        "CONNECT example.com:443 HTTP/1.1",
        id="501",
    ),
    pytest.param(b"GET /two HTTP/2.0\r\n" + HOST + b"\r\n", 505, "GET /two HTTP/2.0", id="505"),
    # h11 itself refuses a 1.1 head without Host: no head was parsed.
    pytest.param(b"GET /nohost HTTP/1.1\r\n\r\n", 400, None, id="no-host-400"),
]
ARGS = ("--limit-request-line", "1024", "--limit-request-fields", "20", "--header-timeout", "0.5")


def records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_records(path: Path, count: int) -> list[dict[str, object]]:
    assert wait_until(lambda: len(records(path)) >= count, 10), records(path)
    return records(path)


def serves_on(server: Server, path: Path, count: int) -> None:
    """The worker answers a normal request next, and logs it as line `count`."""
    assert http_get(server.url, "/after").status_code == 200
    assert wait_records(path, count)[-1]["path"] == "/after"


@pytest.mark.parametrize("app", ["tests.apps.basic:wsgi_pid", "tests.apps.basic:asgi_pid"])
def test_every_refusal_gets_a_line_with_its_status(tmp_path: Path, app: str) -> None:
    """400, 413, 414, 431, 501, 505: one line each, with the status and bytes sent."""
    log = tmp_path / "access.jsonl"
    with running(app, "--access-log", str(log), "--access-log-json", *ARGS, ready=1) as server:
        seen = 0
        for param in REFUSALS:
            raw, status, line = param.values
            reply = exchange(server, raw)  # type: ignore[arg-type]
            assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:200]
            body = reply.split(b"\r\n\r\n", 1)[1]
            record = wait_records(log, seen + 1)[seen]
            assert record["status"] == status, record
            assert record["bytes"] == len(body), record
            assert record["remote_addr"] == "127.0.0.1"
            assert record["request_line"] == (line or "-"), record
            if line is None:
                assert record["method"] == "-" and record["path"] == ""
            # The client's bytes past the limits are never copied into the log.
            assert len(json.dumps(record)) < 600, record
            serves_on(server, log, seen + 2)
            seen += 2


def test_slow_head_408_is_logged_in_combined_format(tmp_path: Path) -> None:
    """A head not complete within header_timeout: 408, and a text line saying so."""
    log = tmp_path / "access.log"
    with running("tests.apps.basic:wsgi_pid", "--access-log", str(log), *ARGS, ready=1) as server:
        reply = exchange(server, b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert wait_until(lambda: log.exists() and log.read_text().count("\n") == 1, 10)
        line = log.read_text()
        assert '] "-" 408 ' in line, line
        assert line.startswith("127.0.0.1 - - ["), line
        assert http_get(server.url).status_code == 200
        assert wait_until(lambda: log.read_text().count("\n") == 2, 10)
