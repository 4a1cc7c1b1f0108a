"""The process model, end to end: real forks, real signals, real sockets on 127.0.0.1.

Workers and listeners, respawn after SIGKILL, fork failures, boot failures, the arbiter's
death, the heartbeat and the pidfile. Signal handling (TERM, HUP, TTIN, ...) is in
test_signals.py; the helpers both use are in tests/helpers/.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import (
    LISTENING,
    REPO,
    Server,
    age,
    assert_gone,
    listen_inodes,
    process_state,
    running,
    start,
    wait_ready,
    wait_until,
    wait_workers,
)
from tests.helpers.wire import (
    answering_pids,
    get,  # noqa: F401  (test_reload.py imports it from here)
    read_response,
)

# -- helpers ---------------------------------------------------------------------------


@dataclass
class Exited:
    """What a server that stopped by itself left: exit code, log, every pid it had."""

    code: int | None
    log: str
    pids: set[int]


def run_to_exit(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0) -> Exited:
    """start() a server that is expected to exit by itself; wait for it (bounded)."""
    server = start(*args, env=env, wait=False)
    try:
        deadline = time.monotonic() + timeout
        while server.proc.poll() is None and time.monotonic() < deadline:
            server.workers()  # remember every worker for the leftover check
            time.sleep(0.01)
    finally:
        server.stop(signal.SIGKILL)
        log = server.log()
        server.log_path.unlink()
    return Exited(server.proc.returncode, log, server.seen_pids - {server.pid})


# -- workers and listeners --------------------------------------------------------------


@pytest.mark.parametrize("workers", [2, 3])
def test_each_worker_has_its_own_listening_socket(workers: int) -> None:
    """--workers N forks N children, N LISTEN sockets on the port, N pids answer."""
    with running("tests.apps.basic:wsgi_pid", "--workers", str(workers), ready=workers) as server:
        children = set(server.workers())
        assert len(children) == workers
        assert server.pid not in children
        assert len(listen_inodes(server.port)) == workers
        assert answering_pids(server, workers) == children


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.parametrize("app", ["tests.apps.basic:wsgi_pid", "tests.apps.basic:asgi_pid"])
def test_zero_or_one_worker_serves_in_main_process(workers: str, app: str) -> None:
    """--workers 0 and 1 fork nothing: the server process itself answers."""
    with running(app, "--workers", workers, ready=1) as server:
        assert server.workers() == []
        assert answering_pids(server, 2, attempts=20) == {server.pid}
        assert len(listen_inodes(server.port)) == 1
        assert "started worker" not in server.log()


# -- respawn ----------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["tests.apps.basic:wsgi_pid", "tests.apps.basic:asgi_pid"])
def test_killed_worker_is_reaped_and_replaced_in_its_slot(app: str) -> None:
    """SIGKILL a worker: logged with its slot, reaped, a new worker serves that slot."""
    with running(app, "--workers", "2", ready=2) as server:
        workers = server.workers()
        victim = workers[0]
        slot = wait_ready(server, victim)
        os.kill(victim, signal.SIGKILL)
        server.wait_for(rf"worker {victim} \(slot {slot}\) killed by SIGKILL")
        assert_gone(victim)
        started = server.wait_for(rf"started worker (\d+) \(slot {slot}\)", count=2)
        replacement = int(started.group(1))
        assert wait_ready(server, replacement) == slot
        assert sorted(wait_workers(server, 2)) == sorted(set(workers) - {victim} | {replacement})
        assert replacement in answering_pids(server, 2)
        assert len(listen_inodes(server.port)) == 2


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_fifty_killed_workers_leave_no_zombie() -> None:
    """50 SIGKILLs in a row: each reaped and replaced; no zombie, N workers, still serving."""
    workers = 3
    with running("tests.apps.basic:wsgi_pid", "--workers", str(workers), ready=workers) as server:
        for round_ in range(1, 51):
            current = wait_workers(server, workers)
            # Kill workers older than a second: a younger death is a crash loop, which
            # the arbiter answers with a respawn backoff this test is not about.
            victim = max(current, key=age)
            assert wait_until(lambda v=victim: age(v) > 1.2, 5.0)
            os.kill(victim, signal.SIGKILL)
            server.wait_for(rf"worker {victim} \(slot \d+\) killed by SIGKILL")
            server.wait_for(r"worker \d+ \(slot \d+\) ready", count=workers + round_)
            assert_gone(victim)
        final = wait_workers(server, workers)
        assert [p for p in final if process_state(p) == "Z"] == []
        assert len(re.findall(r"killed by SIGKILL", server.log())) == 50
        assert [p for p in server.seen_pids - {server.pid, *final} if process_state(p)] == []
        assert answering_pids(server, workers) == set(final)
        assert len(listen_inodes(server.port)) == workers


def test_connections_queued_on_a_dead_workers_slot_are_served_by_its_successor() -> None:
    """Rule 4: the arbiter keeps a slot's socket, so its queued clients wait, not fail."""
    with running("tests.apps.basic:wsgi_pid", "--workers", "2", ready=2) as server:
        victim, other = server.workers()
        os.kill(victim, signal.SIGSTOP)  # stops accepting: its clients queue in the kernel
        request = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        clients = []
        try:
            for _ in range(20):
                sock = socket.create_connection((server.host, server.port), timeout=10)
                sock.sendall(request)
                clients.append(sock)
            os.kill(victim, signal.SIGKILL)
            answers = [read_response(sock) for sock in clients]
        finally:
            for sock in clients:
                sock.close()
        assert_gone(victim)
        assert all(status == 200 for status, _ in answers), answers
        pids = {int(body) for _, body in answers}
        replacement = next(p for p in server.workers() if p != other)
        assert pids <= {other, replacement}
        assert replacement in pids  # some clients had queued on the dead worker's socket


