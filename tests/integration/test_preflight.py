"""One preflight for start, --check-config and HUP; every worker exit says why; CLI habits.

Each test here reproduces a failure a new user met (issue #9) on the real command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, http_get, running, start
from tests.integration.test_cli import run_cli

# -- one preflight ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "module"), [("loop", "uvloop"), ("http", "httptools")], ids=["loop", "http"]
)
def test_fast_module_missing_is_refused_before_any_fork(
    tmp_path: Path, option: str, module: str
) -> None:
    """--loop uvloop without uvloop (or --http httptools without httptools): exit 2 at
    once, naming the option (was: an endless respawn loop that never said why).

    The module is hidden from the server whether it is installed or not: a
    sitecustomize.py on PYTHONPATH makes its import fail as a missing module does.
    """
    (tmp_path / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    server = start(
        "tests.apps.basic:wsgi_pid",
        "-w",
        "2",
        f"--{option}",
        module,
        wait=False,
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])},
    )
    try:
        assert server.wait_exit(20) == 2, server.log()
    finally:
        server.stop()  # and no worker left behind, had any been started
    assert f'{option} = "{module}" but {module} is not installed' in server.log()
    assert "started worker" not in server.log()


def test_hup_with_a_bad_config_keeps_the_running_workers(tmp_path: Path) -> None:
    """A HUP whose new file breaks a semantic check keeps the old workers and config, with
    one ERROR line naming the file, the key and the reason; a fixed file then reloads."""
    conf = tmp_path / "g.toml"
    conf.write_text('app = "tests.apps.basic:wsgi_pid"\nworkers = 2\n')
    with running("--config", str(conf), ready=2) as server:
        before = sorted(server.workers())
        conf.write_text(
            'app = "tests.apps.basic:wsgi_pid"\nworkers = 2\nforwarded_allow_ips = ["bogus"]\n'
        )
        server.send_signal(signal.SIGHUP)
        line = server.wait_for(r"ERROR .*SIGHUP refused.*").group(0)
        assert str(conf) in line and "forwarded_allow_ips" in line and '"bogus"' in line, line
        assert "keeping the running configuration and workers" in line
        assert sorted(server.workers()) == before
        assert http_get(server.url).status_code == 200
        assert "started worker" not in server.log().split("SIGHUP refused")[1]
        conf.write_text('app = "tests.apps.basic:wsgi_pid"\nworkers = 2\n')
        server.send_signal(signal.SIGHUP)
        server.wait_for(r"restart complete: 2 workers serving")
        # The old workers were told to drain when their successors took over: they go.
        server.wait_for(r"replaced worker \d+ \(slot \d\) exited with code 0", count=2)
        assert not set(server.workers()) & set(before)


def test_check_config_names_a_missing_log_directory_and_writes_nothing(tmp_path: Path) -> None:
    """--check-config on a file whose log directory is missing: exit 2 with the file and
    the key, no traceback; where the directory exists, no log file is created."""
    conf = tmp_path / "production.toml"
    missing = tmp_path / "no-such-dir" / "error.log"
    conf.write_text(
        f'app = "tests.apps.basic:wsgi_pid"\nlog_file = "{missing}"\n'
        f'access_log = "{tmp_path / "also-missing" / "access.log"}"\n'
    )
    result = run_cli("--config", str(conf), "--check-config")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{conf}: log_file: directory {missing.parent} does not exist" in result.stderr
    assert "access_log: directory" in result.stderr  # every problem, not just the first
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    conf.write_text(
        f'app = "tests.apps.basic:wsgi_pid"\nlog_file = "{log_dir / "error.log"}"\n'
        f'access_log = "{log_dir / "access.log"}"\npidfile = "{log_dir / "g.pid"}"\n'
        f'bind = ["unix:{tmp_path / "g.sock"}", "127.0.0.1:0"]\n'
    )
    result = run_cli("--config", str(conf), "--check-config")
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout and "imports as WSGI" in result.stdout
    assert list(log_dir.iterdir()) == []
    assert not (tmp_path / "g.sock").exists()


def test_check_config_of_the_shipped_production_file_says_what_is_wrong() -> None:
    """The command conf/production.toml recommends: a clear verdict, never a traceback."""
    result = run_cli("--config", "conf/production.toml", "--check-config")
    assert "Traceback" not in result.stderr + result.stdout
    if result.returncode != 0:
        assert result.stderr.startswith("gunrunner: "), result.stderr
        assert "conf/production.toml" in result.stderr or "myproject" in result.stderr


def test_check_config_refuses_a_bind_in_use() -> None:
    """--check-config probes TCP binds (and leaves nothing bound)."""
    with running("tests.apps.basic:wsgi_pid", ready=1) as server:
        result = run_cli(
            "tests.apps.basic:wsgi_pid", "--check-config", "--bind", f"127.0.0.1:{server.port}"
        )
        assert result.returncode == 1, result.stderr
        assert "address already in use" in result.stderr


# -- the app argument --------------------------------------------------------------------


def test_a_factory_named_without_factory_is_refused_with_a_hint() -> None:
    """mod:create_app without --factory: a clear load error (was: "WSGI", then 500s)."""
    result = run_cli("tests.apps.factories:create_app", "--check-config")
    assert result.returncode == 4, result.stderr
    assert "takes no arguments" in result.stderr
    assert "--factory" in result.stderr and '"tests.apps.factories:create_app()"' in result.stderr
    result = run_cli("tests.apps.factories:Application", "--check-config")
    assert result.returncode == 4 and "looks like an app factory" in result.stderr


@pytest.mark.parametrize(
    "args",
    [("tests.apps.factories:create_app()",), ("tests.apps.factories:create_app", "--factory")],
    ids=["parentheses", "flag"],
)
def test_module_factory_parentheses_work_like_factory(args: tuple[str, ...]) -> None:
    with running(*args, ready=1) as server:
        assert http_get(server.url).text == "made by the factory"


def test_factory_arguments_are_refused() -> None:
    result = run_cli("tests.apps.factories:create_app('x')", "--check-config")
    assert result.returncode == 4 and "arguments to the factory are not supported" in result.stderr


def test_access_log_flag_does_not_swallow_the_app() -> None:
    """`--access-log APP`: the bare flag (stdout), and APP is the app (was: "no app given")."""
    with running("--access-log", "examples.hello_wsgi:application", ready=1) as server:
        assert http_get(server.url).status_code == 200
        server.wait_for(r'"GET / HTTP/1.1" 200 ')


def test_unknown_flag_gets_a_did_you_mean() -> None:
    result = run_cli("--wokers", "4", "examples.hello_wsgi:application")
    assert result.returncode == 2
    assert result.stderr.strip() == "gunrunner: unknown option --wokers; did you mean --workers?"


# -- every exit has its reason -----------------------------------------------------------


def test_a_respawn_that_cannot_boot_says_why_and_backs_off(tmp_path: Path) -> None:
    """A respawned worker that cannot boot (its access log cannot be opened) reports why;
    the arbiter's line carries it, the retries back off and the others serve on."""
    access = tmp_path / "access.log"
    with running(
        "tests.apps.basic:wsgi_pid", "-w", "2", "--access-log", str(access), ready=2
    ) as server:
        victim = server.workers()[0]
        access.unlink()
        access.mkdir()  # the respawn cannot open its access log
        os.kill(victim, signal.SIGKILL)
        server.wait_for(
            r"ERROR .*could not boot; 1 other worker\(s\) serve on, retrying with backoff:\n"
            r"cannot open the access log .*access\.log: Is a directory"
        )
        server.wait_for(r"started worker \d+ \(slot 0\)", count=3)  # retried, once logged
        assert http_get(server.url).status_code == 200
        access.rmdir()
        server.wait_for(r"worker \d+ \(slot \d\) ready", count=3, timeout=20)


