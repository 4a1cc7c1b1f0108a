"""Bind addresses: parse them, resolve them, check them, open listening sockets.

Knows sockets, nothing of HTTP or processes. Formats:
  HOST:PORT      127.0.0.1:8000, localhost:8000, :8000 (every IPv4 interface)
  [IPV6]:PORT    [::1]:8000, [::]:8000
  unix:PATH      a Unix domain socket; a stale socket file is replaced
  fd://N         an inherited listening socket (systemd, a supervisor)
A missing port means 8000. Port 0 is resolved once, by the first socket bound, to a
free port that every later socket of that bind shares.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import struct
import sys
from dataclasses import dataclass
from typing import Any, Literal

from gunrunner.errors import BindError

DEFAULT_PORT = 8000


@dataclass(frozen=True, slots=True)
class BindSpec:
    """One --bind value, parsed but not resolved."""

    text: str
    kind: Literal["tcp", "unix", "fd"]
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1


@dataclass(frozen=True, slots=True)
class Address:
    """One concrete address to listen on."""

    family: int
    sockaddr: tuple[Any, ...] | str
    spec: BindSpec

    @property
    def port(self) -> int:
        return int(self.sockaddr[1]) if isinstance(self.sockaddr, tuple) else 0

    def __str__(self) -> str:
        if self.spec.kind == "fd":
            return f"fd://{self.spec.fd}"
        if self.family == socket.AF_UNIX:
            return f"unix:{self.sockaddr}"
        host, port = self.sockaddr[0], self.port
        return f"[{host}]:{port}" if self.family == socket.AF_INET6 else f"{host}:{port}"

    @property
    def is_tcp(self) -> bool:
        return self.family in (socket.AF_INET, socket.AF_INET6)

    def with_port(self, port: int) -> Address:
        assert isinstance(self.sockaddr, tuple)
        return Address(self.family, (self.sockaddr[0], port, *self.sockaddr[2:]), self.spec)


def parse_bind(text: str) -> BindSpec:
    """Parse one bind string; raise BindError with what is wrong and the expected form."""
    value = text.strip()
    if value.startswith("unix:"):
        path = value[5:]
        if not path:
            raise BindError(text, "empty Unix socket path", "write unix:/run/app.sock")
        return BindSpec(text, "unix", path=path)
    if value.startswith("fd://"):
        digits = value[5:]
        if not digits.isdigit():
            raise BindError(text, "fd:// needs a file descriptor number", "write fd://3")
        return BindSpec(text, "fd", fd=int(digits))
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise BindError(text, "malformed IPv6 address", "write [::1]:8000")
        port_text = rest[1:] if rest else str(DEFAULT_PORT)
    elif value.count(":") > 1:
        raise BindError(text, "IPv6 addresses need brackets", f"write [{value}]:{DEFAULT_PORT}")
    else:
        host, sep, port_text = value.partition(":")
        if not sep:
            port_text = str(DEFAULT_PORT)
        host = host or "0.0.0.0"
    if not host:
        raise BindError(text, "empty host")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise BindError(text, f"port {port_text!r} is not a number from 0 to 65535")
    return BindSpec(text, "tcp", host=host, port=int(port_text))


def resolve(spec: BindSpec) -> list[Address]:
    """Every address a bind stands for; a name may give IPv4 and IPv6 ones."""
    if spec.kind == "unix":
        return [Address(socket.AF_UNIX, spec.path, spec)]
    if spec.kind == "fd":
        return [Address(socket.AF_UNSPEC, f"fd://{spec.fd}", spec)]
    try:
        infos = socket.getaddrinfo(
            spec.host, spec.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(spec.text, f"cannot resolve host {spec.host!r}: {exc.strerror}") from None
    addresses: list[Address] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = Address(family, sockaddr, spec)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise BindError(spec.text, f"host {spec.host!r} has no IPv4 or IPv6 address")
    return addresses


def reuse_port_balances() -> bool:
    """True where SO_REUSEPORT spreads connections over sockets (Linux >= 3.9, FreeBSD _LB)."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def _bind_error(address: Address, exc: OSError) -> BindError:
    code = exc.errno
    where = str(address)
    if code == errno.EADDRINUSE:
        return BindError(
            where,
            "address already in use",
            "another process listens there (see: ss -ltnp); stop it, pick another port, "
            "or set shared_bind to share the port with another gunrunner",
        )
    if code == errno.EACCES:
        hint = "use a port >= 1024 or socket activation" if address.is_tcp else "check the path"
        return BindError(where, "permission denied", hint)
    if code == errno.EADDRNOTAVAIL:
        return BindError(where, "address not available on this machine")
    return BindError(where, exc.strerror or str(exc))


