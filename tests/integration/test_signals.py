"""Signals sent to a running server, end to end: TERM, INT, QUIT, TTIN, TTOU, HUP, USR1.

Real processes and sockets on 127.0.0.1; each test stops only the server it started.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from tests.helpers import (
    Server,
    assert_gone,
    listen_inodes,
    process_state,
    running,
    start_with_log_file,
    wait_ready,
    wait_until,
    wait_workers,
)
from tests.helpers.wire import answering_pids, get_pid, read_response, send_request

APPS = ["tests.apps.basic:wsgi_pid", "tests.apps.basic:asgi_pid"]


def refused(server: Server) -> bool:
    """True when a new connection to the server's port is refused."""
    try:
        with socket.create_connection((server.host, server.port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


# -- graceful stop ----------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["2", "1"])
@pytest.mark.parametrize("app", APPS)
def test_term_finishes_the_request_in_flight_then_exits_0(app: str, workers: str) -> None:
    """SIGTERM during a 2 s request: it completes with 200, exit 0, then connections fail."""
    with running(app, "--workers", workers, ready=int(workers)) as server:
        serving = set(server.workers()) or {server.pid}
        sock = send_request(server, "/sleep-noted?2")
        with sock:
            server.wait_for("app entered /sleep-noted")  # the request is in the app
            sent_term = time.monotonic()
            server.send_signal(signal.SIGTERM)
            status, body = read_response(sock)
        assert status == 200
        assert int(body) in serving
        assert time.monotonic() - sent_term > 1.0  # it really waited for the request
        assert server.wait_exit(10) == 0, server.log()
        assert refused(server)


@pytest.mark.parametrize("app", APPS)
def test_term_refuses_new_clients_while_draining(app: str) -> None:
    """After SIGTERM, while a request is still running, new connections are refused."""
    with running(app, "--workers", "2", ready=2) as server:
        sock = send_request(server, "/sleep-noted?3")
        with sock:
            server.wait_for("app entered /sleep-noted")
            server.send_signal(signal.SIGTERM)
            assert wait_until(lambda: refused(server), 2.0), server.log()
            assert server.proc.poll() is None  # still draining the slow request
            status, _ = read_response(sock)
        assert status == 200
        assert server.wait_exit(10) == 0


# -- fast stop --------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["INT", "QUIT"])
@pytest.mark.parametrize("workers", ["2", "1"])
@pytest.mark.parametrize("app", APPS)
def test_int_and_quit_stop_fast_with_exit_0(app: str, workers: str, sig: int) -> None:
    """SIGINT/SIGQUIT: exit 0 at once, a 10 s request in flight is cut, nothing left."""
    with running(app, "--workers", workers, ready=int(workers)) as server:
        sock = send_request(server, "/sleep-noted?10")
        with sock:
            server.wait_for("app entered /sleep-noted")
            sent = time.monotonic()
            server.send_signal(sig)
            assert server.wait_exit(10) == 0, server.log()
            assert time.monotonic() - sent < 3.0, server.log()
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            assert data == b""  # closed without an answer


@pytest.mark.parametrize("workers", ["2", "1"])
def test_int_during_graceful_stop_exits_now_and_removes_the_pidfile(
    workers: str, tmp_path: Path
) -> None:
    """TERM then INT: the drain is cut short, exit 0, and the pidfile is still removed."""
    pidfile = tmp_path / "gunrunner.pid"
    with running(
        "tests.apps.basic:asgi_pid",
        "--workers",
        workers,
        "--pidfile",
        str(pidfile),
        ready=int(workers),
    ) as server:
        sock = send_request(server, "/sleep-noted?10")
        with sock:
            server.wait_for("app entered /sleep-noted")
            server.send_signal(signal.SIGTERM)
            server.wait_for(r"stopping \(graceful\)")
            sent = time.monotonic()
            server.send_signal(signal.SIGINT)
            assert server.wait_exit(10) == 0, server.log()
            assert time.monotonic() - sent < 3.0, server.log()
        assert not pidfile.exists(), f"pidfile left behind\n{server.log()}"


# -- scaling ----------------------------------------------------------------------------


def test_ttin_adds_a_worker_and_ttou_removes_one() -> None:
    """TTIN: 2 -> 3 workers, a 3rd listener; TTOU: the newest slot retires, 3 -> 2."""
    with running("tests.apps.basic:wsgi_pid", "--workers", "2", ready=2) as server:
        before = set(server.workers())
        server.send_signal(signal.SIGTTIN)
        server.wait_for(r"SIGTTIN: workers 2 -> 3")
        third = int(server.wait_for(r"started worker (\d+) \(slot 2\)").group(1))
        wait_ready(server, third)
        assert set(wait_workers(server, 3)) == before | {third}
        assert len(listen_inodes(server.port)) == 3
        assert answering_pids(server, 3) == before | {third}

        server.send_signal(signal.SIGTTOU)
        server.wait_for(r"SIGTTOU: workers 3 -> 2 \(retiring slot 2\)")
        server.wait_for(rf"worker {third} \(slot 2\) stopped")
        assert_gone(third)
        assert set(wait_workers(server, 2)) == before
        assert len(listen_inodes(server.port)) == 2  # the retired slot stops listening
        assert answering_pids(server, 2) == before


def test_ttou_never_goes_below_one_worker() -> None:
    """TTOU down to one worker; one more TTOU is ignored and that worker keeps serving."""
    with running("tests.apps.basic:wsgi_pid", "--workers", "2", ready=2) as server:
        server.send_signal(signal.SIGTTOU)
        server.wait_for(r"SIGTTOU: workers 2 -> 1 \(retiring slot 1\)")
        (last,) = wait_workers(server, 1)
        server.send_signal(signal.SIGTTOU)
        server.wait_for(r"SIGTTOU ignored: keeping at least one worker")
        assert server.workers() == [last]
        assert answering_pids(server, 2, attempts=20) == {last}
        assert len(listen_inodes(server.port)) == 1


def test_ttin_after_ttou_reuses_the_retired_slot() -> None:
    """TTOU then TTIN: back to 2 workers, each slot served, 2 listeners."""
    with running("tests.apps.basic:wsgi_pid", "--workers", "2", ready=2) as server:
        server.send_signal(signal.SIGTTOU)
        server.wait_for(r"worker \d+ \(slot 1\) stopped")
        server.send_signal(signal.SIGTTIN)
        server.wait_for(r"SIGTTIN: workers 1 -> 2")
        new = int(server.wait_for(r"started worker (\d+) \(slot 1\)", count=2).group(1))
        wait_ready(server, new)
        workers = wait_workers(server, 2)
        assert new in workers
        assert answering_pids(server, 2) == set(workers)
        assert len(listen_inodes(server.port)) == 2


# -- reload -----------------------------------------------------------------------------


def _wait_replaced(server: Server, old: set[int], count: int) -> set[int]:
    """Wait until every old worker is gone and `count` new ones are ready."""
    for pid in old:
        assert_gone(pid, timeout=15)
    new = set(wait_workers(server, count))
    assert not new & old
    for pid in new:
        wait_ready(server, pid)
    return new


def test_hup_rereads_the_config_and_replaces_every_worker(tmp_path: Path) -> None:
    """HUP with workers 2 -> 3 in the file: all old pids gone, 3 new ones serve."""
    config = tmp_path / "gunrunner.toml"
    config.write_text("workers = 2\n")
    with running("tests.apps.basic:wsgi_pid", "--config", str(config), ready=2) as server:
        old = set(server.workers())
        config.write_text("workers = 3\n")
        server.send_signal(signal.SIGHUP)
        server.wait_for(r"SIGHUP: reloading the configuration")
        new = _wait_replaced(server, old, 3)
        assert answering_pids(server, 3) == new
        assert len(listen_inodes(server.port)) == 3

        config.write_text("workers = 2\n")
        server.send_signal(signal.SIGHUP)
        server.wait_for(r"SIGHUP: reloading the configuration", count=2)
        newer = _wait_replaced(server, new, 2)
        assert answering_pids(server, 2) == newer
        assert len(listen_inodes(server.port)) == 2


@pytest.mark.parametrize(
    "broken", ["workers = [\n", 'workers = "many"\n', "wrokers = 3\n"], ids=["toml", "value", "key"]
)
def test_hup_with_a_broken_config_keeps_serving(tmp_path: Path, broken: str) -> None:
    """HUP with a broken config file: an error logged, the same workers keep serving."""
    config = tmp_path / "gunrunner.toml"
    config.write_text("workers = 2\n")
    with running("tests.apps.basic:wsgi_pid", "--config", str(config), ready=2) as server:
        old = set(server.workers())
        config.write_text(broken)
        server.send_signal(signal.SIGHUP)
        server.wait_for(r"ERROR .*config error: .*; keeping the running configuration")
        assert set(server.workers()) == old
        assert answering_pids(server, 2) == old

        config.write_text("workers = 3\n")  # fixed: the next HUP applies it
        server.send_signal(signal.SIGHUP)
        server.wait_for(r"SIGHUP: reloading the configuration", count=2)
        new = _wait_replaced(server, old, 3)
        assert answering_pids(server, 3) == new


def test_hup_in_single_process_mode_is_ignored_and_serving_goes_on() -> None:
    """--workers 1: HUP logs that it is ignored; the same process keeps answering."""
    with running("tests.apps.basic:wsgi_pid", "--workers", "1", ready=1) as server:
        server.send_signal(signal.SIGHUP)
        server.wait_for(r"SIGHUP ignored")
        assert get_pid(server) == server.pid


# -- log reopening ----------------------------------------------------------------------


def test_usr1_reopens_the_log_file_in_arbiter_and_workers(tmp_path: Path) -> None:
    """USR1 after the log file was renamed: new lines go to a fresh file of that name."""
    log_file = tmp_path / "gunrunner.log"
    server = start_with_log_file(log_file, "tests.apps.basic:wsgi_pid", "--workers", "2", ready=2)
    try:
        workers = server.workers()
        rotated = tmp_path / "gunrunner.log.1"
        log_file.rename(rotated)
        server.send_signal(signal.SIGUSR1)
        assert wait_until(log_file.exists, 5.0)
        server.wait_for(r"\[arbiter \d+\] INFO .*SIGUSR1: log files reopened")
        for pid in workers:
            server.wait_for(rf"\[worker slot=\d+ {pid}\] INFO .*log files reopened")
        server.send_signal(signal.SIGTTIN)  # something for the arbiter and a worker to log
        server.wait_for(r"SIGTTIN: workers 2 -> 3")
        server.wait_for(r"\[worker slot=2 \d+\] INFO .*serving WSGI app")
        old = rotated.read_text()
        assert "listening on" in old
        assert "reopened" not in old
        assert "SIGTTIN" not in old
    finally:
        code = server.stop()
    assert code == 0


def test_usr1_without_log_file_keeps_logging_to_stderr() -> None:
    """USR1 with the default log (stderr): acknowledged, nothing breaks, still serving."""
    with running("tests.apps.basic:wsgi_pid", "--workers", "2", ready=2) as server:
        server.send_signal(signal.SIGUSR1)
        server.wait_for(r"SIGUSR1: log files reopened")
        server.wait_for(r"log files reopened", count=3)
        assert len(answering_pids(server, 2)) == 2
        assert process_state(server.pid) is not None
