"""Draw the side-by-side results as a PNG: one panel of bars per scenario.

Rules:
1. One panel per scenario with its own scale: req/s of a hello world and of a 1 MiB
   upload differ by 30x, and on one axis the small ones would vanish.
2. Every server keeps its colour across panels; gunrunner's drivers are the strong
   colours, peers muted, and each bar is labelled with its value and the min-max spread
   of its rounds as an error bar.
3. matplotlib is optional (`pip install gunrunner[bench]`): without it there is no chart
   and a line that says so, and the rest of the run is unaffected.
"""

from __future__ import annotations

import math
from pathlib import Path

from report import Summary
from scenarios import Scenario
from servers import ServerSpec

OURS = {"gunrunner-h11": "#1f77b4", "gunrunner-httptools": "#d62728"}
PEER_COLOURS = ("#9e9e9e", "#bcbd22", "#8c8c5a", "#17becf", "#c49c94", "#98df8a", "#c5b0d5",
                "#f7b6d2", "#ffbb78", "#aec7e8", "#7f7f7f", "#dbdb8d")  # fmt: skip


def colours(specs: list[ServerSpec]) -> dict[str, str]:
    peers = [s.name for s in specs if s.name not in OURS]
    picked = dict(OURS)
    for i, name in enumerate(peers):
        picked[name] = PEER_COLOURS[i % len(PEER_COLOURS)]
    return picked


def write_chart(
    path: Path,
    scenarios: list[Scenario],
    specs: list[ServerSpec],
    summary: dict[str, dict[str, Summary]],
    subtitle: str,
) -> bool:
    """Write the PNG; False (and a line) when matplotlib is missing or nothing ran."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: matplotlib is not installed (pip install 'gunrunner[bench]')")
        return False
    shown = [sc for sc in scenarios if summary.get(sc.name)]
    if not shown:
        print("no chart: no scenario has results")
        return False
    colour = colours(specs)
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, sc in zip(axes.flat, shown, strict=False):
        names = [s.name for s in specs if s.name in summary[sc.name]]
        vals = [summary[sc.name][n].rps for n in names]
        spread = [
            [v - summary[sc.name][n].rps_min for n, v in zip(names, vals, strict=True)],
            [summary[sc.name][n].rps_max - v for n, v in zip(names, vals, strict=True)],
        ]
        ys = range(len(names))
        ax.barh(ys, vals, xerr=spread, color=[colour[n] for n in names],
                error_kw={"elinewidth": 0.8, "capsize": 2})  # fmt: skip
        ax.set_yticks(list(ys), names, fontsize=8)
        ax.invert_yaxis()  # the table's order, top down
        ax.set_title(sc.title, fontsize=10)
        ax.set_xlabel(sc.unit, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlim(0, max(vals) * 1.25)
        for y, v in zip(ys, vals, strict=True):
            ax.text(v, y, f" {v:,.0f}", va="center", fontsize=7)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle(f"one worker pinned to one core, load on the other\n{subtitle}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return True