# -- fork failures ----------------------------------------------------------------------


def test_partial_fork_failure_serves_then_catches_up() -> None:
    """Forks 2 and 3 fail: logged, serving with 1 worker, retries reach 3 workers."""
    env = {"GUNRUNNER_TEST_FAIL_FORKS": "2,3"}
    with running("tests.apps.basic:wsgi_pid", "--workers", "3", env=env) as server:
        server.wait_for(
            r"cannot fork worker for slot 1: \[Errno 11\] [^;]*; serving with 1 worker\(s\), "
            r"retrying in \d"
        )
        server.wait_for(r"all 3 workers ready", timeout=15)
        assert len(wait_workers(server, 3)) == 3
        assert len(answering_pids(server, 3)) == 3
        assert "no workers could be started" not in server.log()


@pytest.mark.slow
def test_clients_are_served_by_the_running_worker_while_forks_fail() -> None:
    """While forks keep failing, every new client is answered by the worker that runs."""
    env = {"GUNRUNNER_TEST_FAIL_FORKS": "2,3,4,5,6"}  # 5 failures: ~6 s with one worker
    with running("tests.apps.basic:wsgi_pid", "--workers", "3", env=env) as server:
        server.wait_for(r"serving with 1 worker\(s\), retrying in 0\.8s")
        (only,) = server.workers()
        # A client must not be parked on the listening socket of a slot that has no
        # worker: it would wait for a fork that may never succeed.
        assert answering_pids(server, 2, attempts=20, timeout=2.0) == {only}
        server.wait_for(r"all 3 workers ready", timeout=15)
        assert len(answering_pids(server, 3)) == 3


@pytest.mark.slow
def test_all_forks_failing_exits_1_with_nothing_left() -> None:
    """Every fork fails: exit 1 within ~10 s, "no workers could be started" once."""
    began = time.monotonic()
    exited = run_to_exit(
        "tests.apps.basic:wsgi_pid",
        "--workers",
        "3",
        env={"GUNRUNNER_TEST_FAIL_FORKS": "all"},
        timeout=15,
    )
    elapsed = time.monotonic() - began
    log = exited.log
    assert exited.code == 1, log
    assert elapsed < 10.0, log
    assert log.count("no workers could be started") == 1, log
    assert "gunrunner: no workers could be started" in log
    assert exited.pids == set()  # nothing was ever forked


