"""Hello-world throughput: gunrunner vs uvicorn (h11) and gunicorn (gthread), measured with wrk.

Each server runs one worker pinned to CPU 0, wrk runs pinned to CPU 1, rounds are
interleaved (every server once per round) and the table shows the median round.

    python benchmarks/http_bench.py [--rounds 3] [--duration 5] [--only uvicorn,gunicorn]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from benchlib import (
    LOAD_CPU,
    LOOPBACK,
    SERVER_CPU,
    BenchError,
    ServerProcess,
    can_pin,
    free_port,
    module_available,
    pinned,
    raise_on_sigterm,
    stop_all,
)
from loads import LoadResult, run_wrk

WARMUP_SECONDS = 2
ASGI_APP = "examples.hello_asgi:app"
WSGI_APP = "examples.hello_wsgi:application"


@dataclass(frozen=True)
class ServerSpec:
    name: str
    interface: str
    module: str  # must be importable, else the server is skipped
    argv: Callable[[int], list[str]]  # port -> command line (without taskset)


def server_specs(args: argparse.Namespace) -> list[ServerSpec]:
    py = sys.executable
    gr_threads = [] if args.threads is None else ["--threads", str(args.threads)]
    gr_extra = shlex.split(args.gunrunner_args)
    return [
        ServerSpec(
            "gunrunner-asgi", "ASGI", "gunrunner.__main__",
            lambda port: [py, "-m", "gunrunner", ASGI_APP, "--bind", f"{LOOPBACK}:{port}",
                          "--workers", "1", "--log-level", "warning", *gr_extra],
        ),
        ServerSpec(
            "uvicorn-h11", "ASGI", "uvicorn",
            lambda port: [py, "-m", "uvicorn", ASGI_APP, "--http", "h11", "--loop", "asyncio",
                          "--workers", "1", "--host", LOOPBACK, "--port", str(port),
                          "--log-level", "warning", "--no-access-log"],
        ),
        ServerSpec(
            "gunrunner-wsgi", "WSGI", "gunrunner.__main__",
            lambda port: [py, "-m", "gunrunner", WSGI_APP, "--bind", f"{LOOPBACK}:{port}",
                          "--workers", "1", "--log-level", "warning", *gr_threads,
                          *gr_extra],
        ),
        ServerSpec(
            "gunicorn-gthread", "WSGI", "gunicorn",
            lambda port: [py, "-m", "gunicorn", WSGI_APP, "-k", "gthread",
                          "--threads", str(args.gunicorn_threads), "--workers", "1",
                          "-b", f"{LOOPBACK}:{port}", "--log-level", "warning"],
        ),
    ]  # fmt: skip


def select_specs(specs: list[ServerSpec], only: str | None) -> list[ServerSpec]:
    """--only takes names or prefixes: `uvicorn,gunicorn` or `gunrunner-asgi`."""
    if not only:
        return specs
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if not any(s.name.startswith(w) for s in specs)]
    if unknown:
        names = ", ".join(s.name for s in specs)
        raise SystemExit(f"--only: unknown server(s) {unknown}; choose from {names}")
    return [s for s in specs if any(s.name.startswith(w) for w in wanted)]


def available_specs(specs: list[ServerSpec]) -> list[ServerSpec]:
    """Drop servers whose module does not import, saying so."""
    ready = []
    for spec in specs:
        if module_available(spec.module):
            ready.append(spec)
        else:
            print(
                f"skip {spec.name}: module {spec.module!r} is not importable"
                f" (pip install {spec.module.split('.')[0]})"
            )
    return ready


def warn_uvloop(specs: list[ServerSpec]) -> None:
    """gunrunner's --loop auto picks uvloop, while uvicorn here runs plain asyncio."""
    if any(s.name == "gunrunner-asgi" for s in specs) and module_available("uvloop"):
        print(
            "note: uvloop is installed, so gunrunner-asgi runs on uvloop and"
            " uvicorn-h11 on asyncio; the ASGI ratio is not loop-for-loop"
        )


# --- measuring ------------------------------------------------------------------


def measure(spec: ServerSpec, args: argparse.Namespace, pin: bool) -> LoadResult:
    """Fresh server per run: start, wait for 200, warm up, measure, stop."""
    port = free_port()
    with ServerProcess(spec.name, pinned(SERVER_CPU, spec.argv(port), pin), port) as server:
        server.wait_ready()
        run_wrk(port, WARMUP_SECONDS, args.connections, pin)
        result = run_wrk(port, args.duration, args.connections, pin)
        if server.proc is not None and server.proc.poll() is not None:
            raise BenchError(f"{spec.name} died during the run:\n{server.output_tail()}")
        return result


