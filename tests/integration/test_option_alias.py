"""A renamed option's old name still works end to end, and the server log says it is old."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import running
from tests.helpers.drivers import driver_params
from tests.helpers.wire import Client

APP = "tests.apps.basic:wsgi_pid"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("driver", driver_params())
def test_old_head_size_key_in_the_file_limits_and_warns(
    tmp_path: Path, driver: tuple[str, ...]
) -> None:
    """h11_max_incomplete_event_size = 1024 in the config file still limits the request
    head (a 2000-byte header value, far below the 16 KiB default, gets 431), and the
    log warns once that the key is deprecated, naming the file and the new key."""
    path = tmp_path / "gunrunner.toml"
    path.write_text("h11_max_incomplete_event_size = 1024\n")
    with running(APP, "--config", str(path), "--workers", "1", *driver, ready=1) as server:
        with Client.connect(server) as client:
            assert client.request("GET", "/", [("X-Pad", "a" * 500)]).status == 200
        with Client.connect(server) as client:
            client.send_refusable(
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 2000 + b"\r\n\r\n"
            )
            reply = client.expect_response()
            assert reply.status == 431, reply
            client.expect_close()
        warning = (
            f"WARNING gunrunner.config: h11_max_incomplete_event_size in {path} is "
            "deprecated; use limit_request_head_size"
        )
        assert server.log().count(warning) == 1, server.log()
