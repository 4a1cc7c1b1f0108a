"""gunrunner (h11 and httptools drivers) side by side with its peers, every workload, one run.

    python benchmarks/side_by_side.py [--rounds 5] [--duration 5] [--scenarios hello,ws]
        [--only gunrunner,uvicorn] [--json FILE] [--chart PNG]

Rules:
1. One worker per server, pinned to CPU 0 (taskset); the load generator pinned to CPU 1.
2. A fresh server for every measurement: start, wait until GET / answers 200, check
   it answers the scenario right (probes.py), warm up, measure, stop (by PID, its
   process group).
3. Rounds are interleaved: each round measures every (scenario, server) pair once, and
   every other round runs the order reversed, so drift on a shared machine and the
   position in the round hit every server alike. The median round is reported.
4. A pair that fails (no start, died, generator error) is reported with the reason and
   left out of later rounds; the others carry on. Exit status 1 when any pair failed.
5. No server outlives the script: servers stop in `finally`, also on Ctrl-C, SIGTERM or
   SIGHUP (benchlib.stop_all).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import report
import scenarios as scenario_table
import servers as server_table
from benchlib import (
    REPO,
    SERVER_CPU,
    BenchError,
    ServerProcess,
    can_pin,
    free_port,
    pinned,
    raise_on_sigterm,
    stop_all,
)
from chart import write_chart
from loads import LoadResult
from scenarios import Scenario
from servers import ServerSpec

DEFAULT_CHART = REPO / "benchmarks" / "results" / "side_by_side.png"
START_SECONDS = 2  # rough per-measurement cost of starting and stopping, for the estimate


def measure(sc: Scenario, spec: ServerSpec, args: argparse.Namespace, pin: bool) -> LoadResult:
    """Rule 2: one fresh server, its answer checked, one warm-up, one measured load."""
    port = free_port()
    argv = pinned(SERVER_CPU, spec.argv(port, sc.kind), pin)
    name = f"{spec.name} ({sc.name})"
    with ServerProcess(name, argv, port, env=server_table.ENV) as server:
        server.wait_ready()
        if sc.probe is not None:
            try:
                sc.probe(port)
            except (BenchError, OSError) as exc:
                raise BenchError(f"{name}: {exc}") from exc
        if sc.separate_warmup and args.warmup > 0:
            sc.load(port, args.warmup, args.connections, pin, 0)
        result = sc.load(port, args.duration, args.connections, pin, args.warmup)
        if server.proc is not None and server.proc.poll() is not None:
            raise BenchError(f"{name} died during the run:\n{server.output_tail()}")
        return result


def plan(scs: list[Scenario], specs: list[ServerSpec]) -> list[tuple[Scenario, ServerSpec]]:
    return [(sc, spec) for sc in scs for spec in specs if sc.kind in spec.kinds]


def run_rounds(
    pairs: list[tuple[Scenario, ServerSpec]], args: argparse.Namespace, pin: bool
) -> tuple[report.Runs, dict[str, str]]:
    """Rule 3 and 4."""
    runs: report.Runs = {}
    for sc, spec in pairs:
        runs.setdefault(sc.name, {})[spec.name] = []
    failed: dict[str, str] = {}
    for rnd in range(args.rounds):
        order = pairs if rnd % 2 == 0 else pairs[::-1]
        for sc, spec in order:
            key = f"{sc.name}/{spec.name}"
            if key in failed:
                continue
            tag = f"round {rnd + 1}/{args.rounds} {sc.name:<12} {spec.name:<22}"
            try:
                res = measure(sc, spec, args, pin)
            except BenchError as exc:
                failed[key] = str(exc)
                print(f"{tag} FAILED: {exc}", flush=True)
                continue
            runs[sc.name][spec.name].append(res)
            errors = f"  errors {res.errors} {res.detail}" if res.errors else ""
            print(
                f"{tag} {res.rps:>9.0f} {sc.unit:<6} p50 {report.fmt_ms(res.p50_ms):>8}"
                f"  p99 {report.fmt_ms(res.p99_ms):>8}{errors}",
                flush=True,
            )
    return runs, failed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median reported)")
    p.add_argument("--duration", type=int, default=5, help="measured seconds per run")
    p.add_argument("--warmup", type=int, default=2, help="seconds of load before measuring")
    p.add_argument("--connections", type=int, default=50, help="concurrent connections")
    p.add_argument(
        "--scenarios",
        default=None,
        help="comma list of scenario names or prefixes, or `all`"
        f" (without it: {', '.join(scenario_table.DEFAULT)};"
        f" all: {', '.join(s.name for s in scenario_table.ALL)})",
    )
    p.add_argument("--only", default=None, help="comma list of server names or prefixes")
    p.add_argument("--gunicorn-threads", type=int, default=4, help="gunicorn gthread --threads")
    p.add_argument(
        "--gunrunner-args", default="", help="extra options for both gunrunner servers, quoted"
    )
    p.add_argument("--json", default=None, metavar="FILE", help="write every run and the summary")
    p.add_argument("--chart", default=str(DEFAULT_CHART), metavar="PNG", help="chart path")
    p.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    args = p.parse_args(argv)
    if min(args.rounds, args.duration, args.connections) < 1 or args.warmup < 0:
        p.error("--rounds, --duration and --connections must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_sigterm()
    if shutil.which("wrk") is None:
        print("wrk not found on PATH (apt-get install wrk)", file=sys.stderr)
        return 2
    scs = scenario_table.select(args.scenarios)
    wanted = server_table.select(
        server_table.all_specs(shlex.split(args.gunrunner_args), args.gunicorn_threads), args.only
    )
    specs, skipped = server_table.available(wanted)
    pairs = plan(scs, specs)
    if not pairs:
        print("nothing to benchmark (no server serves these scenarios)", file=sys.stderr)
        return 2
    pin = can_pin()
    estimate = len(pairs) * args.rounds * (args.duration + args.warmup + START_SECONDS)
    print(
        f"{len(pairs)} (scenario, server) pairs x {args.rounds} rounds, {args.duration} s each"
        f" (+{args.warmup} s warm-up), {args.connections} connections,"
        f" {'server on CPU 0, load on CPU 1' if pin else 'UNPINNED'};"
        f" about {estimate / 60:.0f} min. Load average now: {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    started, load_before = time.monotonic(), os.getloadavg()[0]
    try:
        runs, failed = run_rounds(pairs, args, pin)
    finally:
        stop_all()
    summary = report.summarize_all(runs)
    ratios = report.ratios(summary)
    targets = report.check_targets(ratios)
    report.print_table(scs, specs, summary, failed)
    report.print_ratios(scs, ratios)
    report.print_targets(targets)
    load_after = os.getloadavg()[0]
    print(f"\ntook {(time.monotonic() - started) / 60:.1f} min; load average now {load_after:.2f}")
    versions = report.environment()
    if not args.no_chart:
        subtitle = (
            f"median of {args.rounds} round(s) x {args.duration} s, {args.connections} connections;"
            f" gunrunner {versions['gunrunner']}, uvicorn {versions['uvicorn']},"
            f" granian {versions['granian']}, gunicorn {versions['gunicorn']},"
            f" hypercorn {versions['hypercorn']}"
        )
        write_chart(Path(args.chart), scs, specs, summary, subtitle)
    if args.json:
        data: dict[str, Any] = {
            "config": {**vars(args), "pinned": pin},
            "load_average": {"start": load_before, "end": load_after},
            "versions": versions,
            "servers": {
                s.name: {"note": s.note, "argv": {k: s.argv(0, k) for k in sorted(s.kinds)}}
                for s in specs
            },
            "skipped": skipped,
            "runs": runs,
            "summary": summary,
            "ratios": ratios,
            "targets": targets,
            "failed": failed,
        }
        report.write_json(args.json, data)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # run_rounds' `finally` and the `with ServerProcess` blocks stopped the servers.
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
