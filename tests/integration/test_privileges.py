"""user / group: bound as root, then every process runs as the user (#12); the real
command, real uids. The suite runs as root in CI; as another user these tests skip."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gunrunner import privileges
from gunrunner.errors import ConfigError
from tests.helpers import http_get, running, wait_until
from tests.helpers.process import children_of, start_with_log_file
from tests.integration.test_cli import run_cli

APP = "tests.apps.basic:wsgi_pid"
NOBODY = pwd.getpwnam("nobody")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


def ids(pid: int) -> tuple[int, int]:
    """(effective uid, effective gid) of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return int(fields["Uid"][1]), int(fields["Gid"][1])


@as_root
def test_arbiter_and_workers_run_as_the_user() -> None:
    """--user nobody: the arbiter drops before forking, so it and every worker run as
    nobody (real, effective and saved ids); the app answers; no root warning."""
    nobody = (NOBODY.pw_uid, NOBODY.pw_gid)
    with running(APP, "--workers", "2", "--user", "nobody", ready=2) as server:
        assert ids(server.pid) == nobody
        workers = server.workers()
        assert [ids(pid) for pid in workers] == [nobody] * 2
        status = Path(f"/proc/{server.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(NOBODY.pw_uid)] * 4  # no way back to root
        assert int(http_get(server.url).text) in workers
        log = server.log()
        assert f"running as user nobody, group {grp.getgrgid(NOBODY.pw_gid).gr_name}" in log
        assert "running as root" not in log


@as_root
def test_root_without_a_user_is_warned_once() -> None:
    with running(APP, "--workers", "2", ready=2) as server:
        warnings = [line for line in server.log().splitlines() if "running as root" in line]
        assert len(warnings) == 1 and " WARNING " in warnings[0]
        assert "set user and group" in warnings[0]


def test_an_unknown_user_or_group_is_a_config_error() -> None:
    result = run_cli(APP, "--user", "no-such-user-4711")
    assert result.returncode == 2
    assert "command line: user: no such user: 'no-such-user-4711'" in result.stderr
    result = run_cli(APP, "--group", "no-such-group-4711")
    assert result.returncode == 2
    assert "command line: group: no such group: 'no-such-group-4711'" in result.stderr


@as_root
def test_switching_user_without_root_is_refused() -> None:
    """Started as nobody, user = root cannot work: a config error that says why. (A
    forked child that dropped to nobody runs the check, as gunrunner would at start.)"""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - in the child
        code = 0
        try:
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            privileges.resolve("root", None)
            message = "accepted"
        except ConfigError as exc:
            message = str(exc)
        except BaseException as exc:
            message, code = repr(exc), 1
        os.write(write_end, message.encode())
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        message = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, message
    assert message.startswith("config error: user: running as root:root needs root to start")
    assert f"runs as uid {NOBODY.pw_uid}" in message


def free_privileged_port() -> int:
    for port in range(900, 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024 on 127.0.0.1")


@as_root
@pytest.mark.parametrize("privileged", [False, True], ids=["per-slot", "port-below-1024"])
def test_a_worker_respawned_as_the_user_serves_again(privileged: bool) -> None:
    """A killed worker's slot reopens its sockets as nobody: per-slot SO_REUSEPORT
    sockets were handed to nobody, so the new one joins them; a port below 1024 (that
    nobody may not bind) is served from one shared socket instead, said in the log."""
    bind = f"127.0.0.1:{free_privileged_port()}" if privileged else "127.0.0.1:0"
    with running(APP, "--workers", "2", "--user", "nobody", "--bind", bind, ready=2) as server:
        assert ("one socket shared by every worker" in server.log()) is privileged
        victim = server.workers()[0]
        os.kill(victim, signal.SIGKILL)
        server.wait_for(r"worker \d+ \(slot \d\) ready", count=3)
        assert victim not in server.workers()
        served = {
            int(http_get(server.url, headers={"Connection": "close"}).text) for _ in range(20)
        }
        assert served <= set(server.workers())
        server.assert_no_errors_before("ready", alarms=("Traceback", "cannot bind"))


@as_root
def test_admin_endpoints_on_a_port_below_1024_with_a_user() -> None:
    """metrics_bind is bound before the drop, like the other listeners, so the admin
    process (running as nobody) serves a port nobody could not bind itself."""
    port = free_privileged_port()
    args = ("--workers", "2", "--user", "nobody", "--metrics-bind", f"127.0.0.1:{port}")
    with running(APP, *args, ready=2) as server:
        admin = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: http_get(admin, "/readyz").status_code == 200, 10)
        assert "gunrunner_requests_total" in http_get(admin, "/metrics").text
        children = children_of(server.pid)  # the workers and the admin process
        assert len(children) == 3
        assert {ids(pid) for pid in children} == {(NOBODY.pw_uid, NOBODY.pw_gid)}


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A root-owned directory every user may enter but only root may write in."""
    path = Path(tempfile.mkdtemp(prefix="gunrunner-privileges-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@as_root
def test_files_kept_after_the_drop_hup_and_usr1(shared_dir: Path) -> None:
    """With a user, the server keeps working in a directory only root may write to: the
    access log (created and handed over before the drop) is written by the workers; a
    HUP is not refused for the root-owned pidfile it does not rewrite; a SIGUSR1 whose
    reopen is not allowed logs why and keeps the old file."""
    access, error, pidfile = shared_dir / "access.log", shared_dir / "error.log", shared_dir / "pid"
    args = ("--workers", "2", "--user", "nobody", "--access-log", str(access))
    server = start_with_log_file(error, APP, *args, "--pidfile", str(pidfile), ready=2)
    try:
        assert int(http_get(server.url).text) in server.workers()
        assert wait_until(lambda: access.exists() and access.read_text().count("GET /") == 1, 5)
        assert pidfile.stat().st_uid == 0 and access.stat().st_uid == NOBODY.pw_uid
        server.send_signal(signal.SIGHUP)
        server.wait_for("restart complete")
        assert "SIGHUP refused" not in server.log()
        error.rename(shared_dir / "error.log.1")  # logrotate; nobody may not create error.log
        server.send_signal(signal.SIGUSR1)
        server.log_path = shared_dir / "error.log.1"
        server.wait_for("cannot reopen the log file .*; still writing to the old one")
        assert int(http_get(server.url).text) in server.workers()
    finally:
        server.stop()
