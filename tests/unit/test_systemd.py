"""gunrunner.systemd against real sockets and a real child process, no mocks of the OS.

The notify tests bind their own AF_UNIX datagram socket and read what arrives. The fd
checks run in a child Python whose fds 3.. are arranged as systemd would arrange them:
this process's own fds 3.. belong to pytest and must not be touched.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gunrunner.errors import ConfigError
from gunrunner.systemd import ActivatedSocket, Notifier, listen_fds, parse_listen_environ

ROOT = Path(__file__).resolve().parents[2]
PID = 4242  # the pid the pure parsing tests pretend to be

# ---------------------------------------------------------------- sd_notify


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket and the NOTIFY_SOCKET value that names it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5.0)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
    else:
        address = f"@gunrunner-test-{uuid.uuid4().hex}"
        sock.bind("\0" + address[1:])
    with sock:
        yield sock, address


def test_messages_arrive_as_one_datagram_each(receiver: tuple[socket.socket, str]) -> None:
    sock, address = receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address})
    assert notifier is not None
    try:
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"
        assert notifier.ready("serving on 8000, 4 workers")
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving on 8000, 4 workers"
        assert notifier.status("draining\n3 workers")  # kept on one line
        assert sock.recv(4096) == b"STATUS=draining 3 workers"
        assert notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert notifier.send("ERRNO=5", "BUSERROR=x")
        assert sock.recv(4096) == b"ERRNO=5\nBUSERROR=x"
    finally:
        notifier.close()


def test_reloading_carries_the_monotonic_clock(receiver: tuple[socket.socket, str]) -> None:
    sock, address = receiver
    notifier = Notifier(address)
    before = time.monotonic_ns() // 1000
    assert notifier.reloading()
    after = time.monotonic_ns() // 1000
    notifier.close()
    first, second = sock.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_from_environ_removes_the_variables(tmp_path: Path) -> None:
    environ = {
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/usr/bin",
    }
    notifier = Notifier.from_environ(environ)
    assert notifier is not None
    notifier.close()
    assert environ == {"PATH": "/usr/bin"}


def test_from_environ_can_leave_the_variables() -> None:
    environ = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "1000000"}
    notifier = Notifier.from_environ(environ, unset=False)
    assert notifier is not None
    notifier.close()
    assert environ == {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "1000000"}


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}])
def test_no_notify_socket_gives_no_notifier(environ: dict[str, str]) -> None:
    environ["WATCHDOG_USEC"] = "1000000"
    assert Notifier.from_environ(environ) is None
    assert environ == {}  # the watchdog variables go too: nobody could answer them


@pytest.mark.parametrize("value", ["run/notify", "vsock:2:1234", " /run/notify"])
def test_unusable_notify_socket_is_a_config_error(value: str) -> None:
    environ = {"NOTIFY_SOCKET": value}
    with pytest.raises(ConfigError) as info:
        Notifier.from_environ(environ)
    assert "NOTIFY_SOCKET" in str(info.value)
    assert repr(value) in str(info.value)
    assert environ == {}


def test_notify_socket_is_close_on_exec() -> None:
    notifier = Notifier("/run/systemd/notify")
    try:
        assert not os.get_inheritable(notifier._sock.fileno())
    finally:
        notifier.close()


@pytest.mark.parametrize("state", ["missing", "dead"])
def test_unreachable_socket_warns_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, state: str
) -> None:
    path = tmp_path / "notify"
    if state == "dead":  # the name exists, nobody reads it: ECONNREFUSED
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dead.bind(str(path))
        dead.close()
    notifier = Notifier(str(path))
    caplog.set_level(logging.DEBUG, logger="gunrunner.systemd")
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    assert "READY=1" in warnings[0].getMessage()
    expected = "Connection refused" if state == "dead" else "No such file or directory"
    assert expected in warnings[0].getMessage()
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG]

    # A message that gets through re-arms the warning for the next outage.
    path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as live:
        live.bind(str(path))
        assert notifier.watchdog() is True
        assert live.recv(4096) == b"WATCHDOG=1"
    assert notifier.watchdog() is False
    assert [r.levelno for r in caplog.records].count(logging.WARNING) == 2

    notifier.close()
    assert notifier.stopping() is False  # closed: still no exception


@pytest.mark.parametrize(
    ("usec", "pid", "interval"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("1000", None, 0.0005),
        ("30000000", "other", None),  # meant for another process
        ("0", None, None),
        ("-30000000", None, None),
        ("30s", None, None),
        ("18446744073709551615", None, None),  # systemd's "infinity"
        (None, None, None),
        (None, "self", None),
    ],
)
def test_watchdog_interval(usec: str | None, pid: str | None, interval: float | None) -> None:
    environ = {"NOTIFY_SOCKET": "/run/systemd/notify"}
    if usec is not None:
        environ["WATCHDOG_USEC"] = usec
    if pid is not None:
        environ["WATCHDOG_PID"] = str(os.getpid() + (0 if pid == "self" else 1))
    notifier = Notifier.from_environ(environ)
    assert notifier is not None
    notifier.close()
    assert notifier.watchdog_interval == interval


@pytest.mark.parametrize("usec", ["0", "30s", "-1"])
def test_malformed_watchdog_usec_is_logged(caplog: pytest.LogCaptureFixture, usec: str) -> None:
    environ = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": usec}
    notifier = Notifier.from_environ(environ)
    assert notifier is not None
    notifier.close()
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert f"WATCHDOG_USEC={usec!r}" in record.getMessage()


# ---------------------------------------------------------------- LISTEN_FDS parsing


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"LISTEN_FDS": "2"}, []),  # no LISTEN_PID: not socket-activated
        ({"LISTEN_PID": str(PID + 1), "LISTEN_FDS": "2"}, []),  # for another process
        ({"LISTEN_PID": str(PID)}, []),
        ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1"}, [ActivatedSocket(3, "unknown")]),
        (
            {"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:admin"},
            [ActivatedSocket(3, "http"), ActivatedSocket(4, "admin")],
        ),
        (
            {"LISTEN_PID": str(PID), "LISTEN_FDS": "3", "LISTEN_FDNAMES": "http"},
            [
                ActivatedSocket(3, "http"),
                ActivatedSocket(4, "unknown"),
                ActivatedSocket(5, "unknown"),
            ],
        ),
        (
            {"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": ":admin"},
            [ActivatedSocket(3, "unknown"), ActivatedSocket(4, "admin")],
        ),
        (
            {"LISTEN_PID": str(PID), "LISTEN_FDS": "1", "LISTEN_FDNAMES": ""},
            [ActivatedSocket(3, "unknown")],
        ),
    ],
)
def test_parse_listen_environ(environ: dict[str, str], expected: list[ActivatedSocket]) -> None:
    assert parse_listen_environ(environ, pid=PID) == expected


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("LISTEN_PID", "abc", "a process id"),
        ("LISTEN_PID", "0", "a process id"),
        ("LISTEN_PID", "-1", "a process id"),
        ("LISTEN_PID", f" {PID}", "a process id"),
        ("LISTEN_FDS", "two", "a positive number of file descriptors"),
        ("LISTEN_FDS", "-1", "a positive number of file descriptors"),
        ("LISTEN_FDS", "0", "a positive number of file descriptors"),
        ("LISTEN_FDS", "2.0", "a positive number of file descriptors"),
        ("LISTEN_FDS", "1_0", "a positive number of file descriptors"),
        ("LISTEN_FDS", "99999999999", "ulimit -n"),
        ("LISTEN_FDNAMES", "http:admin:extra", "at most LISTEN_FDS=2 names"),
    ],
)
def test_malformed_variables_are_config_errors(var: str, value: str, expected: str) -> None:
    environ = {"LISTEN_PID": str(PID), "LISTEN_FDS": "2", var: value}
    with pytest.raises(ConfigError) as info:
        listen_fds(environ, pid=PID)
    message = str(info.value)
    assert f"{var}: expected" in message
    assert expected in message
    assert repr(value) in message
    assert environ == {}  # removed on the error path too


@pytest.mark.parametrize("pid", [None, PID + 1])
def test_listen_variables_removed_even_when_not_ours(pid: int | None) -> None:
    environ = {
        "LISTEN_PID": str(PID),
        "LISTEN_PIDFDID": "123",
        "LISTEN_FDS": "1",
        "LISTEN_FDNAMES": "http",
        "HOME": "/srv",
    }
    assert listen_fds(environ, pid=pid) == []  # PID is not this process
    assert environ == {"HOME": "/srv"}


def test_listen_variables_kept_when_asked() -> None:
    environ = {"LISTEN_PID": str(PID), "LISTEN_FDS": "1"}
    assert listen_fds(environ, pid=PID + 1, unset=False) == []
    assert environ == {"LISTEN_PID": str(PID), "LISTEN_FDS": "1"}


def test_activated_socket_bind() -> None:
    assert ActivatedSocket(3, "http").bind == "fd://3"


# ---------------------------------------------------------------- real fds, in a child

# Sets up fds 3..6 as systemd would (a listening TCP socket, a UDP socket, a TCP socket
# that is not listening, the read end of a pipe), then reports what the module makes of
# them as one JSON line.
CHILD = textwrap.dedent(
    """
    import fcntl, gc, json, os, socket, subprocess, sys
    from gunrunner.errors import ConfigError
    from gunrunner.systemd import check_listening, listen_fds

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    idle = socket.socket()
    reader, writer = os.pipe()
    os.close(writer)
    # Park every fd high first, so that placing one at 3..6 cannot clobber another.
    sources = [listening.fileno(), udp.fileno(), idle.fileno(), reader]
    parked = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in sources]
    for sock in (listening, udp, idle):
        sock.close()
    os.close(reader)
    for target, fd in enumerate(parked, start=3):
        os.dup2(fd, target)  # inheritable, as systemd passes them
        os.close(fd)

    os.environ.update(
        LISTEN_PID=str(os.getpid()), LISTEN_FDS="4", LISTEN_FDNAMES="http:metrics:idle:fifo"
    )
    activated = listen_fds()
    checks = {}
    for item in activated:
        try:
            check_listening([item])
            checks[item.name] = "ok"
        except ConfigError as exc:
            checks[item.name] = str(exc)
    try:
        check_listening(activated)
        first_failure = None
    except ConfigError as exc:
        first_failure = str(exc)
    gc.collect()
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    adopted = socket.socket(fileno=3)
    conn, _ = adopted.accept()  # the checks left fd 3 open and listening
    conn.close()
    adopted.detach()
    child_env = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(k for k in os.environ if 'LISTEN' in k))"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout.strip()

    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="6")  # fds 7 and 8 are not open
    try:
        listen_fds()
        too_many = None
    except ConfigError as exc:
        too_many = str(exc)

    print(json.dumps({
        "activated": [[item.fd, item.name] for item in activated],
        "inheritable": [os.get_inheritable(fd) for fd in range(3, 7)],
        "still_open": [os.fstat(fd) is not None for fd in range(3, 7)],
        "checks": checks,
        "first_failure": first_failure,
        "child_env": child_env,
        "too_many": too_many,
        "left": sorted(k for k in os.environ if k.startswith("LISTEN_")),
    }))
    """
)


@pytest.fixture(scope="module")
def child_report() -> dict[str, object]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LISTEN_", "NOTIFY_", "WATCHDOG_"))
    }
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


@pytest.mark.timeout(60)
def test_activated_fds_are_named_and_close_on_exec(child_report: dict[str, object]) -> None:
    assert child_report["activated"] == [[3, "http"], [4, "metrics"], [5, "idle"], [6, "fifo"]]
    assert child_report["inheritable"] == [False, False, False, False]
    assert child_report["left"] == []
    assert child_report["child_env"] == "[]"  # unset for real, not only in os.environ


@pytest.mark.timeout(60)
def test_check_listening_accepts_only_listening_stream_sockets(
    child_report: dict[str, object],
) -> None:
    checks = child_report["checks"]
    assert isinstance(checks, dict)
    assert checks["http"] == "ok"
    assert "fd 4 (LISTEN_FDNAMES name 'metrics')" in checks["metrics"]
    assert "datagram socket" in checks["metrics"]
    assert "ListenDatagram=" in checks["metrics"]
    assert "fd 5 (LISTEN_FDNAMES name 'idle')" in checks["idle"]
    assert "not listening" in checks["idle"]
    assert "fd 6 (LISTEN_FDNAMES name 'fifo')" in checks["fifo"]
    assert "not a socket" in checks["fifo"]
    # The whole list stops at the first bad fd, and no check closed an fd.
    assert child_report["first_failure"] == checks["metrics"]
    assert child_report["still_open"] == [True, True, True, True]


@pytest.mark.timeout(60)
def test_an_fd_that_is_not_open_is_a_config_error(child_report: dict[str, object]) -> None:
    message = child_report["too_many"]
    assert isinstance(message, str)
    assert "LISTEN_FDS=6 but fd 7 (name 'unknown') is not open" in message
    assert "Bad file descriptor" in message
