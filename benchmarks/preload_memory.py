"""Memory with and without preload_app, for an app that builds a large structure at import.

Starts gunrunner with N workers on a generated app module (about SIZE MiB of Python
objects made at import, like a big framework and its models), waits until every worker
is ready and has answered, then sums PSS (each shared page divided among the processes
that share it) and USS over the arbiter and its workers, from /proc/PID/smaps_rollup.

    python benchmarks/preload_memory.py [--workers 4] [--size 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

APP = """
import os
# About {size} MiB of small objects, made at import (models, tables, a framework).
TABLE = {{i: ("row-%d" % i, [i, i * 2, float(i)]) for i in range({rows})}}

def app(environ, start_response):
    body = str(len(TABLE)).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""
ROWS_PER_MIB = 2_700  # measured: one row of APP takes about 390 bytes


def memory(pid: int) -> tuple[int, int]:
    """(PSS, USS) of one process in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return fields["Pss"], fields["Private_Clean"] + fields["Private_Dirty"]


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def measure(directory: str, workers: int, preload: bool) -> tuple[int, int]:
    log_path = Path(directory) / "server.log"
    args = [sys.executable, "-m", "gunrunner", "big_app:app", "--bind", "127.0.0.1:0"]
    args += ["--workers", str(workers)] + (["--preload-app"] if preload else [])
    env = {**os.environ, "PYTHONPATH": directory}
    with open(log_path, "w") as log:
        server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while f"all {workers} workers ready" not in log_path.read_text():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        port = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log_path.read_text())
        assert port is not None
        for _ in range(workers * 4):  # every worker has served (and touched the table)
            urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/", timeout=10).read()
        time.sleep(1.0)
        pids = [server.pid, *children(server.pid)]
        sizes = [memory(pid) for pid in pids]
        return sum(p for p, _ in sizes), sum(u for _, u in sizes)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--size", type=int, default=100, help="MiB of objects the app makes")
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        rows = options.size * ROWS_PER_MIB
        (Path(directory) / "big_app.py").write_text(APP.format(size=options.size, rows=rows))
        results: dict[bool, list[tuple[int, int]]] = {False: [], True: []}
        for _ in range(options.rounds):
            for preload in (False, True):
                results[preload].append(measure(directory, options.workers, preload))
    print(f"{options.workers} workers, an app of about {options.size} MiB at import")
    print(f"{'preload_app':<12} {'PSS MiB':>9} {'USS MiB':>9}")
    for preload in (False, True):
        pss = statistics.median(p for p, _ in results[preload]) / 1024
        uss = statistics.median(u for _, u in results[preload]) / 1024
        print(f"{str(preload).lower():<12} {pss:>9.0f} {uss:>9.0f}")
    off = statistics.median(p for p, _ in results[False])
    on = statistics.median(p for p, _ in results[True])
    print(f"saved with preload_app: {(off - on) / 1024:.0f} MiB PSS ({1 - on / off:.0%})")


if __name__ == "__main__":
    main()
