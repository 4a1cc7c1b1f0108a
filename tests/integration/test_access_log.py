"""The access log: combined text or JSON lines, request ids, no forged lines, USR1 reopen."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, http_get, running, wait_until

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools
COMBINED = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /hello\?x=1 HTTP/1\.1" '
    r'200 (\d+) "-" "(python-httpx/[^"]+)" (\d+\.\d)ms ([0-9a-f]{16})$'
)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_combined_line_per_request(tmp_path: Path) -> None:
    """--access-log FILE writes one combined-format line per response, with a request id."""
    log = tmp_path / "access.log"
    with running("tests.apps.basic:asgi_pid", "--access-log", str(log), ready=1) as server:
        response = http_get(server.url, "/hello?x=1")
        assert wait_until(lambda: len(lines(log)) == 1, 5)
        match = COMBINED.match(lines(log)[0])
        assert match, lines(log)
        assert int(match.group(1)) == len(response.content)


def test_json_lines_cannot_be_forged(tmp_path: Path) -> None:
    """JSON lines escape what a client sends; text lines escape quotes."""
    evil = 'x" 200 0 "-" "forged'
    log = tmp_path / "access.jsonl"
    args = ("--access-log", str(log), "--access-log-json")
    with running("tests.apps.basic:wsgi_pid", *args, ready=1) as server:
        http_get(server.url, "/a", headers={"User-Agent": evil, "Referer": "r\\"})
        assert wait_until(lambda: len(lines(log)) == 1, 5)
        record = json.loads(lines(log)[0])
        assert record["user_agent"] == evil and record["referer"] == "r\\"
        assert record["status"] == 200 and record["method"] == "GET" and record["path"] == "/a"
        assert set(record) >= {"remote_addr", "duration", "request_id", "bytes", "pid"}
    text_log = tmp_path / "access.log"
    with running("tests.apps.basic:wsgi_pid", "--access-log", str(text_log), ready=1) as server:
        http_get(server.url, "/a", headers={"User-Agent": evil})
        assert wait_until(lambda: len(lines(text_log)) == 1, 5)
        assert '"x\\" 200 0 \\"-\\" \\"forged"' in lines(text_log)[0]


def test_request_id_from_trusted_proxy_reaches_the_app(tmp_path: Path) -> None:
    """X-Request-ID from a trusted peer is kept, in the line and in the scope."""
    log = tmp_path / "access.log"
    with running("tests.apps.basic:asgi_echo", "--access-log", str(log), ready=1) as server:
        scope = http_get(server.url, "/", headers={"X-Request-ID": "abc-123"}).json()
        assert scope["gunrunner.request_id"] == "abc-123"
        assert wait_until(lambda: len(lines(log)) == 1, 5)
        assert lines(log)[0].endswith(" abc-123")
    untrusted = ("--access-log", str(log), "--forwarded-allow-ips", "10.9.9.9")
    with running("tests.apps.basic:wsgi_echo", *untrusted, ready=1) as server:
        environ = http_get(server.url, "/", headers={"X-Request-ID": "abc-123"}).json()
        assert re.fullmatch(r"[0-9a-f]{16}", environ["gunrunner.request_id"])


def test_usr1_reopens_the_access_log(tmp_path: Path) -> None:
    """After logrotate moves the file, SIGUSR1 makes every worker write a fresh one."""
    log = tmp_path / "access.log"
    args = ("--access-log", str(log), "--workers", "2")
    with running("tests.apps.basic:wsgi_pid", *args, ready=2) as server:
        http_get(server.url)
        assert wait_until(lambda: len(lines(log)) == 1, 5)
        log.rename(tmp_path / "access.log.1")
        server.send_signal(signal.SIGUSR1)
        server.wait_for("log files reopened", count=2)
        for _ in range(6):
            http_get(server.url)
        assert wait_until(lambda: len(lines(log)) == 6, 5)
        assert len(lines(tmp_path / "access.log.1")) == 1


def test_bare_flag_logs_to_stdout_and_off_disables() -> None:
    """--access-log alone writes to stdout; "off" writes nothing."""
    with running("tests.apps.basic:wsgi_pid", "--access-log", ready=1) as server:
        http_get(server.url, "/stdout-check")
        assert wait_until(lambda: '"GET /stdout-check HTTP/1.1" 200' in server.log(), 5)
    with running("tests.apps.basic:wsgi_pid", "--access-log", "off", ready=1) as server:
        http_get(server.url, "/quiet")
        assert "/quiet" not in server.log()


def test_bad_format_is_a_config_error() -> None:
    """An unknown field in access_log_format exits 2 naming it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunrunner",
            "tests.apps.basic:wsgi_pid",
            "--bind",
            "127.0.0.1:0",
            "--access-log-format",
            "{status} {nope}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "access_log_format: unknown field {nope}" in result.stderr