def check_free(address: Address) -> None:
    """Fail if anything already listens on a TCP address.

    A probe without SO_REUSEPORT cannot bind where any socket listens, so this catches
    another gunrunner too; only `shared_bind` skips it.
    """
    if not address.is_tcp or address.port == 0:
        return
    probe = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if address.family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind(address.sockaddr)
    except OSError as exc:
        raise _bind_error(address, exc) from None
    finally:
        probe.close()


def check_unix_path(path: str) -> bool:
    """True when a socket file nobody listens on is in the way (a crashed server's);
    False when the path is free; BindError when it cannot be used. Changes nothing."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise BindError(f"unix:{path}", "the path exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return True
        except OSError as exc:
            raise BindError(f"unix:{path}", f"cannot use the socket file: {exc.strerror}") from None
    raise BindError(f"unix:{path}", "another process listens on this socket")


def _remove_stale_unix_socket(path: str) -> None:
    if check_unix_path(path):
        os.unlink(path)  # nobody listens: a leftover from a crashed server


def open_listener(
    address: Address, backlog: int, *, reuse_port: bool, unix_mode: int = 0o660
) -> socket.socket:
    """A bound, listening, non-blocking socket for one address.

    A Unix socket gets `unix_mode` between bind() and listen(): bind() creates the file
    with the umask's mode, and until listen() nobody can connect, so no client ever
    meets the socket with a mode other than the one asked for.
    """
    if address.spec.kind == "fd":
        return _adopt_fd(address)
    if address.family == socket.AF_UNIX:
        assert isinstance(address.sockaddr, str)
        _remove_stale_unix_socket(address.sockaddr)
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        if address.is_tcp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if address.family == socket.AF_INET6:
                # Bind [::] to IPv6 only, so that 0.0.0.0 can be bound beside it.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address.sockaddr)
    except OSError as exc:
        sock.close()
        raise _bind_error(address, exc) from None
    try:
        if isinstance(address.sockaddr, str):  # AF_UNIX: the path bind() just created
            os.chmod(address.sockaddr, unix_mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if isinstance(address.sockaddr, str):
            with contextlib.suppress(OSError):
                os.unlink(address.sockaddr)
        raise _bind_error(address, exc) from None
    return sock


def _adopt_fd(address: Address) -> socket.socket:
    fd = address.spec.fd
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(str(address), f"file descriptor {fd} is not a socket: {exc}") from None
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise BindError(str(address), f"file descriptor {fd} is not a listening socket")
    sock.setblocking(False)
    return sock


def privileged_ports(binds: tuple[str, ...]) -> list[int]:
    """The TCP ports of `binds` that only root may bind (below ip_unprivileged_port_start)."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            start = int(f.read())
    except (OSError, ValueError):
        start = 1024
    ports = []
    for text in binds:
        spec = parse_bind(text)
        if spec.kind == "tcp" and 0 < spec.port < start:
            ports.append(spec.port)
    return ports


def bound_address(address: Address, sock: socket.socket) -> Address:
    """The address with the port the kernel picked, for a bind to port 0."""
    if not address.is_tcp:
        return address
    return address.with_port(sock.getsockname()[1])


