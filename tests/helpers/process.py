"""Run the real `gunrunner` command as a subprocess, watch its processes, clean up.

Every server runs in its own session (process group). `Server.stop()` and the context
manager's exit TERM the group, wait, KILL what is left, and then assert that no
process the test saw (arbiter or worker) survives, as a process or as a zombie.

Rules:
1. Wait for a condition (`wait_until`) or a log line (`Server.wait_for`), never sleep.
2. "Nothing bad was logged" is only checked once a later marker line has landed
   (`Server.assert_no_errors_before`): a check right after an event can pass only
   because the line about it has not been written yet.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.helpers import drivers

REPO = Path(__file__).resolve().parents[2]
# Log files of every server started; tests may read them after stop(), so they are
# removed at the end of the session (tests/conftest.py).
CREATED_LOGS: list[Path] = []
LISTENING = re.compile(r"listening on https?://(\[[^\]]+\]|[^ ,:]+):(\d+)")
# What no server may log while a test expects a clean run (an app's own errors aside).
ALARMS = ("Traceback", " ERROR ", " CRITICAL ", "Fatal error", "Exception ignored")


def children_of(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [
                    int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                ]
    except OSError:
        pass
    return found


def process_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, Z, ...) or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Poll `predicate` until it is true or `timeout` passes; its last answer, as a bool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class Server:
    """A running gunrunner process and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.host = "127.0.0.1"
        self.port = 0
        self.seen_pids: set[int] = {proc.pid}

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 15.0, count: int = 1) -> re.Match[str]:
        """Wait until `pattern` (a regex) has appeared `count` times in the log."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            matches = list(regex.finditer(self.log()))
            if len(matches) >= count:
                return matches[count - 1]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} x{count} not in the log after {timeout}s:\n{self.log()}"
                )
            if self.proc.poll() is not None and len(list(regex.finditer(self.log()))) < count:
                raise AssertionError(
                    f"server exited ({self.proc.returncode}) before {pattern!r}:\n{self.log()}"
                )
            time.sleep(0.02)

    def assert_no_errors_before(
        self, marker: str, alarms: tuple[str, ...] = ALARMS, timeout: float = 15.0
    ) -> None:
        """Wait for `marker` (a regex) in the log, then assert that no alarm is in it.

        Make the marker a line that is written after the event under test was handled
        (a follow-up request to a route that logs, a line the app writes last): once it
        is there, so is every line about the event.
        """
        self.wait_for(marker, timeout)
        log = self.log()
        found = [alarm for alarm in alarms if alarm in log]
        assert not found, f"{found} in the log before {marker!r}:\n{log}"

    def holds_socket(self, inode: int) -> bool:
        """True while a process of this server (arbiter or worker) has socket `inode` open."""
        target = f"socket:[{inode}]"
        for pid in {self.pid, *self.workers()}:
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return True
        return False

    def workers(self) -> list[int]:
        """Current worker pids (children of the arbiter); remembered for the final check."""
        pids = children_of(self.pid)
        self.seen_pids.update(pids)
        return pids

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Stop the server (if running) and assert that nothing it started is left."""
        self.workers()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.assert_no_leftovers()
        return self.proc.returncode

    def assert_no_leftovers(self, timeout: float = 10.0) -> None:
        """No process this server ever had is alive or a zombie."""

        def left() -> list[int]:
            return [p for p in self.seen_pids if process_state(p) is not None]

        if not wait_until(lambda: not left(), timeout):
            states = {p: process_state(p) for p in left()}
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            for p in states:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            raise AssertionError(f"processes left behind (pid: state): {states}\n{self.log()}")


def launch(
    cmd: list[str],
    *,
    cwd: Path | str = REPO,
    env: dict[str, str],
    pass_fds: tuple[int, ...] = (),
) -> Server:
    """Popen `cmd` (gunrunner, or a program that execs it in the same process) in a
    session of its own, its output in a temporary log file, as a Server."""
    log_fd, log_name = tempfile.mkstemp(prefix="gunrunner-test-", suffix=".log")
    proc = subprocess.Popen(
        cmd,
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        start_new_session=True,
        pass_fds=pass_fds,
    )
    os.close(log_fd)
    server = Server(proc, Path(log_name))
    CREATED_LOGS.append(server.log_path)
    return server


def start(
    *args: str,
    cwd: Path | str = REPO,
    env: dict[str, str] | None = None,
    bind: str | None = "127.0.0.1:0",
    wait: bool = True,
    ready: int | None = None,
) -> Server:
    """Start `python -m gunrunner ARGS`; wait for the listening line (and `ready` workers)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GUNRUNNER_")}
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(drivers.SERVER_ENV)  # (a module run on both drivers: which one now)
    if env:
        full_env.update(env)
    cmd = [sys.executable, "-m", "gunrunner", *args]
    if bind is not None:
        cmd += ["--bind", bind]
    server = launch(cmd, cwd=cwd, env=full_env)
    if wait:
        try:
            match = server.wait_for(LISTENING.pattern)
            server.host = match.group(1).strip("[]")
            server.port = int(match.group(2))
            if ready is not None:
                if ready <= 1:
                    server.wait_for(r"serving (WSGI|ASGI|ASGI2) app")
                else:
                    server.wait_for(r"all \d+ workers ready")
                    server.workers()
        except BaseException:
            server.stop(signal.SIGKILL)
            raise
    return server


@contextlib.contextmanager
def running(*args: str, **kwargs: object) -> Iterator[Server]:
    """`start()` as a context manager that always stops and checks for leftovers."""
    server = start(*args, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            server.log_path.unlink()


def start_with_log_file(log_file: Path, *args: str, ready: int | None = None) -> Server:
    """start() with --log-file: the listening line is read from that file."""
    server = start(*args, "--log-file", str(log_file), wait=False)
    captured = server.log_path
    server.log_path = log_file
    try:
        wait_until(log_file.exists, 15.0)
        match = server.wait_for(LISTENING.pattern)
        server.host = match.group(1).strip("[]")
        server.port = int(match.group(2))
        if ready is not None:
            server.wait_for(rf"all {ready} workers ready")
            server.workers()
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    finally:
        with contextlib.suppress(OSError):
            captured.unlink()
    return server


# -- workers and listeners, from /proc ------------------------------------------------------


def listen_inodes(port: int) -> set[str]:
    """Inodes of the LISTEN sockets on `port` (/proc/net/tcp and tcp6)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def wait_workers(server: Server, count: int, timeout: float = 15.0) -> list[int]:
    """Wait until the arbiter has exactly `count` children; return them."""
    assert wait_until(lambda: len(server.workers()) == count, timeout), (
        f"expected {count} workers, have {server.workers()}\n{server.log()}"
    )
    return server.workers()


def wait_ready(server: Server, pid: int, timeout: float = 15.0) -> int:
    """Wait for the arbiter's "worker PID (slot K) ready" line; return K."""
    match = server.wait_for(rf"worker {pid} \(slot (\d+)\) ready", timeout)
    return int(match.group(1))


def age(pid: int) -> float:
    """Seconds since `pid` started (from /proc)."""
    start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def assert_gone(pid: int, timeout: float = 5.0) -> None:
    """`pid` is neither running nor a zombie within `timeout`."""
    assert wait_until(lambda: process_state(pid) is None, timeout), (
        f"process {pid} still there: state {process_state(pid)}"
    )