GATED_APP = """
import os, time
gate = os.environ["BOOT_GATE"]
deadline = time.monotonic() + 20
while not os.path.exists(gate) and time.monotonic() < deadline:
    time.sleep(0.01)
raise RuntimeError("database unreachable at db:5432")
"""


@pytest.mark.parametrize("reload", [False, True], ids=["plain", "reload"])
def test_a_boot_failure_during_a_stop(tmp_path: Path, reload: bool) -> None:
    """TERM while the workers boot, then their import fails: the stop goes on. Without
    --reload the start never succeeded, so the exit is 4 with the reason said once; with
    --reload (a dev server waiting for a fix) the exit is 0. Deterministic: the import
    waits for a gate the test opens after the stop began."""
    (tmp_path / "gated.py").write_text(GATED_APP)
    gate = tmp_path / "gate"
    args = ["gated:app", "--app-dir", str(tmp_path), "-w", "2"]
    if reload:
        args += ["--reload", "--reload-dirs", str(tmp_path)]
    server = start(*args, env={"BOOT_GATE": str(gate)})
    try:
        server.wait_for(r"started worker \d+ \(slot 1\)")
        server.workers()
        server.send_signal(signal.SIGTERM)
        server.wait_for(r"graceful stop: 2 worker\(s\) to stop")
        gate.touch()
        code = server.wait_exit(20)
        log = server.log()
        assert code == (0 if reload else 4), log
        assert log.count("RuntimeError: database unreachable at db:5432") == 1, log
        assert "could not boot before the stop" in log
    finally:
        server.stop()


# -- Ctrl-C -------------------------------------------------------------------------------


def test_ctrl_c_with_four_workers_is_short_and_true() -> None:
    """SIGINT to the whole process group (a terminal's Ctrl-C): no false "during the
    graceful stop" line, and at most two lines per worker plus the arbiter's."""
    with running("tests.apps.basic:wsgi_pid", "-w", "4", ready=4) as server:
        server.wait_for(r"serving WSGI app", count=4)  # each worker's line after "ready"
        before = len(server.log().splitlines())
        os.killpg(server.pid, signal.SIGINT)
        assert server.wait_exit(10) == 0, server.log()
        after = server.log().splitlines()[before:]
        assert not [line for line in after if "during the graceful stop" in line], after
        assert len(after) <= 1 + 2 * 4, "\n".join(after)
        assert sum("stopped after" in line for line in after) == 4, "\n".join(after)


def _has(module: str) -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, check=False
    )
    return probe.returncode == 0
