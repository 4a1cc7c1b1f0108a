"""Run the real `gunrunner` command as a subprocess and clean up after it.

Every server runs in its own session (process group). `Server.stop()` and the context
manager's exit TERM the group, wait, KILL what is left, and then assert that no
process the test saw (arbiter or worker) survives, as a process or as a zombie.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Log files of every server started; tests may read them after stop(), so they are
# removed at the end of the session (tests/conftest.py).
CREATED_LOGS: list[Path] = []
LISTENING = re.compile(r"listening on https?://(\[[^\]]+\]|[^ ,:]+):(\d+)")


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


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
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
        left = lambda: [p for p in self.seen_pids if process_state(p) is not None]  # noqa: E731
        if not wait_until(lambda: not left(), timeout):
            states = {p: process_state(p) for p in left()}
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            for p in states:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            raise AssertionError(f"processes left behind (pid: state): {states}\n{self.log()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    if env:
        full_env.update(env)
    log_fd, log_name = tempfile.mkstemp(prefix="gunrunner-test-", suffix=".log")
    cmd = [sys.executable, "-m", "gunrunner", *args]
    if bind is not None:
        cmd += ["--bind", bind]
    proc = subprocess.Popen(
        cmd,
        cwd=str(cwd),
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        start_new_session=True,
    )
    os.close(log_fd)
    server = Server(proc, Path(log_name))
    CREATED_LOGS.append(server.log_path)
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


def http_get(
    url: str, path: str = "/", timeout: float = 10.0, headers: dict[str, str] | None = None
):
    """A GET with httpx; returns the response."""
    import httpx

    return httpx.get(url + path, timeout=timeout, headers=headers)


def raw_request(host: str, port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes (or timeout); return what came back."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(socket.timeout):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)
