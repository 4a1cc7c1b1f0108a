"""The workloads of the side-by-side benchmark: what load, on which route, of which kind.

A Scenario's `kind` picks the app (`asgi`, `wsgi`; `ws` is the ASGI app's WebSocket echo)
and so the servers that take part (ServerSpec.kinds). Routes are the bench apps'
(benchmarks/apps): `/` hello, `/64k`, `/upload`.

Rules:
1. Every scenario runs with the same connection count (--connections, 50) from one
   load-generator thread (wrk -t1, or ws_load.py's one event loop).
2. DEFAULT is what `side_by_side.py` runs without --scenarios: the issue's comparisons
   (ASGI for every workload, WSGI for hello). The WSGI variants of the other workloads
   are there to be asked for (`--scenarios all`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loads import HERE, LoadResult, run_wrk, run_ws
from probes import Probe, expect

UPLOAD_LUA = HERE / "lua" / "upload_1mib.lua"
UPLOAD_BYTES = 1048576  # as in the lua script
WS_MESSAGE_BYTES = 32
HELLO = b"Hello, world!\n"  # the bench apps' bodies
BIG = b"x" * 65536

# (port, duration, connections, pin, warmup) -> result. Warm-up is the generator's for
# WebSocket (connections stay open); for wrk the caller runs a separate warm-up load.
Load = Callable[[int, float, int, bool, float], LoadResult]


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # asgi | wsgi | ws
    title: str  # for the chart
    load: Load
    probe: Probe | None  # checked once before each measurement (probes.py)
    unit: str = "req/s"
    separate_warmup: bool = True  # False: the load function warms up itself


def _wrk(path: str = "/", *wrk_args: str) -> Load:
    def load(port: int, duration: float, conns: int, pin: bool, warmup: float) -> LoadResult:
        return run_wrk(port, duration, conns, pin, path=path, wrk_args=wrk_args)

    return load


def _ws(port: int, duration: float, conns: int, pin: bool, warmup: float) -> LoadResult:
    return run_ws(port, duration, conns, pin, warmup=warmup, size=WS_MESSAGE_BYTES)


_CLOSE = ("-H", "Connection: close")
_UPLOAD = ("-s", str(UPLOAD_LUA))

_HELLO = expect("/", HELLO)
_CLOSED = expect("/", HELLO, close=True)
_BIG = expect("/64k", BIG)
_UPLOADED = expect("/upload", str(UPLOAD_BYTES).encode(), method="POST", send=b"x" * UPLOAD_BYTES)

ALL = [
    Scenario("hello-asgi", "asgi", "ASGI hello, keep-alive", _wrk(), _HELLO),
    Scenario("hello-wsgi", "wsgi", "WSGI hello, keep-alive", _wrk(), _HELLO),
    Scenario("close-asgi", "asgi", "ASGI hello, Connection: close", _wrk("/", *_CLOSE), _CLOSED),
    Scenario("close-wsgi", "wsgi", "WSGI hello, Connection: close", _wrk("/", *_CLOSE), _CLOSED),
    Scenario("64k-asgi", "asgi", "ASGI 64 KiB response", _wrk("/64k"), _BIG),
    Scenario("64k-wsgi", "wsgi", "WSGI 64 KiB response", _wrk("/64k"), _BIG),
    Scenario("upload-asgi", "asgi", "ASGI 1 MiB upload", _wrk("/upload", *_UPLOAD), _UPLOADED),
    Scenario("upload-wsgi", "wsgi", "WSGI 1 MiB upload", _wrk("/upload", *_UPLOAD), _UPLOADED),
    Scenario(
        "ws-echo",
        "ws",
        f"WebSocket echo, {WS_MESSAGE_BYTES}-byte messages",
        _ws,
        None,  # ws_load.py checks each connection's first echo
        unit="msgs/s",
        separate_warmup=False,
    ),
]
DEFAULT = ("hello-asgi", "hello-wsgi", "close-asgi", "64k-asgi", "upload-asgi", "ws-echo")


def select(names: str | None) -> list[Scenario]:
    """--scenarios: a comma list of names or prefixes (`hello,ws`), or `all`."""
    if not names:
        return [s for s in ALL if s.name in DEFAULT]
    if names.strip() == "all":
        return list(ALL)
    wanted = [w.strip() for w in names.split(",") if w.strip()]
    unknown = [w for w in wanted if not any(s.name.startswith(w) for s in ALL)]
    if unknown:
        raise SystemExit(
            f"--scenarios: unknown {unknown}; choose from {', '.join(s.name for s in ALL)}, all"
        )
    return [s for s in ALL if any(s.name.startswith(w) for w in wanted)]
