"""Unix-socket binds: the socket's mode, the umask, and the log line's listener mode."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Server, start, wait_until
from tests.helpers.wire import read_until_closed

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

APP = "tests.apps.basic:wsgi_pid"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket path has at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gr-unix-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The test process's umask, which the server inherits, is 022 for the test."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def start_unix(path: Path, *args: str, ready: str = r"serving WSGI app") -> Server:
    """Start the server on unix:PATH only; wait until it serves (stop signals handled)."""
    server = start(APP, *args, bind=f"unix:{path}", wait=False)
    try:
        server.wait_for(r"listening on unix:\S+")
        server.wait_for(ready)
    except BaseException:
        server.stop()
        raise
    return server


def get_over_unix(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_until_closed(sock)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.usefixtures("umask_022")
def test_unix_socket_is_0660_by_default_and_served(short_dir: Path) -> None:
    """With umask 022 bind() alone gives 0755 (a proxy of another user cannot connect);
    the socket gets 0660, serves, and is removed at exit."""
    path = short_dir / "app.sock"
    server = start_unix(path)
    try:
        assert mode_of(path) == 0o660
        assert get_over_unix(path).startswith(b"HTTP/1.1 200 ")
    finally:
        assert server.stop() == 0
    assert not path.exists()


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize(("flag", "mode"), [("600", 0o600), ("0666", 0o666)])
def test_unix_socket_mode_option(short_dir: Path, flag: str, mode: int) -> None:
    """--unix-socket-mode sets the mode, tighter or looser than the umask would."""
    path = short_dir / "app.sock"
    server = start_unix(path, "--unix-socket-mode", flag)
    try:
        assert mode_of(path) == mode
        assert get_over_unix(path).startswith(b"HTTP/1.1 200 ")
    finally:
        assert server.stop() == 0


@pytest.mark.usefixtures("umask_022")
def test_unix_socket_mode_from_config_file(short_dir: Path) -> None:
    """The TOML key takes an octal string (and wins over the umask)."""
    path = short_dir / "app.sock"
    conf = short_dir / "g.toml"
    conf.write_text('unix_socket_mode = "0640"\numask = "077"\n')
    server = start_unix(path, "--config", str(conf))
    try:
        assert mode_of(path) == 0o640
    finally:
        assert server.stop() == 0


@pytest.mark.usefixtures("umask_022")
def test_umask_applies_to_files_the_server_creates(short_dir: Path) -> None:
    """--umask 077: the pid file and the log file are created 0600 (0644 under the
    inherited umask 022, as the second run shows)."""
    for umask, expected in ((["--umask", "077"], 0o600), ([], 0o644)):
        pidfile, log_file = short_dir / "g.pid", short_dir / "g.log"
        args = ("--pidfile", str(pidfile), "--log-file", str(log_file), *umask)
        server = start(APP, *args, bind=f"unix:{short_dir / 'app.sock'}", wait=False)
        try:
            assert wait_until(log_file.exists), server.log()
            server.log_path = log_file  # from now on the log is in --log-file
            server.wait_for(r"serving WSGI app")
            assert (mode_of(pidfile), mode_of(log_file)) == (expected, expected), umask
        finally:
            assert server.stop() == 0
        log_file.unlink()


def test_bad_unix_socket_mode_is_a_config_error(short_dir: Path) -> None:
    """A mode that is not octal is refused before anything is bound: exit 2, one line."""
    path = short_dir / "app.sock"
    server = start(APP, "--unix-socket-mode", "rw-rw----", bind=f"unix:{path}", wait=False)
    assert server.wait_exit() == 2
    server.stop()
    assert server.log().strip() == (
        "gunrunner: config error: command line: --unix-socket-mode: expected an octal mode from "
        '"000" to "777" as a string, like "660", got \'rw-rw----\''
    )
    assert not path.exists()


def test_unix_bind_is_logged_as_a_shared_socket(short_dir: Path) -> None:
    """Every worker serves the one Unix socket: the log does not call it per-slot."""
    path = short_dir / "app.sock"
    server = start_unix(path, "--workers", "2", ready=r"all 2 workers ready")
    try:
        line = server.wait_for(r"listening on unix:.*").group(0)
        assert "2 workers" in line and "shared" in line and "per-slot" not in line, line
    finally:
        assert server.stop() == 0
