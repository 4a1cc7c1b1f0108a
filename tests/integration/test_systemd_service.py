"""gunrunner under systemd (#12): socket activation with the real systemd-socket-activate
and with sockets the test holds as systemd would; sd_notify on a datagram socket the test
owns. The real command throughout."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import http_get, running
from tests.helpers.process import Server, launch, wait_until

APP = "tests.apps.platform_app:wsgi"


def env_for_server(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNRUNNER_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def activated(listener: socket.socket, *args: str) -> Server:
    """gunrunner started as systemd starts a socket-activated service: `listener` at fd 3,
    LISTEN_PID (the shell's pid, which exec keeps), LISTEN_FDS and LISTEN_FDNAMES."""
    # A stand-in for systemd: it puts the socket at fd 3, names its own pid (which exec
    # keeps) and becomes gunrunner.
    setup = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.close(int(sys.argv[1])); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', "
        "LISTEN_FDNAMES='http'); "
        "os.execv(sys.executable, [sys.executable, '-m', 'gunrunner', *sys.argv[2:]])"
    )
    cmd = [sys.executable, "-c", setup, str(listener.fileno()), APP, *args]
    return launch(cmd, pass_fds=(listener.fileno(),), env=env_for_server())


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """The listening socket systemd would hold across restarts of the service."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=512)
    yield sock
    sock.close()


def get_json(port: int) -> dict[str, object]:
    response = http_get(f"http://127.0.0.1:{port}", headers={"Connection": "close"})
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


@pytest.mark.timeout(60)
@pytest.mark.skipif(
    not shutil.which("systemd-socket-activate"), reason="no systemd-socket-activate"
)
def test_systemd_socket_activate_starts_gunrunner_on_its_socket(listener: socket.socket) -> None:
    """The real tool binds, waits for a client, then execs gunrunner with the socket at
    fd 3: served by the workers, named in the log, gone from the app's environment."""
    port = listener.getsockname()[1]
    listener.close()  # (a free port for the tool)
    cmd = [
        "systemd-socket-activate", "--listen", f"127.0.0.1:{port}", "--fdname", "http",
        sys.executable, "-m", "gunrunner", APP, "--workers", "2",
    ]  # fmt: skip
    server = launch(cmd, env=env_for_server())
    try:
        assert wait_until(lambda: "Listening on" in server.log(), 10), server.log()
        first = get_json(port)  # this connection makes the tool exec gunrunner
        server.wait_for("all 2 workers ready")
        assert "socket activation: serving http=fd://3 passed by systemd" in server.log()
        assert "one shared socket" in server.log()
        assert first["pid"] in server.workers()
        assert first["environ"] == {}  # LISTEN_* removed before any worker started
    finally:
        server.stop()


@pytest.mark.timeout(90)
def test_a_restart_under_socket_activation_loses_no_connection(listener: socket.socket) -> None:
    """Clients keep connecting while the service is stopped (TERM) and started again on
    the same socket: the ones that arrive in between wait in its backlog. None fails."""
    port = listener.getsockname()[1]
    first = activated(listener, "--workers", "2")
    first.wait_for("all 2 workers ready")
    failures: list[str] = []
    served: list[int] = []
    done = threading.Event()

    def client() -> None:
        deadline = time.monotonic() + 30  # bounded, whatever happens
        while not done.is_set() and time.monotonic() < deadline:
            try:
                served.append(int(get_json(port)["pid"]))  # type: ignore[call-overload]
            except Exception as exc:  # (every failure is the finding)
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        assert wait_until(lambda: len(served) >= 50, 15)
        old_workers = set(first.workers())
        first.stop()  # TERM, drained, reaped, no leftovers
        count_between = len(served)
        second = activated(listener, "--workers", "2")
        try:
            second.wait_for("all 2 workers ready")
            assert wait_until(lambda: len(served) >= count_between + 50, 15)
        finally:
            done.set()
            for thread in threads:
                thread.join(timeout=30)
            new_workers = set(second.workers())
            second.stop()
    finally:
        done.set()
    assert not failures, failures[:5]
    assert set(served) & old_workers and set(served) & new_workers


