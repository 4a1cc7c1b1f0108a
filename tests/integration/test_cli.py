"""The real command line: precedence on a running server, and every startup error."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, http_get, running


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `python -m gunrunner ARGS` to completion."""
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GUNRUNNER_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gunrunner", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_workers_from_file_env_and_cli(tmp_path: Path) -> None:
    """The config file sets workers, env overrides it, the CLI overrides both."""
    conf = tmp_path / "g.toml"
    conf.write_text('app = "tests.apps.basic:wsgi_pid"\nworkers = 2\n')
    with running("--config", str(conf), ready=2) as server:
        assert len(server.workers()) == 2
    with running("--config", str(conf), env={"GUNRUNNER_WORKERS": "3"}, ready=3) as server:
        assert len(server.workers()) == 3
    with running(
        "--config", str(conf), "--workers", "1", env={"GUNRUNNER_WORKERS": "3"}, ready=1
    ) as server:
        assert server.workers() == []
        assert http_get(server.url).text == str(server.pid)


def test_print_config_shows_sources(tmp_path: Path) -> None:
    """--print-config prints TOML with the source of each value."""
    conf = tmp_path / "g.toml"
    conf.write_text("workers = 2\n")
    result = run_cli(
        "--config", str(conf), "--print-config", "--threads", "3", env={"GUNRUNNER_BACKLOG": "64"}
    )
    assert result.returncode == 0, result.stderr
    assert f"workers = 2  # {conf}" in result.stdout
    assert "threads = 3  # command line" in result.stdout
    assert "backlog = 64  # environment" in result.stdout
    assert "keepalive_timeout = 5.0  # default" in result.stdout


def test_check_config(tmp_path: Path) -> None:
    """--check-config validates config, binds and the app import, and exits."""
    ok = run_cli("examples.hello_wsgi:application", "--check-config", "--bind", "127.0.0.1:0")
    assert ok.returncode == 0, ok.stderr
    assert "configuration ok" in ok.stdout and "imports as WSGI" in ok.stdout
    bad = run_cli("examples.missing:app", "--check-config", "--bind", "127.0.0.1:0")
    assert bad.returncode == 4
    assert 'cannot import module "examples.missing"' in bad.stderr


def test_unknown_key_in_file(tmp_path: Path) -> None:
    """An unknown key exits 2 with the file, the key and the closest option."""
    conf = tmp_path / "g.toml"
    conf.write_text("keepalive = 3\n")
    result = run_cli("examples.hello_wsgi:application", "--config", str(conf))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"gunrunner: config error: {conf}: "
        'unknown key "keepalive"; did you mean "keepalive_timeout"?'
    )


def test_wrong_type_in_file(tmp_path: Path) -> None:
    """A wrong type exits 2 naming the key, what was expected and what was found."""
    conf = tmp_path / "g.toml"
    conf.write_text('threads = "many"\n')
    result = run_cli("examples.hello_wsgi:application", "--config", str(conf))
    assert result.returncode == 2
    assert "key \"threads\": expected an integer >= 1, got 'many' (string)" in result.stderr


def test_negative_workers_on_cli() -> None:
    """Negative workers is a config error naming the flag."""
    result = run_cli("examples.hello_wsgi:application", "--workers", "-1")
    assert result.returncode == 2
    assert '--workers: expected an integer or "auto" >= 0, got -1' in result.stderr


def test_bad_bind_values() -> None:
    """Malformed and unresolvable binds are one line each, exit 1, nothing started."""
    for bind, fragment in [
        ("127.0.0.1:99999", "is not a number from 0 to 65535"),
        ("::1:80", "IPv6 addresses need brackets"),
        ("no-such-host.invalid:80", "cannot resolve host"),
    ]:
        result = run_cli("examples.hello_wsgi:application", "--bind", bind, "--workers", "2")
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"gunrunner: cannot bind {bind}"), lines
        assert fragment in lines[0]


def test_port_in_use() -> None:
    """A port another process listens on is refused before any worker starts."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run_cli(
            "examples.hello_wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "4"
        )
    assert result.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}: address already in use" in result.stderr
    assert "started worker" not in result.stderr


def test_no_app_given() -> None:
    """Running without an app is a clear config error."""
    result = run_cli("--bind", "127.0.0.1:0")
    assert result.returncode == 2
    assert "no app given" in result.stderr


def test_workers_auto() -> None:
    """workers = auto starts one worker per usable CPU."""
    from gunrunner._cpus import available_cpus

    expected = available_cpus()
    with running("tests.apps.basic:wsgi_pid", "--workers", "auto", ready=expected) as server:
        assert len(server.workers()) == (expected if expected > 1 else 0)