def describe(sock: socket.socket) -> str:
    """host:port or unix:path of a listening socket, for log lines."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"


class Listeners:
    """The listening sockets of every worker slot.

    Rule 1: with `per_slot` every TCP address gets one SO_REUSEPORT socket per slot, so
    the kernel spreads connections over the slots' workers. The arbiter keeps them open
    and never accepts: connections queued on slot k wait for slot k's next worker.
    Rule 2: Unix sockets, inherited fds, and every address where SO_REUSEPORT is off or
    does not balance are shared: one socket per address, served by every worker. The
    mode is per address (`describe_modes()`), since one server may have both.
    Rule 3: a slot's sockets are closed only when the slot itself goes away.
    """

    def __init__(
        self,
        binds: tuple[str, ...],
        *,
        backlog: int,
        reuse_port: bool,
        shared_bind: bool,
        unix_socket_mode: int = 0o660,
    ) -> None:
        self.backlog = backlog
        specs = [parse_bind(text) for text in binds]
        self.per_slot = reuse_port and reuse_port_balances()
        self._served: list[tuple[Address, bool]] = []  # (address, per slot) in bind order
        self._slot_addresses: list[Address] = []
        self.shared: list[socket.socket] = []
        self._unix_paths: list[str] = []  # unlinked by close_all()
        self._slots: dict[int, list[socket.socket]] = {}
        first_slot: list[socket.socket] = []
        try:
            for spec in specs:
                port = spec.port
                for resolved in resolve(spec):
                    address = resolved
                    if address.is_tcp and port != address.port:
                        address = address.with_port(port)  # port 0: the one picked first
                    if address.is_tcp and not shared_bind:
                        check_free(address)
                    if address.is_tcp and self.per_slot:
                        sock = open_listener(address, backlog, reuse_port=True)
                        address = bound_address(address, sock)
                        self._slot_addresses.append(address)
                        first_slot.append(sock)
                        self._served.append((address, True))
                    else:
                        sock = open_listener(
                            address,
                            backlog,
                            reuse_port=address.is_tcp,
                            unix_mode=unix_socket_mode,
                        )
                        address = bound_address(address, sock)
                        self.shared.append(sock)
                        self._served.append((address, False))
                        if spec.kind == "unix":
                            self._unix_paths.append(spec.path)
                    if address.is_tcp:
                        port = address.port
        except BaseException:
            for sock in first_slot + self.shared:
                sock.close()
            raise
        self._slots[0] = first_slot

    def for_slot(self, slot: int) -> list[socket.socket]:
        """The sockets slot `slot` serves, opened on first use."""
        if slot not in self._slots:
            opened: list[socket.socket] = []
            try:
                for address in self._slot_addresses:
                    opened.append(open_listener(address, self.backlog, reuse_port=True))
            except BaseException:
                for sock in opened:
                    sock.close()
                raise
            self._slots[slot] = opened
        return self._slots[slot] + self.shared

    def close_slot(self, slot: int) -> None:
        for sock in self._slots.pop(slot, []):
            sock.close()

    def queued(self, slot: int) -> int:
        """Connections waiting in slot `slot`'s own TCP accept queues (0 if not open)."""
        return sum(listen_queue(sock) for sock in self._slots.get(slot, []))

    def hand_over(self, uid: int, gid: int) -> None:
        """Give every socket to the user the server will run as. The kernel groups
        SO_REUSEPORT sockets by owner: a slot's sockets opened after the drop of
        privileges join only sockets of the same user."""
        for sock in [*self.shared, *(s for group in self._slots.values() for s in group)]:
            os.fchown(sock.fileno(), uid, gid)

    def unix_paths(self) -> list[str]:
        """The socket files this server created (not inherited ones)."""
        return list(self._unix_paths)

    def close_in_child(self, keep: list[socket.socket]) -> None:
        """In a forked child: close every inherited socket not in `keep`; unlink nothing."""
        for sock in [*(s for socks in self._slots.values() for s in socks), *self.shared]:
            if sock not in keep:
                sock.close()

    def close_all(self) -> None:
        for slot in list(self._slots):
            self.close_slot(slot)
        for sock in self.shared:
            sock.close()
        for path in self._unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.shared = []
        self._unix_paths = []

    @property
    def mode(self) -> str:
        """ "per-slot", "shared", or "mixed" when some addresses are of each."""
        per_slot = {is_per_slot for _, is_per_slot in self._served}
        if per_slot == {True}:
            return "per-slot"
        return "shared" if per_slot == {False} else "mixed"

    def describe_modes(self) -> str:
        """How each address is served, for the "listening on" line (true per address)."""
        per_slot = [str(a) for a, is_per_slot in self._served if is_per_slot]
        shared = [str(a) for a, is_per_slot in self._served if not is_per_slot]
        if not shared:
            return "per-slot SO_REUSEPORT listeners"
        if not per_slot:
            return "one shared socket" if len(shared) == 1 else "one shared socket per address"
        return f"per-slot for {', '.join(per_slot)}; shared for {', '.join(shared)}"

    def names(self) -> list[str]:
        """Every address served, for the "listening on" line."""
        socks = self._slots.get(0, []) + self.shared
        if not socks and self._slots:
            socks = next(iter(self._slots.values()))
        return [describe(sock) for sock in socks]


def listen_queue(sock: Any) -> int:
    """Connections waiting in a listening TCP socket's accept queue (TCP_INFO's
    tcpi_unacked of a LISTEN socket); 0 where it cannot be read."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, AttributeError):
        return 0
    if len(info) < 28:
        return 0
    return int(struct.unpack_from("I", info, 24)[0])
