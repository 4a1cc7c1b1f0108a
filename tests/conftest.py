"""Session-wide clean-up for the test suite."""

from __future__ import annotations

import contextlib

import pytest

from tests.helpers import CREATED_LOGS


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the log files of the servers the tests started."""
    for path in CREATED_LOGS:
        with contextlib.suppress(OSError):
            path.unlink()
