"""SIGHUP restarts new-before-old, end to end: real processes, real sockets on 127.0.0.1.

Each slot gets a successor; the old worker drains only once its successor is ready. A
successor that fails to boot is dropped and the old workers serve on.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import Server, assert_gone, wait_until
from tests.helpers.wire import get_pid, read_response, send_request
from tests.integration.test_reload import (
    ENV,
    SLOW_IMPORT,
    app_source,
    assert_all_serve,
    fetch,
    save,
    serving,
)

APPS = ["tests.apps.basic:wsgi_pid", "tests.apps.basic:asgi_pid"]
FAILED = r"the new workers failed to boot; the running workers keep serving the previous code:\n"


class Clients(threading.Thread):
    """GETs on fresh connections, one after the other, until stopped (bounded)."""

    def __init__(self, server: Server, limit: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.limit = limit
        self.stopped = threading.Event()
        self.pids: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                self.pids.append(get_pid(self.server, timeout=5.0))
            except Exception as exc:  # every failure is a finding: keep it for the test
                self.errors.append(repr(exc))

    def finish(self) -> None:
        self.stopped.set()
        self.join(10.0)
        assert not self.is_alive()


def children(server: Server) -> set[int]:
    return set(server.workers())


@pytest.mark.parametrize("app", APPS)
def test_hup_finishes_the_request_in_flight_and_never_stops_serving(app: str) -> None:
    """HUP during a 2 s request: it completes (200, old pid); every other client is served."""
    with serving(app, "--workers", "2", ready=2) as server:
        old = children(server)
        assert len(old) == 2
        slow = send_request(server, "/sleep-noted?2")
        with slow:
            server.wait_for("app entered /sleep-noted")  # the request is in the app now
            clients = Clients(server)
            clients.start()
            try:
                assert wait_until(lambda: len(clients.pids) >= 5, 5.0), clients.errors
                server.send_signal(signal.SIGHUP)
                server.wait_for(r"restart complete: 2 workers serving")
                status, body = read_response(slow)
                assert (status, int(body) in old) == (200, True), (status, body, old)
                for pid in old:
                    assert_gone(pid, 10.0)
                served_after = len(clients.pids)
                assert wait_until(lambda: len(clients.pids) >= served_after + 5, 5.0)
            finally:
                clients.finish()
        assert not clients.errors, (clients.errors[:5], server.log())
        new = children(server)
        assert len(new) == 2 and not new & old, (new, old)
        assert set(clients.pids) >= new  # the new workers took over while clients came
        assert set(clients.pids) <= old | new
        assert server.stop() == 0


@pytest.mark.parametrize("app", APPS)
def test_clients_connecting_through_ten_hups_all_get_a_response(app: str) -> None:
    """Three clients on fresh connections through 10 HUP restarts: every request gets a 200."""
    with serving(app, "--workers", "2", ready=2) as server:
        clients = [Clients(server) for _ in range(3)]

        def traffic(count: int = 10) -> None:
            """Wait until the clients got `count` more answers (or errors)."""
            start = sum(len(c.pids) + len(c.errors) for c in clients)
            assert wait_until(
                lambda: sum(len(c.pids) + len(c.errors) for c in clients) >= start + count, 5.0
            )

        for client in clients:
            client.start()
        try:
            for restart in range(1, 11):
                traffic()  # clients come between the restarts, not only during them
                server.send_signal(signal.SIGHUP)
                server.wait_for(r"restart complete: 2 workers serving", count=restart)
            traffic()
        finally:
            for client in clients:
                client.finish()
        errors = [error for client in clients for error in client.errors]
        served = sum(len(client.pids) for client in clients)
        assert served > 100, server.log()
        assert not errors, f"{len(errors)} of {served + len(errors)} requests failed: {errors[:5]}"
        # The last replaced workers finish draining (no request in flight: at once).
        assert wait_until(lambda: len(children(server)) == 2, 10.0), children(server)
        assert server.stop() == 0, server.log()


BROKEN = {
    "syntax-error": ("def app(:\n", [r'File "{app}", line 1\n', r"SyntaxError: "]),
    "import-error": (
        "import os\nraise RuntimeError('boom at import')\n",
        [r'File "{app}", line 2, in <module>', r"RuntimeError: boom at import"],
    ),
}


def hup_app(tmp_path: Path, source: str) -> Path:
    """The app module of these tests, in its own app dir."""
    module = tmp_path / "hupapp.py"
    save(module, source)
    return module


def start_args(tmp_path: Path, workers: int = 2) -> tuple[str, ...]:
    return ("hupapp:app", "--workers", str(workers), "--app-dir", str(tmp_path))


def break_and_hup(server: Server, module: Path, broken: str) -> None:
    """Save broken code, HUP; check the error is logged once and the old workers serve."""
    source, errors = BROKEN[broken]
    old = children(server)
    save(module, source)
    server.send_signal(signal.SIGHUP)
    server.wait_for(FAILED)
    assert wait_until(lambda: children(server) == old, 10.0), (old, server.log())
    log = server.log()
    assert log.count("failed to boot") == 1, log
    assert "save to reload" not in log  # no --reload: no promise of one
    for error in errors:
        pattern = error.format(app=re.escape(str(module.resolve())))
        assert len(re.findall(pattern, log)) == 1, (pattern, log)
    assert_all_serve(server, "v1", old)


@pytest.mark.parametrize("broken", list(BROKEN))
def test_hup_with_broken_code_keeps_the_old_workers_then_term_exits_0(
    tmp_path: Path, broken: str
) -> None:
    """HUP after the code broke: the same pids serve the old code; TERM then exits 0."""
    module = hup_app(tmp_path, app_source("v1"))
    with serving(*start_args(tmp_path), env=ENV, ready=2) as server:
        break_and_hup(server, module, broken)
        server.send_signal(signal.SIGTERM)
        assert server.wait_exit(20) == 0, server.log()


def test_hup_after_the_fix_serves_the_new_code(tmp_path: Path) -> None:
    """Broken code, HUP (old workers serve on), fixed code, HUP: new pids serve it."""
    module = hup_app(tmp_path, app_source("v1"))
    with serving(*start_args(tmp_path), env=ENV, ready=2) as server:
        old = children(server)
        break_and_hup(server, module, "syntax-error")
        save(module, app_source("v2"))
        server.send_signal(signal.SIGHUP)
        server.wait_for(r"SIGHUP: reloading", count=2)
        server.wait_for(r"restart complete: 2 workers serving")
        for pid in old:
            assert_gone(pid, 10.0)
        new = children(server)
        assert len(new) == 2 and not new & old, (new, old)
        assert_all_serve(server, "v2", new)
        assert {fetch(server)[1] for _ in range(200)} <= new
        assert server.stop() == 0, server.log()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("gap", ["back-to-back", "while-booting"])
def test_two_hups_in_quick_succession_end_with_n_new_workers(tmp_path: Path, gap: str) -> None:
    """Two HUPs in a row (the 2nd while successors boot): 2 new workers serve, none left."""
    module = hup_app(tmp_path, SLOW_IMPORT + app_source("v1"))
    with serving(*start_args(tmp_path), env=ENV, ready=2) as server:
        old = children(server)
        save(module, SLOW_IMPORT + app_source("v2"))
        server.send_signal(signal.SIGHUP)
        if gap == "while-booting":
            server.wait_for(r"SIGHUP: reloading")
            server.wait_for(r"started worker \d+ \(slot 1\)", count=2)
        server.send_signal(signal.SIGHUP)
        if gap == "while-booting":
            server.wait_for(r"SIGHUP: reloading", count=2)
        server.wait_for(r"restart complete: 2 workers serving")
        for pid in old:
            assert_gone(pid, 10.0)
        # Whatever the second HUP found, exactly two workers remain and serve the new code.
        assert wait_until(lambda: len(children(server)) == 2, 10.0), server.log()
        new = children(server)
        assert not new & old
        assert_all_serve(server, "v2", new)
        seen = {fetch(server)[1] for _ in range(200)}
        assert seen == new, (seen, new)
        if gap == "while-booting":
            # 2 first workers, 2 successors that the second HUP superseded, 2 that serve.
            started = re.findall(r"started worker (\d+)", server.log())
            assert len(started) == 6, server.log()
            for pid in map(int, started):
                if pid not in new:
                    assert_gone(pid, 10.0)
        assert server.stop() == 0, server.log()