def _unprivileged_python(uid: int) -> str | None:
    """A Python of this minor version that user `uid` can run with gunrunner importable."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for python in candidates:
        if not os.path.exists(python):
            continue
        check = f"import sys, gunrunner, h11; assert sys.version_info[:2] == {sys.version_info[:2]}"
        try:
            result = subprocess.run(
                [python, "-c", check],
                cwd=REPO,
                env=_unprivileged_env(),
                user=uid,
                group=uid,
                extra_groups=[],
                capture_output=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if result.returncode == 0:
            return python
    return None


def _unprivileged_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNRUNNER_")}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{sysconfig.get_paths()['purelib']}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _unused_uid() -> int:
    """A uid that owns no process, so RLIMIT_NPROC counts only the server's processes."""
    used = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{entry}/status").read_text()
                used.add(int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)))  # type: ignore[union-attr]
    return next(uid for uid in range(61000, 62000) if uid not in used)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_real_fork_failure_under_process_limit() -> None:
    """RLIMIT_NPROC=2 (arbiter + 1 worker): EAGAIN logged, serving; raising it heals."""
    if os.geteuid() != 0 or shutil.which("prlimit") is None:
        pytest.skip("needs root (to run the server as another user) and prlimit")
    uid = _unused_uid()
    python = _unprivileged_python(uid)
    if python is None:
        pytest.skip(f"no Python {sys.version_info[:2]} that uid {uid} can run gunrunner with")
    log_fd, log_name = tempfile.mkstemp(prefix="gunrunner-test-", suffix=".log")
    os.fchmod(log_fd, 0o644)
    prlimit = shutil.which("prlimit") or "prlimit"
    # Soft limit 2, hard limit 64: the same user may raise it later without privileges.
    command = [prlimit, "--nproc=2:64", python, "-m", "gunrunner"]
    command += ["tests.apps.basic:asgi_pid", "--workers", "3", "--bind", "127.0.0.1:0"]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=_unprivileged_env(),
        user=uid,
        group=uid,
        extra_groups=[],
        stdin=subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        start_new_session=True,
    )
    os.close(log_fd)
    server = Server(proc, Path(log_name))
    try:
        match = server.wait_for(LISTENING.pattern)
        server.port = int(match.group(2))
        server.wait_for(
            r"cannot fork worker for slot 1: \[Errno 11\] [^;]*; serving with 1 worker\(s\)",
            count=5,  # as many failures as make the arbiter give up when no worker runs
        )
        assert len(server.workers()) == 1
        assert answering_pids(server, 2, attempts=20, timeout=2.0) == set(server.workers())
        assert "no workers could be started" not in server.log()
        subprocess.run(
            [prlimit, f"--pid={server.pid}", "--nproc=64:64"],
            user=uid,
            group=uid,
            extra_groups=[],
            check=True,
            timeout=10,
        )
        server.wait_for(r"all 3 workers ready", timeout=20)
        assert len(answering_pids(server, 3)) == 3
    finally:
        code = server.stop()
        Path(log_name).unlink()
    assert code == 0


# -- boot failures ----------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["3", "1"])
def test_missing_app_module_exits_4_and_says_so_once(workers: str) -> None:
    """An app module that does not exist: exit 4, the error printed once, not per worker."""
    exited = run_to_exit("tests.apps.nonexistent:app", "--workers", workers)
    log = exited.log
    assert exited.code == 4, log
    assert log.count('cannot import module "tests.apps.nonexistent"') == 1, log


def test_app_raising_at_import_shows_traceback_with_file_and_line() -> None:
    """An app module that raises at import: exit 4, one traceback pointing at its line."""
    exited = run_to_exit("tests.apps.broken_import:app", "--workers", "3")
    log = exited.log
    assert exited.code == 4, log
    assert log.count("Traceback (most recent call last)") == 1, log
    assert re.search(r'File "[^"]*tests/apps/broken_import\.py", line 9, in _load_settings', log)
    assert "KeyError: 'SECRET_KEY is not set'" in log


def test_app_import_traceback_leaves_out_importlib_frames() -> None:
    """loader._import_failure promises the traceback "minus the importlib frames"."""
    exited = run_to_exit("tests.apps.broken_import:app", "--workers", "2")
    log = exited.log
    assert exited.code == 4, log
    assert "<frozen importlib._bootstrap>" not in log, log
    assert "importlib/__init__.py" not in log, log


