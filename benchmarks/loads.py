"""Load generators run against a server: wrk for HTTP, ws_load.py for WebSocket echo.

Both give a LoadResult (requests or messages per second, p50/p99 latency, errors).

Rules:
1. The generator runs pinned to LOAD_CPU when pinning, as a child process with a hard
   time limit (duration + SLACK): a hung generator fails the run, never the script.
2. Errors are counted, never hidden: wrk's non-2xx responses and socket errors
   (connect, read, write, timeout); the WebSocket client's failed handshakes, wrong
   echoes and lost connections.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import LOAD_CPU, LOOPBACK, BenchError, pinned

HERE = Path(__file__).resolve().parent
SLACK = 30.0  # seconds past the planned end before a generator counts as hung


@dataclass
class LoadResult:
    rps: float  # requests/s for HTTP, echoed messages/s for WebSocket
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int = 0
    socket_errors: int = 0
    detail: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


# --- wrk -------------------------------------------------------------------------------

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def _percentile_ms(text: str, pct: str) -> float:
    match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    if match is None:
        raise BenchError(f"wrk output has no {pct}% latency line:\n{text}")
    return float(match.group(1)) * _TIME_UNITS_MS[match.group(2)]


def parse_wrk(text: str) -> LoadResult:
    rps = _RPS.search(text)
    requests = _REQUESTS.search(text)
    if rps is None or requests is None:
        raise BenchError(f"cannot parse wrk output:\n{text}")
    non_2xx = _NON_2XX.search(text)
    sock = _SOCKET_ERRORS.search(text)
    detail = {}
    if sock:
        kinds = ("connect", "read", "write", "timeout")
        detail = {k: int(v) for k, v in zip(kinds, sock.groups(), strict=True)}
    return LoadResult(
        rps=float(rps.group(1)),
        p50_ms=_percentile_ms(text, "50"),
        p99_ms=_percentile_ms(text, "99"),
        requests=int(requests.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(detail.values()),
        detail=detail,
    )


def run_wrk(
    port: int,
    duration: float,
    connections: int,
    pin: bool,
    *,
    path: str = "/",
    wrk_args: tuple[str, ...] = (),
) -> LoadResult:
    """One wrk thread, `connections` connections, for `duration` seconds (Rule 1)."""
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        *wrk_args,
        f"http://{LOOPBACK}:{port}{path}",
    ]
    limit = duration + SLACK
    try:
        done = subprocess.run(
            pinned(LOAD_CPU, argv, pin),
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=limit,  # wrk stops itself; this only bounds a hang
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {limit:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout}")
    return parse_wrk(done.stdout)


# --- WebSocket echo --------------------------------------------------------------------


def run_ws(
    port: int,
    duration: float,
    connections: int,
    pin: bool,
    *,
    warmup: float = 0.0,
    size: int = 32,
) -> LoadResult:
    """ws_load.py in its own process: `connections` echo loops of `size`-byte messages."""
    argv = [
        sys.executable,
        str(HERE / "ws_load.py"),
        "--port", str(port),
        "--connections", str(connections),
        "--size", str(size),
        "--duration", str(duration),
        "--warmup", str(warmup),
    ]  # fmt: skip
    limit = warmup + duration + SLACK
    try:
        done = subprocess.run(
            pinned(LOAD_CPU, argv, pin),
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=limit,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"ws_load.py did not finish within {limit:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(f"ws_load.py exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    try:
        data = json.loads(done.stdout)
    except ValueError as exc:
        raise BenchError(f"cannot parse ws_load.py output: {done.stdout[-2000:]!r}") from exc
    if data["connections"] == 0:
        raise BenchError(f"no WebSocket connection was established: {data['error_kinds']}")
    return LoadResult(
        rps=data["rps"],
        p50_ms=data["p50_ms"],
        p99_ms=data["p99_ms"],
        requests=data["requests"],
        socket_errors=data["errors"],
        detail=data["error_kinds"],
    )
