"""The HTTP drivers every conformance and property test runs against.

h11 on asyncio's loop is the reference; httptools on uvloop (`pip install
gunrunner[fast]`, installed by .ci/run) must give the same answer to every case.
"""

from __future__ import annotations

import importlib.util

import pytest

H11 = ("--http", "h11", "--loop", "asyncio")
FAST = ("--http", "httptools", "--loop", "uvloop")
FAST_INSTALLED = all(importlib.util.find_spec(name) for name in ("httptools", "uvloop"))

NOT_INSTALLED = "httptools and uvloop are not installed: pip install -e '.[fast]'"


def driver_params() -> list[object]:
    """pytest params of the driver options, ids "h11" and "fast"."""
    return [
        pytest.param(H11, id="h11"),
        pytest.param(
            FAST,
            id="fast",
            marks=pytest.mark.skipif(
                not FAST_INSTALLED,
                reason="httptools and uvloop not installed: pip install -e '.[fast]'",
            ),
        ),
    ]
