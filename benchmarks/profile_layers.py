"""Where one worker's time goes per request, by layer: parser, driver, core, bridge, app,
event loop, syscalls.

    python benchmarks/profile_layers.py                        # httptools + uvloop, ASGI
    python benchmarks/profile_layers.py --http h11 --loop asyncio --interface wsgi
    python benchmarks/profile_layers.py --calls                # cProfile: calls per request

The server (one process, no fork) runs pinned to CPU 0 under hello-world keep-alive load
from wrk pinned to CPU 1. py-spy samples it (with native frames) for the load's
duration; each sample is charged to the innermost frame that belongs to a layer, so the
interpreter's own work (allocation, dict lookups) counts for the Python code that caused
it, and a sample inside a libc system-call wrapper counts as "syscalls". Microseconds per
request = the layer's share of the samples x the core's time per request (1 / req/s,
from a run of the same load without the sampler just before).
The sampler pauses the process to read native stacks, so it slows it and the shares
are skewed towards system calls: compare runs of this script with each other, not with
side_by_side.py.

With --calls the server runs under cProfile instead (much slower: only the counts
mean anything): function calls per request, and the functions called most per request.
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import LOAD_CPU, LOOPBACK, REPO, SERVER_CPU, ServerProcess, free_port, pinned
from loads import run_wrk

APPS = {"asgi": "bench_asgi:app", "wsgi": "bench_wsgi:application"}
# (layer, pattern on a frame's "function (file:line)" text), first match wins per frame.
LAYERS: list[tuple[str, re.Pattern[str]]] = [
    ("app", re.compile(r"benchmarks/apps/")),
    ("parser", re.compile(r"/h11/|httptools|llhttp")),
    ("driver", re.compile(r"gunrunner/protocols/(http11|httptools_driver|framing|chunk_\w+)\.py")),
    ("core", re.compile(r"gunrunner/protocols/")),
    ("bridge", re.compile(r"gunrunner/apps/")),
    ("loop", re.compile(r"asyncio/|uvloop|selectors\.py|threading\.py|concurrent/")),
]
# libc wrappers of the system calls a server makes per request.
SYSCALL = re.compile(
    r"^(__libc_)?(send|sendmsg|sendto|write|writev|recv|recvfrom|recvmsg|read|readv|"
    r"epoll_wait|epoll_ctl|accept4?|close|futex|__lll_\w+|pthread_cond_\w+|syscall|"
    r"__GI___\w+|___pthread_\w+|sem_\w+)\b"
)
ORDER = ["parser", "driver", "core", "bridge", "app", "loop", "syscalls", "other"]


def classify(stack: list[str]) -> str:
    """The layer of one sample; `stack` runs from the root to the leaf."""
    for frame in reversed(stack):
        name = frame.split(" (", 1)[0].strip()
        if SYSCALL.match(name) and ".py:" not in frame:
            return "syscalls"
        for layer, pattern in LAYERS:
            if pattern.search(frame):
                return layer
    return "other"


def read_samples(path: Path) -> collections.Counter[str]:
    """py-spy's raw (collapsed) output: "frame;frame;... count" per line."""
    layers: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            layers[classify(stack.split(";"))] += int(count)
    return layers


def server_argv(args: argparse.Namespace, port: int) -> list[str]:
    return [sys.executable, "-m", "gunrunner", APPS[args.interface], "--bind",
            f"{LOOPBACK}:{port}", "--workers", "1", "--interface", args.interface,
            "--http", args.http, "--loop", args.loop, "--log-level", "warning"]  # fmt: skip


def start(name: str, argv: list[str], port: int) -> ServerProcess:
    env = {"PYTHONPATH": str(REPO / "benchmarks" / "apps")}
    server = ServerProcess(name, pinned(SERVER_CPU, argv, True), port, env=env)
    server.start()
    server.wait_ready()
    return server


def sample(args: argparse.Namespace) -> None:
    if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
        sys.exit("py-spy not found: pip install py-spy")
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    port = free_port()
    server = start("gunrunner", server_argv(args, port), port)
    try:
        plain = run_wrk(port, args.duration, args.connections, True)  # without the sampler
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "samples.txt"
            record = subprocess.Popen(
                pinned(LOAD_CPU, [spy, "record", "--pid", str(server.pid), "--native",
                       "--rate", "997", "--format", "raw", "--duration",
                       str(args.duration), "--output", str(out)], True),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                result = run_wrk(port, args.duration, args.connections, True)
            finally:
                _, spy_errors = record.communicate(timeout=args.duration + 30)
            if not out.exists():
                sys.exit(f"py-spy wrote nothing: {spy_errors.strip()}")
            layers = read_samples(out)
            if args.keep:
                shutil.copy(out, args.keep)
    finally:
        server.stop()
    total = sum(layers.values())
    if not total:
        sys.exit("py-spy recorded no samples")
    per_request = 1e6 / plain.rps
    print(f"{args.http}/{args.loop} {args.interface}: {plain.rps:.0f} req/s "
          f"({per_request:.1f} us per request; {result.rps:.0f} under py-spy), "
          f"{total} samples")  # fmt: skip
    for layer in ORDER:
        share = layers[layer] / total
        print(f"  {layer:9s} {share:6.1%}  {share * per_request:6.1f} us")


def count_calls(args: argparse.Namespace) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "calls.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(out), *server_argv(args, port)[1:]]
        server = start("gunrunner (cProfile)", argv, port)
        try:
            result = run_wrk(port, args.duration, args.connections, True)
            os.kill(server.pid, signal.SIGINT)  # a fast stop: cProfile writes on exit
            deadline = time.monotonic() + 30
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            server.stop()
        stats = pstats.Stats(str(out))
    requests = result.requests
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[1] for entry in raw.values())
    print(f"{args.http}/{args.loop} {args.interface}: {requests} requests under cProfile, "
          f"{total / requests:.1f} function calls per request")  # fmt: skip
    rows = sorted(raw.items(), key=lambda item: -item[1][1])[: args.top]
    for (path, line, name), entry in rows:
        where = path.replace(str(REPO) + "/", "").split("site-packages/")[-1]
        print(f"  {entry[1] / requests:6.2f}  {name} ({where}:{line})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", default="httptools", choices=("h11", "httptools"))
    parser.add_argument("--loop", default="uvloop", choices=("asyncio", "uvloop"))
    parser.add_argument("--interface", default="asgi", choices=("asgi", "wsgi"))
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--calls", action="store_true", help="cProfile call counts instead")
    parser.add_argument("--keep", help="copy py-spy's raw samples to this file")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    (count_calls if args.calls else sample)(args)


if __name__ == "__main__":
    main()