@pytest.mark.parametrize("workers", ["2", "1"])
def test_lifespan_startup_failed_exits_3_with_the_apps_message(workers: str) -> None:
    """lifespan.startup.failed: exit 3 and the app's message shown (once)."""
    exited = run_to_exit("tests.apps.process_apps:startup_fails", "--workers", workers)
    log = exited.log
    assert exited.code == 3, log
    assert log.count("database unreachable at db:5432") == 1, log
    assert "lifespan startup failed" in log


@pytest.mark.parametrize("workers", ["2", "1"])
def test_lifespan_on_with_app_raising_exits_3(workers: str) -> None:
    """--lifespan on and an exception in startup: exit 3, the exception shown."""
    exited = run_to_exit(
        "tests.apps.process_apps:startup_raises", "--workers", workers, "--lifespan", "on"
    )
    log = exited.log
    assert exited.code == 3, log
    assert "RuntimeError: lifespan exploded while warming the cache" in log


def test_lifespan_auto_with_app_raising_serves() -> None:
    """--lifespan auto (default) and an exception in startup: not fatal, the app serves."""
    with running("tests.apps.process_apps:startup_raises", "--workers", "2", ready=2) as server:
        assert len(answering_pids(server, 2)) == 2


# -- the arbiter's death ----------------------------------------------------------------


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Make this process the subreaper of its orphaned descendants (reaps what PID 1 won't)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    try:
        yield
    finally:
        libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)


def reap_orphan(pid: int, timeout: float) -> bool:
    """Wait for an orphan that this process adopted as subreaper to exit; reap it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not (or no longer) ours: it must simply be gone
            return process_state(pid) is None
        if done == pid:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("app", ["tests.apps.basic:wsgi_pid", "tests.apps.basic:asgi_pid"])
def test_workers_exit_when_the_arbiter_is_killed(app: str) -> None:
    """SIGKILL the arbiter: its orphaned workers notice within ~2 s and exit."""
    with subreaper(), running(app, "--workers", "2", ready=2) as server:
        workers = server.workers()
        os.kill(server.pid, signal.SIGKILL)
        server.wait_exit(5)
        began = time.monotonic()
        for pid in workers:
            assert reap_orphan(pid, 2.5 - (time.monotonic() - began)), (
                f"worker {pid} still {process_state(pid)} after the arbiter died\n{server.log()}"
            )
        assert server.log().count("is gone; stopping") == 2


# -- heartbeat --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_stuck_event_loop_is_dumped_killed_and_replaced() -> None:
    """A worker whose loop blocks past --timeout: stack dumped, SIGKILLed, replaced."""
    with running(
        "tests.apps.process_apps:blocking", "--workers", "2", "--timeout", "2", ready=2
    ) as server:
        stuck_client = socket.create_connection((server.host, server.port), timeout=15)
        try:
            stuck_client.sendall(b"GET /block HTTP/1.1\r\nHost: test\r\n\r\n")
            silent = server.wait_for(r"worker (\d+) \(slot (\d+)\) silent for", timeout=10)
            victim, slot = int(silent.group(1)), int(silent.group(2))
            server.wait_for(
                rf"worker {victim} \(slot {slot}\) did not stop in time; sending SIGKILL"
            )
            server.wait_for(rf"worker {victim} \(slot {slot}\) killed by SIGKILL")
            try:  # its connection died with it
                assert stuck_client.recv(65536) == b""
            except ConnectionResetError:
                pass
        finally:
            stuck_client.close()
        assert_gone(victim)
        log = server.log()
        dump = log[log.index("silent for") :]
        assert re.search(r'File "[^"]*tests/apps/process_apps\.py", line \d+ in blocking', dump)
        replacement = int(server.wait_for(rf"started worker (\d+) \(slot {slot}\)", count=2)[1])
        wait_ready(server, replacement)
        assert replacement in answering_pids(server, 2)


# -- pidfile ----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["2", "1"])
def test_pidfile_holds_the_main_pid_and_is_removed_at_exit(workers: str, tmp_path: Path) -> None:
    """--pidfile: the arbiter's (main process's) pid while running, gone after exit."""
    pidfile = tmp_path / "gunrunner.pid"
    ready = int(workers)
    with running(
        "tests.apps.basic:wsgi_pid", "--workers", workers, "--pidfile", str(pidfile), ready=ready
    ) as server:
        assert pidfile.read_text() == f"{server.pid}\n"
        assert server.stop() == 0
    assert not pidfile.exists()
