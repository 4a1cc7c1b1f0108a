"""Server hooks (hooks = "module") and proc_name, on the real command (#12)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.helpers import http_get, running, wait_until
from tests.integration.test_cli import run_cli

APP = "tests.apps.basic:wsgi_pid"
HOOKS = "tests.apps.hooks_recorder"


def calls(path: Path) -> list[tuple[str, int, str]]:
    if not path.exists():
        return []
    return [(n, int(p), s) for n, p, s in (line.split() for line in path.read_text().splitlines())]


def test_every_hook_runs_in_its_process_at_its_moment(tmp_path: Path) -> None:
    record = tmp_path / "hooks.log"
    env = {"HOOKS_LOG": str(record)}
    with running(APP, "--workers", "2", "--hooks", HOOKS, env=env, ready=2) as server:
        arbiter, workers = server.pid, set(server.workers())
        assert wait_until(lambda: any(c[0] == "when_ready" for c in calls(record)), 5)
        names = [c[0] for c in calls(record)]
        assert names[0] == "on_starting" and names[-1] == "when_ready"
        for name in ("post_fork", "post_worker_init"):
            mine = [c for c in calls(record) if c[0] == name]
            assert {c[1] for c in mine} == workers
            assert sorted(c[2] for c in mine) == ["0", "1"]
        for name in ("on_starting", "when_ready"):
            assert [c[1] for c in calls(record) if c[0] == name] == [arbiter]
        # Each worker ran post_fork before post_worker_init.
        for pid in workers:
            order = [c[0] for c in calls(record) if c[1] == pid]
            assert order == ["post_fork", "post_worker_init"]
        server.send_signal(signal.SIGHUP)
        server.wait_for("restart complete")
        assert [c[1] for c in calls(record) if c[0] == "on_reload"] == [arbiter]
        assert wait_until(
            lambda: {c[1] for c in calls(record) if c[0] == "worker_exit"} == workers, 10
        )
        assert int(http_get(server.url).text) in set(server.workers())
    final = calls(record)
    assert final[-1] == ("on_exit", arbiter, "-")
    exits = {c[1] for c in final if c[0] == "worker_exit"}
    assert exits == {c[1] for c in final if c[0] == "post_fork"}  # every worker, at its end


def test_a_failing_post_fork_fails_the_boot_with_exit_3(tmp_path: Path) -> None:
    env = {"HOOKS_LOG": str(tmp_path / "hooks.log"), "HOOKS_FAIL": "post_fork"}
    result = run_cli(APP, "--workers", "2", "--hooks", HOOKS, env=env)
    assert result.returncode == 3, result.stderr
    assert "hook post_fork (tests.apps.hooks_recorder) failed" in result.stderr
    assert "RuntimeError: post_fork could not reach the database" in result.stderr
    assert "Traceback" in result.stderr
    assert "serving WSGI app" not in result.stderr


def test_a_failing_arbiter_hook_is_logged_and_the_server_serves(tmp_path: Path) -> None:
    env = {"HOOKS_LOG": str(tmp_path / "hooks.log"), "HOOKS_FAIL": "on_starting"}
    with running(APP, "--workers", "2", "--hooks", HOOKS, env=env, ready=2) as server:
        log = server.log()
        assert "ERROR gunrunner.hooks: hook on_starting (tests.apps.hooks_recorder) failed" in log
        assert "RuntimeError: on_starting could not reach the database" in log
        assert int(http_get(server.url).text) in set(server.workers())


def test_a_hooks_module_that_cannot_be_used_exits_2() -> None:
    result = run_cli(APP, "--hooks", "tests.apps.no_such_hooks_module")
    assert result.returncode == 2
    assert "hooks" in result.stderr and "tests.apps.no_such_hooks_module" in result.stderr
    checked = run_cli(APP, "--hooks", "tests.apps.no_such_hooks_module", "--check-config")
    assert checked.returncode == 2 and "tests.apps.no_such_hooks_module" in checked.stderr


def test_proc_name_titles_the_processes() -> None:
    with running(APP, "--workers", "2", "--proc-name", "shop", ready=2) as server:

        def title(pid: int) -> str:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()

        assert title(server.pid) == "shop: arbiter"
        assert sorted(title(pid) for pid in server.workers()) == [
            "shop: worker slot=0",
            "shop: worker slot=1",
        ]
        assert Path(f"/proc/{server.pid}/comm").read_text().strip() == "shop: arbiter"
