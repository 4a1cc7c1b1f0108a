"""Session-wide clean-up for the test suite."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.helpers import CREATED_LOGS, drivers


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the log files of the servers the tests started."""
    for path in CREATED_LOGS:
        with contextlib.suppress(OSError):
            path.unlink()


@pytest.fixture(scope="module", params=drivers.driver_params())
def http_driver(request: pytest.FixtureRequest) -> Iterator[tuple[str, ...]]:
    """Every server the module starts runs on this driver (h11, then httptools).

    A module opts in with `pytestmark = pytest.mark.usefixtures("http_driver")`. A
    module-scoped fixture that starts a server must also take `http_driver` as an
    argument: pytest otherwise keeps that server across the change of driver.
    """
    option_args: tuple[str, ...] = request.param
    drivers.SERVER_ENV.clear()
    drivers.SERVER_ENV.update(drivers.DRIVER_ENV[option_args])
    try:
        yield option_args
    finally:
        drivers.SERVER_ENV.clear()
