"""The servers compared side by side: one command line each, one worker, our bench apps.

A ServerSpec says which kinds of scenario it serves (`asgi`, `wsgi`, `ws`) and builds its
command line for a port and a kind. Every server is started as `python -m <server>` with
the interpreter running this script and benchmarks/apps on PYTHONPATH, so all of them
import the same `bench_asgi:app` / `bench_wsgi:application`.

Rules:
1. One worker process serves (some servers keep a supervisor beside it: gunicorn,
   granian, hypercorn with -w 1); taskset pins the whole process tree to one CPU.
2. Logging off or at warning, access logs off, everything else at the server's default,
   except the choices named here (parser, loop, WebSocket library, worker class).
3. A server that cannot run here (a module does not import, an option the installed
   gunrunner does not have) is skipped with a line saying why, never a failure.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from benchlib import LOOPBACK, REPO, module_problem

APPS_DIR = REPO / "benchmarks" / "apps"
APPS = {"asgi": "bench_asgi:app", "ws": "bench_asgi:app", "wsgi": "bench_wsgi:application"}
ENV = {"PYTHONPATH": str(APPS_DIR)}


@dataclass(frozen=True)
class ServerSpec:
    name: str
    kinds: frozenset[str]  # scenario kinds served: asgi, wsgi, ws
    modules: tuple[str, ...]  # must all import, else the server is skipped
    argv: Callable[[int, str], list[str]]  # (port, kind) -> command line, without taskset
    note: str = ""  # how it is configured, for the README and the JSON
    needs: tuple[str, ...] = field(default=())  # gunrunner options it needs (Rule 3)

    @property
    def ours(self) -> bool:
        return self.name.startswith("gunrunner")


def _gunrunner(http: str, loop: str, extra: list[str]) -> Callable[[int, str], list[str]]:
    def argv(port: int, kind: str) -> list[str]:
        iface = "wsgi" if kind == "wsgi" else "asgi"
        # A gunrunner without --http has only h11: the h11 server runs without the flag.
        parser = ["--http", http] if gunrunner_supports("--http") else []
        return [sys.executable, "-m", "gunrunner", APPS[kind], "--bind", f"{LOOPBACK}:{port}",
                "--workers", "1", "--interface", iface, *parser, "--loop", loop,
                "--log-level", "warning", *extra]  # fmt: skip

    return argv


def _uvicorn(http: str, loop: str, ws: str | None = None) -> Callable[[int, str], list[str]]:
    def argv(port: int, kind: str) -> list[str]:
        iface = ["--interface", "wsgi"] if kind == "wsgi" else []
        wsimpl = ["--ws", ws] if ws else []
        return [sys.executable, "-m", "uvicorn", APPS[kind], "--http", http, "--loop", loop,
                *iface, *wsimpl, "--workers", "1", "--host", LOOPBACK, "--port", str(port),
                "--log-level", "warning", "--no-access-log"]  # fmt: skip

    return argv


def _granian(port: int, kind: str) -> list[str]:
    iface = "wsgi" if kind == "wsgi" else "asgi"
    return [sys.executable, "-m", "granian", APPS[kind], "--interface", iface,
            "--workers", "1", "--host", LOOPBACK, "--port", str(port),
            "--log-level", "warning", "--no-access-log"]  # fmt: skip


def _gunicorn(worker: str, threads: int) -> Callable[[int, str], list[str]]:
    def argv(port: int, kind: str) -> list[str]:
        extra = ["--threads", str(threads)] if worker == "gthread" else []
        return [sys.executable, "-m", "gunicorn", APPS[kind], "-k", worker, *extra,
                "--workers", "1", "-b", f"{LOOPBACK}:{port}", "--log-level", "warning"]  # fmt: skip

    return argv


def _hypercorn(port: int, kind: str) -> list[str]:
    return [sys.executable, "-m", "hypercorn", APPS[kind], "-k", "uvloop", "-w", "1",
            "-b", f"{LOOPBACK}:{port}", "--log-level", "warning"]  # fmt: skip


def all_specs(gunrunner_args: list[str], gunicorn_threads: int) -> list[ServerSpec]:
    """Every server, ours first; the order is the table's."""
    http_ws = frozenset({"asgi", "wsgi", "ws"})
    fast = ("httptools", "uvloop")
    return [
        ServerSpec("gunrunner-h11", http_ws, ("gunrunner",),
                   _gunrunner("h11", "asyncio", gunrunner_args),
                   "--http h11 --loop asyncio", needs=("--loop",)),
        ServerSpec("gunrunner-httptools", http_ws, ("gunrunner", *fast),
                   _gunrunner("httptools", "uvloop", gunrunner_args),
                   "--http httptools --loop uvloop", needs=("--http", "--loop")),
        ServerSpec("uvicorn-h11", frozenset({"asgi"}), ("uvicorn",),
                   _uvicorn("h11", "asyncio"), "--http h11 --loop asyncio"),
        ServerSpec("uvicorn-httptools", frozenset({"asgi"}), ("uvicorn", *fast),
                   _uvicorn("httptools", "uvloop"), "--http httptools --loop uvloop"),
        ServerSpec("uvicorn-wsgi", frozenset({"wsgi"}), ("uvicorn", *fast),
                   _uvicorn("httptools", "uvloop"),
                   "--interface wsgi --http httptools --loop uvloop"),
        ServerSpec("uvicorn-ws-sansio", frozenset({"ws"}), ("uvicorn", "websockets", *fast),
                   _uvicorn("httptools", "uvloop", "websockets-sansio"),
                   "--ws websockets-sansio --http httptools --loop uvloop"),
        ServerSpec("uvicorn-ws-websockets", frozenset({"ws"}), ("uvicorn", "websockets", *fast),
                   _uvicorn("httptools", "uvloop", "websockets"),
                   "--ws websockets --http httptools --loop uvloop"),
        ServerSpec("uvicorn-ws-wsproto", frozenset({"ws"}), ("uvicorn", "wsproto", *fast),
                   _uvicorn("httptools", "uvloop", "wsproto"),
                   "--ws wsproto --http httptools --loop uvloop"),
        ServerSpec("granian", http_ws, ("granian",), _granian,
                   "--interface asgi|wsgi, defaults otherwise (loop auto)"),
        ServerSpec("gunicorn-gthread", frozenset({"wsgi"}), ("gunicorn",),
                   _gunicorn("gthread", gunicorn_threads),
                   f"-k gthread --threads {gunicorn_threads}"),
        ServerSpec("gunicorn-asgi", frozenset({"asgi", "ws"}), ("gunicorn",),
                   _gunicorn("asgi", 0),
                   "-k asgi (gunicorn's own ASGI worker; --asgi-loop auto: uvloop)"),
        ServerSpec("hypercorn", frozenset({"asgi", "ws"}), ("hypercorn", "uvloop"), _hypercorn,
                   "-k uvloop (h11, wsproto)"),
    ]  # fmt: skip


