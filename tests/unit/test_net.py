"""Bind parsing, resolution and listener errors."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from gunrunner import net
from gunrunner.errors import BindError


@pytest.mark.parametrize(
    ("text", "kind", "host", "port"),
    [
        ("127.0.0.1:8080", "tcp", "127.0.0.1", 8080),
        ("localhost", "tcp", "localhost", 8000),
        (":9000", "tcp", "0.0.0.0", 9000),
        ("[::1]:8001", "tcp", "::1", 8001),
        ("[::]", "tcp", "::", 8000),
        ("127.0.0.1:0", "tcp", "127.0.0.1", 0),
    ],
)
def test_parse_tcp(text: str, kind: str, host: str, port: int) -> None:
    """HOST:PORT forms parse to host and port (8000 when missing)."""
    spec = net.parse_bind(text)
    assert (spec.kind, spec.host, spec.port) == (kind, host, port)


def test_parse_unix_and_fd() -> None:
    """unix:PATH and fd://N are recognised."""
    assert net.parse_bind("unix:/run/x.sock").path == "/run/x.sock"
    assert net.parse_bind("fd://3").fd == 3


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("::1:80", "IPv6 addresses need brackets"),
        ("[::1:80", "malformed IPv6"),
        ("host:http", "is not a number from 0 to 65535"),
        ("host:70000", "is not a number from 0 to 65535"),
        ("unix:", "empty Unix socket path"),
        ("fd://x", "fd:// needs a file descriptor number"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    """Malformed binds name the value and what is wrong."""
    with pytest.raises(BindError) as info:
        net.parse_bind(text)
    assert str(info.value).startswith(f"cannot bind {text}: ")
    assert fragment in str(info.value)


def test_resolve_unknown_host() -> None:
    """A name that does not resolve is one clear error."""
    with pytest.raises(BindError, match=r"cannot resolve host 'no-such-host\.invalid'"):
        net.resolve(net.parse_bind("no-such-host.invalid:80"))


def test_port_in_use_is_detected() -> None:
    """check_free refuses an address where something listens, even with SO_REUSEPORT."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(BindError, match="address already in use"):
            net.Listeners((f"127.0.0.1:{port}",), backlog=8, reuse_port=True, shared_bind=False)
        # shared_bind joins the other listener's SO_REUSEPORT group instead.
        listeners = net.Listeners(
            (f"127.0.0.1:{port}",), backlog=8, reuse_port=True, shared_bind=True
        )
        listeners.close_all()


def test_port_zero_is_shared_by_every_slot() -> None:
    """Port 0 is resolved once; every slot's socket listens on that same port."""
    listeners = net.Listeners(("127.0.0.1:0",), backlog=8, reuse_port=True, shared_bind=False)
    try:
        assert listeners.mode == "per-slot"
        ports = {s.getsockname()[1] for k in range(3) for s in listeners.for_slot(k)}
        assert len(ports) == 1 and ports != {0}
        inodes = {s.fileno() for k in range(3) for s in listeners.for_slot(k)}
        assert len(inodes) == 3
    finally:
        listeners.close_all()


def test_shared_mode_without_reuse_port(tmp_path: Path) -> None:
    """reuse_port off, or a Unix socket: one socket served by every slot."""
    path = tmp_path / "s.sock"
    listeners = net.Listeners(
        ("127.0.0.1:0", f"unix:{path}"), backlog=8, reuse_port=False, shared_bind=False
    )
    try:
        assert listeners.mode == "shared"
        assert listeners.for_slot(0) == listeners.for_slot(1)
        assert path.exists()
    finally:
        listeners.close_all()
    assert not path.exists()


def test_localhost_binds_every_address() -> None:
    """A name that resolves to IPv4 and IPv6 binds both, on one port."""
    addresses = net.resolve(net.parse_bind("localhost:0"))
    listeners = net.Listeners(("localhost:0",), backlog=8, reuse_port=True, shared_bind=False)
    try:
        socks = listeners.for_slot(0)
        assert len(socks) == len(addresses)
        assert len({s.getsockname()[1] for s in socks}) == 1
    finally:
        listeners.close_all()


def test_modes_are_described_per_address(tmp_path: Path) -> None:
    """A Unix socket is shared even where TCP addresses get per-slot listeners."""
    path = tmp_path / "m.sock"
    cases = [
        (("127.0.0.1:0",), True, "per-slot SO_REUSEPORT listeners", "per-slot"),
        ((f"unix:{path}",), True, "one shared socket", "shared"),
        (("127.0.0.1:0",), False, "one shared socket", "shared"),
        (("127.0.0.1:0", f"unix:{path}"), False, "one shared socket per address", "shared"),
    ]
    for binds, reuse_port, description, mode in cases:
        listeners = net.Listeners(binds, backlog=8, reuse_port=reuse_port, shared_bind=False)
        try:
            assert (listeners.describe_modes(), listeners.mode) == (description, mode), binds
        finally:
            listeners.close_all()


def test_mixed_modes_name_each_address(tmp_path: Path) -> None:
    """TCP per slot beside a Unix socket: the line says which address is which."""
    path = tmp_path / "m.sock"
    listeners = net.Listeners(
        ("127.0.0.1:0", f"unix:{path}"), backlog=8, reuse_port=True, shared_bind=False
    )
    try:
        port = listeners.for_slot(0)[0].getsockname()[1]
        assert listeners.mode == "mixed"
        assert listeners.describe_modes() == (
            f"per-slot for 127.0.0.1:{port}; shared for unix:{path}"
        )
    finally:
        listeners.close_all()


@pytest.mark.parametrize("mode", [0o660, 0o600, 0o666])
def test_unix_socket_gets_its_mode_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    """The socket file has `unix_socket_mode`, not what bind() and the umask gave it."""
    path = tmp_path / "mode.sock"
    old = os.umask(0o022)  # bind() alone would give 0755 here
    try:
        listeners = net.Listeners(
            (f"unix:{path}",),
            backlog=8,
            reuse_port=False,
            shared_bind=False,
            unix_socket_mode=mode,
        )
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == mode
    finally:
        listeners.close_all()
