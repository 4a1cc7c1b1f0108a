"""Shared helpers for the benchmark scripts: ports, CPU pinning, server processes, readiness.

Imported as a sibling module, so run the scripts as files
(`python benchmarks/http_bench.py`), not with `-m`.

Rules:
1. A server is stopped by its PID (its own process group), never by name.
2. Every started server is registered until stopped; `stop_all()` in a `finally` stops
   what an interrupt left running, and SIGINT/SIGTERM/SIGHUP are held off while a
   server is being stopped, so an impatient second Ctrl-C cannot orphan it.
3. Every wait is bounded (READY_TIMEOUT, STOP_TIMEOUT).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO

# Servers run with cwd=REPO so `examples.hello_asgi:app` imports.
REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
# The server under test gets CPU 0 to itself, the load generator CPU 1.
SERVER_CPU = "0"
LOAD_CPU = "1"
_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_LIVE: set[ServerProcess] = set()


class BenchError(Exception):
    """A server or tool misbehaved; the message says how."""


def free_port() -> int:
    """Let the kernel pick a free loopback port (tiny race until the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def module_available(module: str) -> bool:
    """Whether `module` imports for sys.executable run from REPO (as the servers are)."""
    return module_problem(module) is None


def module_problem(module: str) -> str | None:
    """Why `module` cannot be found by sys.executable run from REPO, or None if it can."""
    code = "import importlib.util as u, sys; sys.exit(0 if u.find_spec(sys.argv[1]) else 3)"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, module],
            check=False,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return "the import check did not finish within 60 s"
    if done.returncode == 0:
        return None
    if done.returncode == 3:
        return "not installed"
    # find_spec raises when a parent package is missing; say what it said.
    lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
    return lines[-1]


def raise_on_sigterm() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit so `finally` blocks stop the servers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def can_pin() -> bool:
    """Pinning needs taskset and both CPUs in our affinity mask; say why not."""
    if shutil.which("taskset") is None:
        print("taskset not found: running UNPINNED (server and load generator share CPUs)")
        return False
    cpus = os.sched_getaffinity(0)
    if not {int(SERVER_CPU), int(LOAD_CPU)} <= cpus:
        print(f"CPUs {SERVER_CPU},{LOAD_CPU} not both available ({sorted(cpus)}): running UNPINNED")
        return False
    return True


def pinned(cpu: str, argv: list[str], pin: bool) -> list[str]:
    """`argv` under `taskset -c cpu` when pinning, else unchanged."""
    return ["taskset", "-c", cpu, *argv] if pin else argv


def _unblock_held_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD_SIGNALS)


def stop_all() -> None:
    """Stop every server still running (Rule 2); for a `finally` in main()."""
    for server in list(_LIVE):
        server.stop()


class ServerProcess:
    """One server in its own session/process group, stopped by PID on exit."""

    def __init__(
        self, name: str, argv: list[str], port: int, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.env = None if env is None else {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: a chatty server can never block on a full pipe.
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        # Registered in the same held-signals window as the Popen (Rule 2). The child
        # inherits the signal mask across exec, so it unblocks them before exec (this
        # script has no threads, which is what makes preexec_fn safe here).
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C is ours to forward
                preexec_fn=_unblock_held_signals,  # noqa: PLW1509 (no threads here)
            )
            _LIVE.add(self)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def output_tail(self, limit: int = 2000) -> str:
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        return text[-limit:].strip()

    def wait_ready(self, timeout: float = READY_TIMEOUT, tls: ssl.SSLContext | None = None) -> None:
        """Poll until GET / answers 200; refused/reset just means not yet."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise BenchError(
                    f"{self.name} exited with code {code} before ready:\n{self.output_tail()}"
                )
            try:
                status = http_get_status(self.port, tls=tls)
            except (OSError, http.client.HTTPException) as exc:
                last = repr(exc)
            else:
                if status == 200:
                    return
                last = f"status {status}"
            time.sleep(0.1)
        raise BenchError(
            f"{self.name} not ready after {timeout:.0f} s (last: {last}):\n{self.output_tail()}"
        )

    def stop(self) -> None:
        """TERM the group, wait up to STOP_TIMEOUT, then KILL whatever is left."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
        try:
            self._stop()
        finally:
            _LIVE.discard(self)
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            if not self._log.closed:
                self._log.close()
            return
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        self._wait_exit_unreaped(pid, STOP_TIMEOUT)
        # The leader is a zombie (not reaped) or stuck, so pgid `pid` is still
        # ours: killing it cannot hit an unrelated group, and kills stray workers.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(f"warning: {self.name} pid {pid} did not die after SIGKILL", file=sys.stderr)
        self._log.close()

    @staticmethod
    def _wait_exit_unreaped(pid: int, timeout: float) -> None:
        """Wait for the leader to exit without reaping it (WNOWAIT keeps its PID reserved)."""
        deadline = time.monotonic() + timeout
        flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
        while time.monotonic() < deadline:
            try:
                if os.waitid(os.P_PID, pid, flags) is not None:
                    return
            except ChildProcessError:
                return
            time.sleep(0.05)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_get_status(port: int, timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> int:
    """One GET / on a fresh connection (HTTPS with `tls`); the status code."""
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(LOOPBACK, port, timeout=timeout, context=tls)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()