def run_rounds(
    specs: list[ServerSpec], args: argparse.Namespace, pin: bool
) -> tuple[dict[str, list[LoadResult]], dict[str, str]]:
    """Interleave: each round runs every server once; a failing server drops out."""
    results: dict[str, list[LoadResult]] = {s.name: [] for s in specs}
    failed: dict[str, str] = {}
    for rnd in range(args.rounds):
        # Rotate the order each round so no server always runs first/last.
        shift = rnd % len(specs)
        for spec in specs[shift:] + specs[:shift]:
            if spec.name in failed:
                continue
            try:
                res = measure(spec, args, pin)
            except BenchError as exc:
                failed[spec.name] = str(exc)
                print(f"round {rnd + 1}/{args.rounds} {spec.name}: FAILED: {exc}", flush=True)
                continue
            results[spec.name].append(res)
            print(
                f"round {rnd + 1}/{args.rounds} {spec.name:<17} {res.rps:>10.0f} req/s"
                f"  p50 {fmt_ms(res.p50_ms)}  p99 {fmt_ms(res.p99_ms)}  errors {res.errors}",
                flush=True,
            )
    return results, failed


# --- reporting ------------------------------------------------------------------


def fmt_ms(ms: float) -> str:
    return f"{ms * 1000:.0f} us" if ms < 1 else f"{ms:.2f} ms"


def summarize(runs: list[LoadResult]) -> dict[str, Any]:
    return {
        "rps": statistics.median(r.rps for r in runs),
        "rps_min": min(r.rps for r in runs),
        "rps_max": max(r.rps for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "non_2xx": sum(r.non_2xx for r in runs),
        "socket_errors": sum(r.socket_errors for r in runs),
        "rounds": len(runs),
    }


def print_table(
    specs: list[ServerSpec], summary: dict[str, dict[str, Any]], failed: dict[str, str]
) -> None:
    print()
    print("| server | interface | req/s (median) | p50 | p99 | errors | req/s min-max |")
    print("|---|---|---:|---:|---:|---|---:|")
    for spec in specs:
        s = summary.get(spec.name)
        if s is None:
            reason = failed.get(spec.name, "no result").splitlines()[0]
            print(f"| {spec.name} | {spec.interface} | failed: {reason} | | | | |")
            continue
        errors = s["non_2xx"] + s["socket_errors"]
        err = f"{errors} (non-2xx {s['non_2xx']}, socket {s['socket_errors']})" if errors else "0"
        print(
            f"| {spec.name} | {spec.interface} | {s['rps']:.0f} | {fmt_ms(s['p50_ms'])}"
            f" | {fmt_ms(s['p99_ms'])} | {err} | {s['rps_min']:.0f}-{s['rps_max']:.0f} |"
        )
    print()
    for ours, peer, label in (
        ("gunrunner-asgi", "uvicorn-h11", "gunrunner ASGI / uvicorn-h11"),
        ("gunrunner-wsgi", "gunicorn-gthread", "gunrunner WSGI / gunicorn-gthread"),
    ):
        if ours in summary and peer in summary:
            print(f"{label} = {summary[ours]['rps'] / summary[peer]['rps']:.2f}")
        else:
            print(f"{label} = n/a (needs both servers)")


def write_json(
    path: str,
    args: argparse.Namespace,
    *,
    pin: bool,
    results: dict[str, list[LoadResult]],
    summary: dict[str, dict[str, Any]],
    failed: dict[str, str],
) -> None:
    data = {
        "config": {**vars(args), "pinned": pin, "warmup": WARMUP_SECONDS, "python": sys.executable},
        "runs": {name: [asdict(r) for r in runs] for name, runs in results.items()},
        "summary": summary,
        "failed": failed,
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    print(f"wrote {path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--duration", type=int, default=5, help="seconds per measured wrk run")
    p.add_argument("--connections", type=int, default=50, help="wrk keep-alive connections")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="gunrunner WSGI --threads (default: the server's default)",
    )
    p.add_argument("--gunicorn-threads", type=int, default=4, help="gunicorn gthread --threads")
    p.add_argument(
        "--gunrunner-args",
        default="",
        help='extra arguments for both gunrunner servers, e.g. "--access-log /tmp/a.log"',
    )
    p.add_argument(
        "--only", default=None, help="comma list of server names or prefixes, e.g. uvicorn,gunicorn"
    )
    p.add_argument("--json", default=None, metavar="FILE", help="write raw results here")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.connections < 1:
        p.error("--rounds, --duration and --connections must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_sigterm()
    if shutil.which("wrk") is None:
        print("wrk not found on PATH (apt-get install wrk)", file=sys.stderr)
        return 2
    specs = available_specs(select_specs(server_specs(args), args.only))
    if not specs:
        print("no servers to benchmark", file=sys.stderr)
        return 2
    pin = can_pin()
    warn_uvloop(specs)
    print(
        f"{len(specs)} servers x {args.rounds} rounds, {args.duration} s each"
        f" (+{WARMUP_SECONDS} s warm-up), {args.connections} connections,"
        f" {'server on CPU ' + SERVER_CPU + ', wrk on CPU ' + LOAD_CPU if pin else 'unpinned'}",
        flush=True,
    )
    try:
        results, failed = run_rounds(specs, args, pin)
    finally:
        stop_all()
    summary = {name: summarize(runs) for name, runs in results.items() if runs}
    print_table(specs, summary, failed)
    if args.json:
        write_json(args.json, args, pin=pin, results=results, summary=summary, failed=failed)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # The `with ServerProcess` blocks have already stopped the servers.
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
