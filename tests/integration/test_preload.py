"""preload_app: the app is imported once in the arbiter, before fork (#12)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.helpers import http_get, running
from tests.integration.test_cli import run_cli

APP = "tests.apps.preload_app:wsgi"


def imported_and_served_by(url: str) -> tuple[int, int]:
    imported, served = http_get(url, headers={"Connection": "close"}).text.split()
    return int(imported), int(served)


def test_the_arbiter_imports_the_app_and_workers_share_it() -> None:
    with running(APP, "--workers", "2", "--preload-app", ready=2) as server:
        imported, served = imported_and_served_by(server.url)
        assert imported == server.pid
        assert served in server.workers()
        server.wait_for(r"\[arbiter \d+\] INFO .*preloaded WSGI app tests\.apps\.preload_app:wsgi")


def test_without_preload_each_worker_imports_it() -> None:
    with running(APP, "--workers", "2", ready=2) as server:
        imported, served = imported_and_served_by(server.url)
        assert imported == served != server.pid


def test_hup_with_preload_replaces_workers_on_the_code_loaded_at_start() -> None:
    with running(APP, "--workers", "2", "--preload-app", ready=2) as server:
        before = set(server.workers())
        server.send_signal(signal.SIGHUP)
        server.wait_for("preload_app is on: the new workers run the code loaded at start")
        server.wait_for("restart complete: 2 workers serving")
        imported, served = imported_and_served_by(server.url)
        assert imported == server.pid
        assert served in server.workers() and served not in before


def test_a_preload_that_fails_exits_4_before_any_worker() -> None:
    result = run_cli("tests.apps.broken_import:app", "--workers", "2", "--preload-app")
    assert result.returncode == 4, result.stderr
    assert "started worker" not in result.stderr
    assert "tests.apps.broken_import" in result.stderr


def test_preload_with_reload_is_refused() -> None:
    result = run_cli(APP, "--preload-app", "--reload")
    assert result.returncode == 2
    assert "preload_app: cannot be combined with reload" in result.stderr


def test_hup_that_changes_preload_or_hooks_says_restart(tmp_path: Path) -> None:
    """Options read only at start (preload_app, hooks, user, group): a HUP that changes
    one keeps the running value and says a restart applies it."""
    conf = tmp_path / "gunrunner.toml"
    conf.write_text(f'app = "{APP}"\nworkers = 2\npreload_app = true\n')
    with running("--config", str(conf), ready=2) as server:
        conf.write_text(f'app = "{APP}"\nworkers = 2\npreload_app = false\n')
        server.send_signal(signal.SIGHUP)
        server.wait_for(
            "WARNING .*preload_app changed in the config; restart gunrunner to apply it"
        )
        server.wait_for("restart complete")
        imported, _ = imported_and_served_by(server.url)
        assert imported == server.pid  # still preloaded
