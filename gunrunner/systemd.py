"""systemd integration without libsystemd: socket activation and sd_notify.

Socket activation (sd_listen_fds(3)): a .socket unit binds the listeners and starts us with
them open at fds 3, 4, ... (SD_LISTEN_FDS_START), described by three variables:
  LISTEN_PID      the process they are for; another one (a child that inherited the
                  environment) must ignore them: its fds 3.. are something else.
  LISTEN_FDS      how many, from fd 3; systemd never sends 0 and libsystemd refuses it.
  LISTEN_FDNAMES  each fd's FileDescriptorName= (default: the .socket unit's name), joined
                  with ":"; when absent, libsystemd names every fd "unknown".
As sd_listen_fds() does, the fds are made close-on-exec and the variables removed, so no
program the app runs thinks it was activated. The server adopts the fds later as fd://N
binds (net.py): nothing here keeps a socket object that would close one when collected.

sd_notify(3): under Type=notify the unit is up when READY=1 arrives on the AF_UNIX datagram
socket NOTIFY_SOCKET names (a path, or "@name" in the abstract namespace); a message is
KEY=VALUE lines in one datagram. WatchdogSec= sets WATCHDOG_USEC (and WATCHDOG_PID): send
WATCHDOG=1 every half of it, as the man page advises. Type=notify-reload (systemd 253)
wants RELOADING=1 plus MONOTONIC_USEC when a reload starts, and READY=1 when it is done.
A message that cannot be sent is logged and dropped, never fatal. Only the arbiter should
send: workers inherit the Notifier across fork, and NotifyAccess=main drops their messages.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

from gunrunner.errors import ConfigError

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
# LISTEN_PIDFDID (newer systemd) pins LISTEN_PID to one incarnation of the pid; we do not
# check it, but drop it with the others so that children do not inherit it.
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES")
_NOTIFY_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
_UNKNOWN = "unknown"
_WRONG_TYPES: dict[int, str] = {
    socket.SOCK_DGRAM: "a datagram socket; use ListenStream=, not ListenDatagram=",
    socket.SOCK_SEQPACKET: "a seqpacket socket; use ListenStream=, not ListenSequentialPacket=",
}


@dataclass(frozen=True, slots=True)
class ActivatedSocket:
    """One file descriptor passed by the service manager, and its LISTEN_FDNAMES name."""

    fd: int
    name: str

    @property
    def bind(self) -> str:
        """The bind the server adopts it with."""
        return f"fd://{self.fd}"


def _env_error(var: str, value: str, expected: str) -> ConfigError:
    return ConfigError(f"{var}: expected {expected}, got {value!r}", source="environment")


def _decimal(text: str) -> int | None:
    """An integer as systemd writes it; int() would also take " 3", "3_0" and "٣"."""
    digits = text[1:] if text.startswith("-") else text
    return int(text) if digits.isascii() and digits.isdigit() else None


def parse_listen_environ(environ: Mapping[str, str], *, pid: int) -> list[ActivatedSocket]:
    """The sockets the variables describe for process `pid`; no fd is touched.

    Raises ConfigError when a variable is malformed: the launcher's bug, but fatal.
    """
    listen_pid = environ.get("LISTEN_PID")
    if listen_pid is None:
        return []
    owner = _decimal(listen_pid)
    if owner is None or owner <= 0:
        raise _env_error("LISTEN_PID", listen_pid, "a process id")
    if owner != pid:
        return []
    count_text = environ.get("LISTEN_FDS")
    if count_text is None:
        return []
    count = _decimal(count_text)
    if count is None or count <= 0:
        raise _env_error("LISTEN_FDS", count_text, "a positive number of file descriptors")
    if count > os.sysconf("SC_OPEN_MAX") - SD_LISTEN_FDS_START:
        # Cannot all be open; and the list below must not grow to the size of a typo.
        raise _env_error("LISTEN_FDS", count_text, "no more fds than `ulimit -n` allows")
    names_text = environ.get("LISTEN_FDNAMES")
    names = names_text.split(":") if names_text else []
    # libsystemd refuses any count mismatch. More names than fds suggests LISTEN_FDS is
    # wrong, so we refuse that too; a shorter list (a hand-made launcher naming only the
    # first fds) is padded with "unknown", the name libsystemd gives when there are none.
    if len(names) > count:
        raise _env_error("LISTEN_FDNAMES", str(names_text), f"at most LISTEN_FDS={count} names")
    names += [_UNKNOWN] * (count - len(names))
    return [
        ActivatedSocket(SD_LISTEN_FDS_START + index, name or _UNKNOWN)
        for index, name in enumerate(names)
    ]


def listen_fds(
    environ: MutableMapping[str, str] | None = None, *, pid: int | None = None, unset: bool = True
) -> list[ActivatedSocket]:
    """The sockets systemd passed to this process, now close-on-exec; [] when none.

    `environ` is os.environ by default (removing a key there unsets it for children too),
    `pid` our own. Raises ConfigError when a variable is malformed or an fd is not open.
    """
    env = os.environ if environ is None else environ
    try:
        activated = parse_listen_environ(env, pid=os.getpid() if pid is None else pid)
        for item in activated:
            try:
                # Workers fork without exec, so they keep them; an exec'd program must not.
                os.set_inheritable(item.fd, False)
            except OSError as exc:
                raise ConfigError(
                    f"LISTEN_FDS={len(activated)} but fd {item.fd} (name {item.name!r}) "
                    f"is not open: {exc.strerror}; the launcher passed fewer fds than it says",
                    source="environment",
                ) from None
        return activated
    finally:
        # As sd_listen_fds(3) does: on every path, as the fds are ours or nobody's.
        if unset:
            for var in _LISTEN_VARS:
                env.pop(var, None)


def _socket_problem(fd: int) -> str | None:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        return f"not a socket ({exc.strerror}); list it as ListenStream= in the .socket unit"
    try:
        kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        accepting = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    finally:
        sock.detach()  # the fd stays open: the server adopts it as fd://N
    if kind != socket.SOCK_STREAM:
        return _WRONG_TYPES.get(kind, f"a socket of type {kind}, not a stream socket")
    if not accepting:
        # Accept=yes passes one accepted connection per service instance, not a listener.
        return "a stream socket that is not listening; set Accept=no in the .socket unit"
    return None


def check_listening(activated: Iterable[ActivatedSocket]) -> None:
    """Raise ConfigError unless every fd is a listening stream socket, as fd:// needs."""
    for item in activated:
        if problem := _socket_problem(item.fd):
            which = f"fd {item.fd} (LISTEN_FDNAMES name {item.name!r})"
            raise ConfigError(f"socket activation: {which} is {problem}", source="environment")


