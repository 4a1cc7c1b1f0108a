"""Turn the rounds into numbers: medians per server, ratios, the issue's targets, JSON.

Rules:
1. A server's figure is the median over its rounds (req/s, p50 and p99 each the median
   of the rounds); errors are summed over all rounds; min-max req/s is kept as the noise
   gauge: when two servers' spreads overlap, their ratio says little.
2. Ratios are median over median, within one scenario of one run, ours over a peer;
   never across runs or machines.
3. Targets are those of issue #10 and are reported, not asserted.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import asdict, dataclass
from typing import Any

from loads import LoadResult
from scenarios import Scenario
from servers import ServerSpec

# scenario name -> server name -> one result per round
Runs = dict[str, dict[str, list[LoadResult]]]


@dataclass(frozen=True)
class Summary:
    rps: float
    rps_min: float
    rps_max: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    rounds: int

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


@dataclass(frozen=True)
class Target:
    scenario: str
    ours: str
    peer: str
    at_least: float


# Issue #10, "Targets" (Rule 3).
TARGETS = (
    Target("hello-asgi", "gunrunner-httptools", "uvicorn-httptools", 1.1),
    Target("hello-asgi", "gunrunner-httptools", "granian", 1.0),
    Target("hello-wsgi", "gunrunner-httptools", "gunicorn-gthread", 2.0),
    Target("hello-wsgi", "gunrunner-httptools", "uvicorn-wsgi", 1.5),
    Target("close-asgi", "gunrunner-httptools", "uvicorn-httptools", 1.2),
    Target("64k-asgi", "gunrunner-httptools", "uvicorn-httptools", 1.0),
    Target("upload-asgi", "gunrunner-httptools", "uvicorn-httptools", 1.0),
    Target("ws-echo", "gunrunner-httptools", "granian", 1.0),
    Target("ws-echo", "gunrunner-httptools", "uvicorn-ws-sansio", 0.8),
    Target("hello-asgi", "gunrunner-h11", "uvicorn-h11", 1.2),
    Target("hello-wsgi", "gunrunner-h11", "gunicorn-gthread", 1.5),
)


def summarize(runs: list[LoadResult]) -> Summary:
    return Summary(
        rps=statistics.median(r.rps for r in runs),
        rps_min=min(r.rps for r in runs),
        rps_max=max(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
        rounds=len(runs),
    )


def summarize_all(runs: Runs) -> dict[str, dict[str, Summary]]:
    return {
        scenario: {server: summarize(rs) for server, rs in by_server.items() if rs}
        for scenario, by_server in runs.items()
    }


def ratios(summary: dict[str, dict[str, Summary]]) -> dict[str, dict[str, dict[str, float]]]:
    """scenario -> our server -> peer -> ours/peer (Rule 2)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for scenario, by_server in summary.items():
        ours = [n for n in by_server if n.startswith("gunrunner")]
        peers = [n for n in by_server if not n.startswith("gunrunner")]
        out[scenario] = {
            o: {p: by_server[o].rps / by_server[p].rps for p in peers if by_server[p].rps}
            for o in ours
        }
    return out


def fmt_ms(ms: float) -> str:
    return f"{ms * 1000:.0f} us" if ms < 1 else f"{ms:.2f} ms"


def print_table(
    scenarios: list[Scenario],
    specs: list[ServerSpec],
    summary: dict[str, dict[str, Summary]],
    failed: dict[str, str],
) -> None:
    print()
    print("| scenario | server | rate (median) | p50 | p99 | errors | rate min-max |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for sc in scenarios:
        for spec in specs:
            if sc.kind not in spec.kinds:
                continue
            key = f"{sc.name}/{spec.name}"
            s = summary.get(sc.name, {}).get(spec.name)
            if s is None:
                reason = failed.get(key, "no result").splitlines()[0][:80]
                print(f"| {sc.name} | {spec.name} | failed: {reason} | | | | |")
                continue
            print(
                f"| {sc.name} | {spec.name} | {s.rps:.0f} {sc.unit} | {fmt_ms(s.p50_ms)}"
                f" | {fmt_ms(s.p99_ms)} | {s.errors} | {s.rps_min:.0f}-{s.rps_max:.0f} |"
            )


def print_ratios(scenarios: list[Scenario], table: dict[str, dict[str, dict[str, float]]]) -> None:
    print()
    print("| scenario | gunrunner | ratio to each peer (median rate over median rate) |")
    print("|---|---|---|")
    for sc in scenarios:
        for ours, peers in table.get(sc.name, {}).items():
            cells = ", ".join(f"{r:.2f}x {p}" for p, r in peers.items()) or "no peer result"
            print(f"| {sc.name} | {ours} | {cells} |")


def check_targets(table: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """Each target with its measured ratio, or None when a server did not run."""
    checked = []
    for t in TARGETS:
        ratio = table.get(t.scenario, {}).get(t.ours, {}).get(t.peer)
        checked.append(
            {**asdict(t), "ratio": ratio, "met": None if ratio is None else ratio >= t.at_least}
        )
    return checked


def print_targets(checked: list[dict[str, Any]]) -> None:
    print()
    print("Targets of issue #10 (ratios from this run):")
    for t in checked:
        verdict = (
            "not measured"
            if t["ratio"] is None
            else f"{t['ratio']:.2f}x, {'met' if t['met'] else 'NOT met'}"
        )
        print(f"  {t['scenario']:<12} {t['ours']} >= {t['at_least']:.1f}x {t['peer']}: {verdict}")


def write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=_jsonable)
    print(f"wrote {path}")


def _jsonable(obj: object) -> Any:
    if isinstance(obj, (LoadResult, Summary)):
        return {**asdict(obj), "errors": obj.errors}
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def environment() -> dict[str, str]:
    """Versions of the servers, so a JSON file says what it measured."""
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for dist in ("gunrunner", "uvicorn", "granian", "gunicorn", "hypercorn", "httptools",
                 "uvloop", "h11", "wsproto", "websockets"):  # fmt: skip
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions
