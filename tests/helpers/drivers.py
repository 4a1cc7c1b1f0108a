"""The HTTP drivers the HTTP tests run against.

h11 on asyncio's loop is the reference; httptools on uvloop (`pip install
gunrunner[fast]`, installed by .ci/run) must give the same answer to every case.

Two ways to run a test on both:
- `driver_params()`: pytest params of the driver options, for a test or fixture that
  passes them to `running()` itself;
- `pytestmark = pytest.mark.usefixtures("http_driver")` in a module: every server the
  module starts runs on each driver in turn (tests/conftest.py sets `SERVER_ENV`, which
  `start()` puts in the server's environment; an explicit --http or --loop still wins).
"""

from __future__ import annotations

import importlib.util

import pytest

H11 = ("--http", "h11", "--loop", "asyncio")
FAST = ("--http", "httptools", "--loop", "uvloop")
FAST_INSTALLED = all(importlib.util.find_spec(name) for name in ("httptools", "uvloop"))

NOT_INSTALLED = "httptools and uvloop are not installed: pip install -e '.[fast]'"

# The environment of each driver, as options (GUNRUNNER_HTTP, GUNRUNNER_LOOP).
DRIVER_ENV = {
    H11: {"GUNRUNNER_HTTP": "h11", "GUNRUNNER_LOOP": "asyncio"},
    FAST: {"GUNRUNNER_HTTP": "httptools", "GUNRUNNER_LOOP": "uvloop"},
}
# What the `http_driver` fixture chose for the module now running; empty: the default.
SERVER_ENV: dict[str, str] = {}


def driver_params() -> list[object]:
    """pytest params of the driver options, ids "h11" and "fast"."""
    return [
        pytest.param(H11, id="h11"),
        pytest.param(
            FAST,
            id="fast",
            marks=pytest.mark.skipif(
                not FAST_INSTALLED,
                reason=NOT_INSTALLED,
            ),
        ),
    ]