def _watchdog_interval(usec_text: str | None, pid_text: str | None) -> float | None:
    if usec_text is None:
        return None
    usec = _decimal(usec_text)
    if usec is None or not 0 < usec < 2**64 - 1:  # sd_watchdog_enabled() refuses "infinity" too
        log.warning("ignoring WATCHDOG_USEC=%r: expected a positive number of us", usec_text)
        return None
    if pid_text is not None and _decimal(pid_text) != os.getpid():
        return None  # exported for another process (our parent), as LISTEN_PID can be
    return usec / 2 / 1e6


class Notifier:
    """Sends sd_notify messages on NOTIFY_SOCKET; a failed send is logged, never raised."""

    __slots__ = ("_address", "_sock", "_target", "_warned", "_watchdog_interval")

    def __init__(self, address: str, *, watchdog_interval: float | None = None) -> None:
        if address.startswith("@"):
            target = b"\0" + os.fsencode(address[1:])  # systemd spells the leading NUL "@"
        elif address.startswith("/"):
            target = os.fsencode(address)
        else:
            # systemd 254+ also understands vsock:CID:PORT (a VM's manager); we need not.
            raise _env_error("NOTIFY_SOCKET", address, "an absolute path or an @name")
        self._address = address
        self._target = target
        self._watchdog_interval = watchdog_interval
        self._warned = False
        # Created once and not connected: sendto() looks the name up on every message, so a
        # receiver re-created at the same name is still reached. Python sockets are
        # SOCK_CLOEXEC, so an exec'd program never inherits this one.
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier | None:
        """A Notifier for NOTIFY_SOCKET, or None when it is unset or empty.

        `unset` removes NOTIFY_SOCKET and WATCHDOG_*: workers and the app must not use them.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        interval = _watchdog_interval(usec, pid) if address else None
        if unset:
            for var in _NOTIFY_VARS:
                env.pop(var, None)
        return cls(address, watchdog_interval=interval) if address else None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 messages (half of WATCHDOG_USEC), or None: no watchdog."""
        return self._watchdog_interval

    def send(self, *fields: str) -> bool:
        """Send KEY=VALUE fields as one message; False when it could not be sent."""
        try:
            self._sock.sendto("\n".join(fields).encode(), self._target)
        except OSError as exc:
            # The watchdog resends every few seconds: warn once per run of failures.
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            message = "cannot notify systemd at NOTIFY_SOCKET=%s (%s): %s; next failures: DEBUG"
            log.log(level, message, self._address, ",".join(fields)[:80], exc)
            return False
        self._warned = False
        return True

    def ready(self, status: str = "") -> bool:
        """Startup or a reload has finished: the service can answer requests."""
        return self.send("READY=1", _status_field(status)) if status else self.send("READY=1")

    def reloading(self) -> bool:
        """A reload starts; READY=1 must follow when it has finished."""
        # Type=notify-reload compares this with when it sent the reload signal; without it
        # the message may not count as the answer, and `systemctl reload` waits to time out.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown has begun (systemd then expects the main process to exit)."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """A one-line status shown by `systemctl status`; "" clears it."""
        return self.send(_status_field(text))

    def watchdog(self) -> bool:
        """Tell the watchdog we are alive; send every watchdog_interval seconds."""
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket; later sends return False."""
        self._sock.close()


def _status_field(text: str) -> str:
    # A newline would end the field and start another, so the text is kept on one line.
    return "STATUS=" + " ".join(text.splitlines())