def select(specs: list[ServerSpec], only: str | None) -> list[ServerSpec]:
    """--only takes names or prefixes: `uvicorn,granian` or `gunrunner-h11`."""
    if not only:
        return specs
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if not any(s.name.startswith(w) for s in specs)]
    if unknown:
        names = ", ".join(s.name for s in specs)
        raise SystemExit(f"--only: unknown server(s) {unknown}; choose from {names}")
    return [s for s in specs if any(s.name.startswith(w) for w in wanted)]


def gunrunner_supports(option: str) -> bool:
    """Whether the installed gunrunner's --help lists `option` (e.g. `--http`)."""
    return re.search(rf"^\s+{re.escape(option)}[\s,=]", _gunrunner_help(), re.M) is not None


@functools.cache
def _gunrunner_help() -> str:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gunrunner", "--help"],
            check=False,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout


def available(specs: list[ServerSpec]) -> tuple[list[ServerSpec], dict[str, str]]:
    """Rule 3: the servers that can run, and why each other one cannot."""
    ready, skipped = [], {}
    for spec in specs:
        missing = [f"{m} ({why})" for m in spec.modules if (why := module_problem(m))]
        lacking = [o for o in spec.needs if not gunrunner_supports(o)]
        if missing:
            skipped[spec.name] = f"cannot import {', '.join(missing)}"
        elif lacking:
            skipped[spec.name] = (
                f"`gunrunner --help` does not list {', '.join(lacking)} (not in this version)"
            )
        else:
            ready.append(spec)
    for name, why in skipped.items():
        print(f"skip {name}: {why}")
    return ready, skipped