def test_fd_name_on_the_command_line_picks_the_activated_socket(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    server = activated(listener, "--bind", "fd://http")
    try:
        server.wait_for(r"serving WSGI app")
        assert get_json(port)["environ"] == {}
    finally:
        server.stop()
    wrong = activated(listener, "--bind", "fd://admin")
    try:
        assert wrong.proc.wait(timeout=30) == 2
        assert "bind fd://admin: no socket named 'admin' was passed by systemd" in wrong.log()
        assert "names passed: http" in wrong.log()
    finally:
        wrong.stop()


class NotifyReceiver:
    """The service manager's end of NOTIFY_SOCKET: every datagram, in order."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.path = path
        self.messages: list[dict[str, str]] = []

    def next_with(self, key: str, value: str | None = None, timeout: float = 15) -> dict[str, str]:
        """The next message that sets `key` (to `value`), skipping the others."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key}={value} in {self.messages}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(4096).decode()
            message = dict(line.split("=", 1) for line in data.splitlines())
            self.messages.append(message)
            if key in message and value in (None, message[key]):
                return message

    def close(self) -> None:
        self.sock.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers", [2, 1])
def test_sd_notify_ready_watchdog_reload_and_stop(tmp_path: Path, workers: int) -> None:
    """READY=1 with the status once every worker serves; WATCHDOG=1 at half of
    WATCHDOG_USEC; RELOADING=1 + MONOTONIC_USEC on HUP, READY=1 once the new workers
    serve; STOPPING=1 on TERM. Workers and the app never see the variables."""
    receiver = NotifyReceiver(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(receiver.path), "WATCHDOG_USEC": "1000000"}
    try:
        with running(APP, "--workers", str(workers), env=env, ready=workers) as server:
            ready = receiver.next_with("READY", "1")
            assert ready["STATUS"] == f"{workers} of {workers} workers ready"
            pings = [receiver.next_with("WATCHDOG", "1") for _ in range(2)]
            assert len(pings) == 2
            assert get_json(server.port)["environ"] == {}
            server.send_signal(signal.SIGHUP)
            reloading = receiver.next_with("RELOADING", "1")
            now_us = time.monotonic_ns() // 1000
            assert 0 <= now_us - int(reloading["MONOTONIC_USEC"]) < 10_000_000
            assert receiver.next_with("READY", "1")["STATUS"].endswith("workers ready")
            server.wait_for("restart complete")
            server.send_signal(signal.SIGTERM)
            receiver.next_with("STOPPING", "1")
            assert server.proc.wait(timeout=30) == 0
    finally:
        receiver.close()


@pytest.mark.timeout(60)
def test_a_refused_reload_still_ends_with_ready(tmp_path: Path) -> None:
    """Type=notify-reload waits for READY=1 after RELOADING=1: a HUP refused for a bad
    config (the workers serve on) must send it too."""
    receiver = NotifyReceiver(tmp_path / "notify.sock")
    conf = tmp_path / "gunrunner.toml"
    conf.write_text(f'app = "{APP}"\nworkers = 2\n')
    try:
        env = {"NOTIFY_SOCKET": str(receiver.path)}
        with running("--config", str(conf), env=env, ready=2) as server:
            receiver.next_with("READY", "1")
            conf.write_text(f'app = "{APP}"\nworkers = "many"\n')
            server.send_signal(signal.SIGHUP)
            receiver.next_with("RELOADING", "1")
            assert receiver.next_with("READY", "1")["STATUS"] == "2 of 2 workers ready"
            assert "SIGHUP refused" in server.log()
    finally:
        receiver.close()


def test_an_activated_socket_left_out_of_bind_is_named(listener: socket.socket) -> None:
    """--bind on the command line wins over the passed sockets: those left out are not
    served, and the log says so."""
    server = activated(listener, "--bind", "127.0.0.1:0")
    try:
        server.wait_for(r"serving WSGI app")
        log = server.log()
        assert "WARNING gunrunner.cli: socket activation: http=fd://3 passed by systemd" in log
        assert "not in bind; not served" in log
    finally:
        server.stop()
